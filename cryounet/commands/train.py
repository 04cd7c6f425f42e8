"""``cryounet train``: learn a picker from micrographs and their coordinate files."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from cryounet.commands._common import (GENERAL_HELP, MICROGRAPHS_HELP, add_device, add_overwrite, diameter,
                                      model_folder, positive_int, seed, show_progress)

name = "train"
help = "train a model from micrographs and picks (STAR, BOX or CSV/TXT, matched by file stem)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--micrographs", nargs="+", help=f"training {MICROGRAPHS_HELP}")
    parser.add_argument("--coordinates", type=Path,
                        help="folder of coordinate files named like the micrographs")
    parser.add_argument("--diameter", type=diameter,
                        help="particle diameter in pixels of the micrographs, not Angstrom ('cryounet "
                             "diameter' estimates it)")
    parser.add_argument("--diameter-check", choices=("error", "warn", "off"), default="error",
                        help="a diameter far from what the picks and micrographs suggest (see 'cryounet "
                             "diameter') is an error (default), a warning, or not checked (off)")
    parser.add_argument("--datasets", type=Path,
                        help="JSON list of datasets to train on together, instead of --micrographs/"
                             "--coordinates/--diameter: [{\"micrographs\": [...], \"coordinates\": "
                             "DIR, \"diameter\": PX, \"valid_micrographs\": [...], "
                             "\"valid_coordinates\": DIR}, ...] (validation keys optional)")
    parser.add_argument("--output", required=True, type=Path, help="model folder to write")
    parser.add_argument("--valid-micrographs", nargs="+", help=f"validation {MICROGRAPHS_HELP}")
    parser.add_argument("--valid-coordinates", type=Path, help="folder of validation coordinates")
    parser.add_argument("--epochs", type=positive_int, help="maximum epochs (overrides the config)")
    parser.add_argument("--seed", type=seed, help="random seed (overrides the config)")
    parser.add_argument("--config", type=Path, help="JSON config file (see cryounet.config)")
    parser.add_argument("--init", type=model_folder,
                        help=f"start from the weights of this model folder ({GENERAL_HELP})")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from OUTPUT/checkpoint.pt")
    add_overwrite(parser, "the model folder")
    add_device(parser)
    parser.add_argument("--devices", metavar="LIST",
                        help="data-parallel training, one process per device: GPU indices (0,1 or "
                             "\"0 1\"; NCCL) or cpu entries (cpu,cpu; gloo), launched with torchrun on "
                             "this node; replaces --device. Under a torchrun started by a job script "
                             "(any number of nodes), each process takes its entry by local rank")


def _datasets(args: argparse.Namespace) -> list[dict]:
    """The datasets to train on: from --datasets, or the one given by the plain arguments."""
    from cryounet.errors import CryoUNetError, InputFileError
    from cryounet.io.json_files import read_json
    from cryounet.io.micrographs import check_diameter

    plain = [args.micrographs, args.coordinates, args.diameter]
    if args.datasets is None:
        if any(v is None for v in plain):
            raise CryoUNetError("give --micrographs, --coordinates and --diameter (or --datasets)")
        return [{"micrographs": args.micrographs, "coordinates": args.coordinates,
                 "diameter": args.diameter, "valid_micrographs": args.valid_micrographs,
                 "valid_coordinates": args.valid_coordinates}]
    if any(v is not None for v in plain):
        raise CryoUNetError("--datasets replaces --micrographs/--coordinates/--diameter; give one or the other")
    try:
        data = read_json(args.datasets, "JSON dataset list")
    except InputFileError as exc:
        raise CryoUNetError(f"{args.datasets}: cannot read the dataset list ({exc.problem})") from None
    known = {"micrographs", "coordinates", "diameter", "valid_micrographs", "valid_coordinates"}
    if not isinstance(data, list) or not data:
        raise CryoUNetError(f"{args.datasets}: expected a non-empty JSON list of datasets")
    for i, entry in enumerate(data):
        where = f"{args.datasets}: dataset {i}"
        if not isinstance(entry, dict) or not {"micrographs", "coordinates", "diameter"} <= set(entry):
            raise CryoUNetError(f"{where} needs micrographs, coordinates, diameter")
        if set(entry) - known:
            raise CryoUNetError(f"{where} has unknown keys {sorted(set(entry) - known)}")
        if isinstance(entry["diameter"], bool):
            raise CryoUNetError(f"{where}: diameter must be a number of pixels, got {entry['diameter']!r}")
        entry["diameter"] = check_diameter(entry["diameter"], f"{where}: diameter")
        for key in ("micrographs", "valid_micrographs"):
            value = entry.get(key)
            if isinstance(value, str):
                entry[key] = [value]
            elif value is not None and not (isinstance(value, list) and value
                                            and all(isinstance(v, str) for v in value)):
                raise CryoUNetError(f"{where}: {key} must be a path or a list of paths, got {value!r}")
        for key in ("coordinates", "valid_coordinates"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise CryoUNetError(f"{where}: {key} must be a folder path, got {entry[key]!r}")
    return data


def _inputs(args: argparse.Namespace) -> list[Path]:
    """The input files and folders of a training run (which its output folder must stay clear of)."""
    from cryounet.io.model_folder import general_model_path
    from cryounet.io.outputs import input_paths

    groups = [args.micrographs, args.coordinates, args.valid_micrographs, args.valid_coordinates,
              args.config, args.datasets]
    if args.init:
        groups.append(general_model_path() if args.init == "general" else args.init)
    for entry in _datasets(args) if args.datasets is not None else []:
        groups += [entry.get(key) for key in ("micrographs", "coordinates", "valid_micrographs",
                                              "valid_coordinates")]
    return input_paths(*groups)


def _check_diameters(datasets: list[dict], what: str, mode: str) -> None:
    """Refuse (or, with ``mode`` warn, log) a diameter that contradicts the training data."""
    from cryounet.analysis.diameter_inputs import training_diameter_problem
    from cryounet.errors import CryoUNetError
    from cryounet.io.micrographs import expand_micrographs

    for entry in datasets:
        problem = training_diameter_problem(float(entry["diameter"]), expand_micrographs(entry["micrographs"]),
                                            Path(entry["coordinates"]), what)
        if problem and mode == "error":
            raise CryoUNetError(problem)
        if problem:
            logger.warning("%s", problem)


def _launch(args: argparse.Namespace, devices: list[str], cfg) -> int:
    """Run this command in one torchrun process per device, after claiming the output folder (the
    processes write into it; it is marked complete when they all succeeded)."""
    import os

    from cryounet.config import check_batch_shared
    from cryounet.errors import CryoUNetError
    from cryounet.io.model_folder import MODEL_PATTERNS
    from cryounet.io.outputs import claim_output_folder
    from cryounet.training import distributed

    distributed.check_devices(devices)
    check_batch_shared(cfg.train.batch_size, len(devices), "devices")
    folder = claim_output_folder(args.output, "train", overwrite=args.overwrite, resume=args.resume,
                                 patterns=MODEL_PATTERNS, inputs=_inputs(args))
    env = dict(os.environ)
    env[distributed.CLAIMED_OUTPUT_VARIABLE] = str(args.output.resolve())
    threads = distributed.process_threads(args.threads, len(devices))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    argv = [a for a in args._argv if a != "--overwrite"]
    if devices[0] == "cpu" and not args.threads:
        argv += ["--threads", str(threads)]
    command = distributed.launch_command(argv, len(devices))
    logger.info("data-parallel training on %s: %s", ",".join(devices), " ".join(command))
    code = distributed.run_launcher(command, env)
    if code != 0:
        raise CryoUNetError(f"data-parallel training failed (torchrun exit code {code}; the failing "
                            f"process's error is above); {args.output} keeps its checkpoint: continue "
                            "with --resume and the same --devices")
    folder.complete()
    return 0


def main(args: argparse.Namespace) -> int:
    from cryounet.config import load_config
    from cryounet.device import resolve_device
    from cryounet.errors import CryoUNetError
    from cryounet.io.model_folder import CONFIG_NAME, WEIGHTS_NAME, check_weights_digest, read_model_info
    from cryounet.training import distributed

    if args.resume and args.overwrite:
        raise CryoUNetError("--resume continues the run in --output and --overwrite replaces it: give one")
    cfg = load_config(args.config)
    if args.resume and args.config is None and (args.output / CONFIG_NAME).is_file():
        cfg = read_model_info(args.output, allow_incomplete=True).config
    if args.epochs is not None:
        cfg.train.epochs = args.epochs
    if args.seed is not None:
        cfg.train.seed = args.seed
    cfg.validate("command line")
    datasets = _datasets(args)
    for entry in datasets:
        if (entry.get("valid_micrographs") is None) != (entry.get("valid_coordinates") is None):
            raise CryoUNetError("--valid-micrographs and --valid-coordinates go together")
    if args.diameter_check != "off" and not distributed.in_torchrun():
        _check_diameters(datasets, "--diameter" if args.datasets is None else f"{args.datasets}: diameter",
                         args.diameter_check)
    init = None
    if args.init:
        init_dir = args.init
        init_info = read_model_info(init_dir)
        check_weights_digest(init_dir, init_info)
        if init_info.config.model != cfg.model:
            logger.info("--init: using the architecture of %s", init_dir)
            cfg.model = init_info.config.model
        if init_info.config.preprocess != cfg.preprocess:
            logger.info("--init: using the preprocessing of %s", init_dir)
            cfg.preprocess = init_info.config.preprocess
        init = init_dir / WEIGHTS_NAME
    devices = distributed.parse_devices(args.devices) if args.devices else None
    if devices and len(devices) > 1 and not distributed.in_torchrun():
        return _launch(args, devices, cfg)
    if args.threads or cfg.train.num_threads:
        from cryounet.limits import fit_threads

        cfg.train.num_threads = fit_threads(args.threads or cfg.train.num_threads)
    ranks = distributed.environment_ranks()
    spec = distributed.process_device(devices, args.device, ranks[2] if ranks else 0) \
        if ranks is not None or devices else args.device
    device = resolve_device(spec, args.threads)
    world = distributed.from_environment(device)
    try:
        code = _train_here(args, cfg, datasets, init, device, world)
        world.finish()
        return code
    finally:
        world.close()


def _train_here(args: argparse.Namespace, cfg, datasets: list[dict], init: Path | None, device,
                world) -> int:
    """Train in this process (alone, or as one rank of a data-parallel run)."""
    import os

    import numpy as np

    from cryounet.errors import CryoUNetError
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.io.model_folder import CHECKPOINT_NAME, MODEL_PATTERNS, read_main_epochs, write_main_epochs
    from cryounet.io.outputs import OutputFolder, claim_output_folder
    from cryounet.training import distributed
    from cryounet.training.crossfit import apply_cross_fitted, make_folds, train_folds
    from cryounet.training.data import load_labelled, split_validation
    from cryounet.training.loop import train

    claimed = os.environ.get(distributed.CLAIMED_OUTPUT_VARIABLE)
    folder: OutputFolder | None = None
    if claimed is not None and Path(claimed) == args.output.resolve():
        pass  # claimed by the `--devices` launch that started this process; it marks completion
    elif world.is_main:
        folder = claim_output_folder(args.output, "train", overwrite=args.overwrite, resume=args.resume,
                                     patterns=MODEL_PATTERNS, inputs=_inputs(args))
    if not world.is_main:
        logging.getLogger("cryounet").setLevel(logging.WARNING)  # rank 0 tells the story

    train_items, valid = [], []
    rng = np.random.default_rng(cfg.train.seed)
    for entry in datasets:
        diameter = float(entry["diameter"])
        items, _ = load_labelled(expand_micrographs(entry["micrographs"]), Path(entry["coordinates"]),
                                 diameter, cfg.preprocess)
        if entry.get("valid_micrographs"):
            held, _ = load_labelled(expand_micrographs(entry["valid_micrographs"]),
                                    Path(entry["valid_coordinates"]), diameter, cfg.preprocess)
        else:
            items, held = split_validation(items, cfg.train.valid_fraction, rng)
            logger.info("no validation set given: holding out %s", ", ".join(v.name for v in held))
        train_items += items
        valid += held
    args.diameter = float(datasets[0]["diameter"])
    if sum(len(i.xy) for i in train_items) == 0:
        raise CryoUNetError("the training micrographs have no picks")
    if sum(len(i.xy) for i in valid) == 0:
        raise CryoUNetError("the validation micrographs have no picks; F1 cannot be computed")
    t0 = time.monotonic()
    folds = make_folds(train_items, valid, cfg.train.calibration_folds) if cfg.train.calibration_folds else []
    folds_after = bool(folds) and cfg.train.fold_epochs == "main"
    progress = show_progress(args) and world.is_main
    resume = args.resume
    if folds and not folds_after:
        # The fold models first: an interrupted run then always resumes the main model last.
        train_folds(folds, cfg, args.diameter, args.output, device, resume=args.resume, init_weights=init,
                    progress=progress, world=world)
        resume = args.resume and (args.output / CHECKPOINT_NAME).is_file()
        logger.info("main model: training on %d micrograph(s)", len(train_items))
    main_epochs = read_main_epochs(args.output) if folds_after and args.resume else None
    if main_epochs is None:
        result = train(train_items, valid, cfg, args.diameter, args.output, device,
                       resume=resume, init_weights=init, progress=progress, world=world)
        best_epoch = result.best_epoch
    else:
        logger.info("main model: kept from the interrupted run (best epoch %d)", main_epochs)
        best_epoch = main_epochs
    if folds_after:
        best_epoch = world.number(best_epoch, device)  # only rank 0 knows which epoch it kept
        if main_epochs is None and world.is_main:
            write_main_epochs(args.output, best_epoch)
        train_folds(folds, cfg, args.diameter, args.output, device, resume=args.resume, init_weights=init,
                    progress=progress, world=world, stop_after=best_epoch)
    if not world.is_main:
        return 0
    v = apply_cross_fitted(args.output, folds, valid, cfg, device) if folds else result.validation
    if folder is not None:
        folder.complete()
    logger.info("done in %.1f min: best epoch %d, validation precision %.3f recall %.3f F1 %.3f "
                "AP %.3f at threshold %.3f; model in %s", (time.monotonic() - t0) / 60,
                best_epoch, v.precision, v.recall, v.f1, v.ap, v.threshold, args.output)
    if v.best_f1 <= 0:
        logger.warning("the model found none of the %d validation particles at any threshold "
                       "(validation F1 0.000): check the particle diameter, that the coordinates belong "
                       "to these micrographs, and that they are in pixels of them",
                       sum(len(i.xy) for i in valid))
    return 0
