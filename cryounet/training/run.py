"""A training run from start to finish, as ``cryounet train`` (and the Scipion train protocol
through it) asks for it: the configuration, the diameter check, the starting weights, the output
folder, then one process or one torchrun process per device, each training the main model and any
calibration fold models, and the report.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cryounet.config import CryoUNetConfig, load_config
from cryounet.errors import CryoUNetError
from cryounet.io.datasets import dataset_paths, labelled_micrographs
from cryounet.io.model_folder import (AUTO_INIT, CHECKPOINT_NAME, CONFIG_NAME, MODEL_PATTERNS, WEIGHTS_NAME,
                                      automatic_start, check_weights_digest, read_main_epochs, read_model_info,
                                      resolve_model, write_main_epochs)
from cryounet.io.outputs import OutputFolder, claim_output_folder, input_paths
from cryounet.training import distributed

logger = logging.getLogger(__name__)


@dataclass
class TrainRequest:
    """What to train, as the command line gives it.

    Attributes:
        datasets: the labelled datasets (:mod:`cryounet.io.datasets`).
        output: the model folder to write.
        config: a JSON configuration file, or None for the defaults.
        datasets_file: the ``--datasets`` list the datasets came from (an input of the run).
        init: starting weights: a model folder, ``auto`` (the general model for fewer than
            :data:`~cryounet.io.model_folder.AUTO_INIT_BELOW` labelled micrographs) or None (scratch).
        epochs / seed: override the configuration's.
        resume / overwrite: continue an interrupted run in ``output`` / replace an earlier one.
        device / devices / threads: where it runs (``--device``, ``--devices``, ``--threads``).
        diameter_check: ``error``, ``warn`` or ``off`` for a diameter the data contradict.
        progress: show progress bars.
        argv: the command line, to start the data-parallel processes with.
    """

    datasets: list[dict[str, Any]]
    output: Path
    config: Path | None = None
    datasets_file: Path | None = None
    init: Path | str | None = None
    epochs: int | None = None
    seed: int | None = None
    resume: bool = False
    overwrite: bool = False
    device: str | None = "auto"
    devices: str | None = None
    threads: int = 0
    diameter_check: str = "error"
    progress: bool = False
    argv: Sequence[str] = field(default_factory=list)

    def inputs(self, init: Path | None) -> list[Path]:
        """The input files and folders (which the output folder must stay clear of)."""
        return input_paths(*dataset_paths(self.datasets), self.config, self.datasets_file, init)

    def claim(self, init: Path | None) -> OutputFolder:
        return claim_output_folder(self.output, "train", overwrite=self.overwrite, resume=self.resume,
                                   patterns=MODEL_PATTERNS, inputs=self.inputs(init))


def run_training(request: TrainRequest) -> int:
    """Train as ``request`` says; 0 on success (errors raise :class:`CryoUNetError`)."""
    if request.resume and request.overwrite:
        raise CryoUNetError("--resume continues the run in --output and --overwrite replaces it: give one")
    cfg = training_config(request)
    if request.diameter_check != "off" and not distributed.in_torchrun():
        check_diameters(request)
    init = start_weights(request, cfg)
    devices = distributed.parse_devices(request.devices) if request.devices else None
    if devices and len(devices) > 1 and not distributed.in_torchrun():
        return launch_processes(request, devices, cfg, init)
    if request.threads or cfg.train.num_threads:
        from cryounet.limits import fit_threads

        cfg.train.num_threads = fit_threads(request.threads or cfg.train.num_threads)
    from cryounet.device import resolve_device

    ranks = distributed.environment_ranks()
    spec = distributed.process_device(devices, request.device, ranks[2] if ranks else 0) \
        if ranks is not None or devices else request.device
    device = resolve_device(spec, request.threads)
    world = distributed.from_environment(device)
    try:
        train_here(request, cfg, init, device, world)
        world.finish()
        return 0
    finally:
        world.close()


def training_config(request: TrainRequest) -> CryoUNetConfig:
    """The configuration: the file's (a resumed run's own when none is given), then the overrides."""
    cfg = load_config(request.config)
    if request.resume and request.config is None and (request.output / CONFIG_NAME).is_file():
        cfg = read_model_info(request.output, allow_incomplete=True).config
    if request.epochs is not None:
        cfg.train.epochs = request.epochs
    if request.seed is not None:
        cfg.train.seed = request.seed
    cfg.validate("command line")
    return cfg


def check_diameters(request: TrainRequest) -> None:
    """Refuse (or, with ``diameter_check`` warn, log) a diameter that contradicts the training data."""
    from cryounet.analysis.diameter_inputs import training_diameter_problem
    from cryounet.io.micrographs import expand_micrographs

    what = "--diameter" if request.datasets_file is None else f"{request.datasets_file}: diameter"
    for entry in request.datasets:
        problem = training_diameter_problem(float(entry["diameter"]), expand_micrographs(entry["micrographs"]),
                                            Path(entry["coordinates"]), what)
        if problem and request.diameter_check == "error":
            raise CryoUNetError(problem)
        if problem:
            logger.warning("%s", problem)


def start_weights(request: TrainRequest, cfg: CryoUNetConfig) -> Path | None:
    """The model folder training starts from (``--init``; ``auto`` decided by the number of labelled
    micrographs), its architecture and preprocessing taken into ``cfg``; None for random weights."""
    init = request.init
    if isinstance(init, str) and init == AUTO_INIT:
        labelled = labelled_micrographs(request.datasets)
        init = automatic_start(labelled)
        logger.info("--init auto: %d labelled micrograph(s), so training starts from %s", labelled,
                    "the general model" if init else "random weights")
    if init is None:
        return None
    folder = resolve_model(init)
    info = read_model_info(folder)
    check_weights_digest(folder, info)
    if info.config.model != cfg.model:
        logger.info("--init: using the architecture of %s", folder)
        cfg.model = info.config.model
    if info.config.preprocess != cfg.preprocess:
        logger.info("--init: using the preprocessing of %s", folder)
        cfg.preprocess = info.config.preprocess
    return folder


def launch_processes(request: TrainRequest, devices: list[str], cfg: CryoUNetConfig, init: Path | None) -> int:
    """Run the command in one torchrun process per device, after claiming the output folder (the
    processes write into it; it is marked complete when they all succeeded)."""
    from cryounet.config import check_batch_shared

    distributed.check_devices(devices)
    check_batch_shared(cfg.train.batch_size, len(devices), "devices")
    folder = request.claim(init)
    env = dict(os.environ)
    env[distributed.CLAIMED_OUTPUT_VARIABLE] = str(request.output.resolve())
    threads = distributed.process_threads(request.threads, len(devices))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    argv = [a for a in request.argv if a != "--overwrite"]
    if devices[0] == "cpu" and not request.threads:
        argv += ["--threads", str(threads)]
    command = distributed.launch_command(argv, len(devices))
    logger.info("data-parallel training on %s: %s", ",".join(devices), " ".join(command))
    code = distributed.run_launcher(command, env)
    if code != 0:
        raise CryoUNetError(f"data-parallel training failed (torchrun exit code {code}; the failing "
                            f"process's error is above); {request.output} keeps its checkpoint: continue "
                            "with --resume and the same --devices")
    folder.complete()
    return 0


def train_here(request: TrainRequest, cfg: CryoUNetConfig, init: Path | None, device, world) -> None:
    """Train in this process (alone, or as one rank of a data-parallel run)."""
    claimed = os.environ.get(distributed.CLAIMED_OUTPUT_VARIABLE)
    folder: OutputFolder | None = None
    if claimed is not None and Path(claimed) == request.output.resolve():
        pass  # claimed by the `--devices` launch that started this process; it marks completion
    elif world.is_main:
        folder = request.claim(init)
    if not world.is_main:
        logging.getLogger("cryounet").setLevel(logging.WARNING)  # rank 0 tells the story
    train_items, valid, train_only = load_datasets(request.datasets, cfg)
    t0 = time.monotonic()
    weights = None if init is None else init / WEIGHTS_NAME
    best_epoch, validation = train_models(request, cfg, train_items, valid, weights, device, world, train_only)
    if not world.is_main:
        return
    if folder is not None:
        folder.complete()
    report(request.output, best_epoch, validation, valid, (time.monotonic() - t0) / 60)


def load_datasets(datasets: Sequence[dict[str, Any]], cfg: CryoUNetConfig) -> tuple[list, list, list]:
    """The training and validation items of every dataset (a dataset without validation
    micrographs holds some of its own out), and the training-only items (``"validate": false``:
    the main model and every calibration fold model train on them; none is held out)."""
    from cryounet.io.datasets import validates
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.training.data import TRAIN_ONLY_GROUP, load_labelled, split_validation

    train_items, valid, train_only = [], [], []
    rng = np.random.default_rng(cfg.train.seed)
    for group, entry in enumerate(datasets):
        diameter = float(entry["diameter"])
        items, _ = load_labelled(expand_micrographs(entry["micrographs"]), Path(entry["coordinates"]),
                                 diameter, cfg.preprocess)
        validated = validates(entry)
        for item in items:  # the dataset each patch is drawn from (train.dataset_balance)
            item.group = group if validated else TRAIN_ONLY_GROUP
        if not validated:
            train_only += items
            logger.info("training only (no validation): %d micrograph(s) from %s", len(items),
                        entry["coordinates"])
            continue
        if entry.get("valid_micrographs"):
            held, _ = load_labelled(expand_micrographs(entry["valid_micrographs"]),
                                    Path(entry["valid_coordinates"]), diameter, cfg.preprocess)
        else:
            items, held = split_validation(items, cfg.train.valid_fraction, rng)
            logger.info("no validation set given: holding out %s", ", ".join(v.name for v in held))
        train_items += items
        valid += held
    if sum(len(i.xy) for i in train_items + train_only) == 0:
        raise CryoUNetError("the training micrographs have no picks")
    if sum(len(i.xy) for i in valid) == 0:
        raise CryoUNetError("the validation micrographs have no picks; F1 cannot be computed")
    return train_items, valid, train_only


def train_models(request: TrainRequest, cfg: CryoUNetConfig, train_items: list, valid: list,
                 init: Path | None, device, world, train_only: Sequence = ()) -> tuple[int, Any]:
    """The main model and any calibration fold models; returns the main model's kept epoch and the
    validation scores (cross-fitted over the folds when there are any; None on other ranks).
    ``train_only`` items train every model and are never held out."""
    from cryounet.training.crossfit import apply_cross_fitted, make_folds, train_folds
    from cryounet.training.loop import train

    diameter, output, progress = float(request.datasets[0]["diameter"]), request.output, \
        request.progress and world.is_main
    folds = make_folds(train_items, valid, cfg.train.calibration_folds, train_only) \
        if cfg.train.calibration_folds else []
    folds_after = bool(folds) and cfg.train.fold_epochs == "main"
    common = dict(init_weights=init, progress=progress, world=world)
    resume = request.resume
    if folds and not folds_after:
        # The fold models first: an interrupted run then always resumes the main model last.
        train_folds(folds, cfg, diameter, output, device, resume=request.resume, **common)
        resume = request.resume and (output / CHECKPOINT_NAME).is_file()
        logger.info("main model: training on %d micrograph(s)", len(train_items))
    main_epochs = read_main_epochs(output) if folds_after and request.resume else None
    result = None
    if main_epochs is None:
        result = train(train_items + list(train_only), valid, cfg, diameter, output, device, resume=resume,
                       **common)
        best_epoch = result.best_epoch
    else:
        logger.info("main model: kept from the interrupted run (best epoch %d)", main_epochs)
        best_epoch = main_epochs
    if folds_after:
        best_epoch = world.number(best_epoch, device)  # only rank 0 knows which epoch it kept
        if main_epochs is None and world.is_main:
            write_main_epochs(output, best_epoch)
        train_folds(folds, cfg, diameter, output, device, resume=request.resume, stop_after=best_epoch, **common)
    if not world.is_main:
        return best_epoch, None
    validation = apply_cross_fitted(output, folds, valid, cfg, device) if folds else result.validation
    return best_epoch, validation


def report(output: Path, best_epoch: int, v, valid: list, minutes: float) -> None:
    """The closing log lines of a training run."""
    logger.info("done in %.1f min: best epoch %d, validation precision %.3f recall %.3f F1 %.3f "
                "AP %.3f at threshold %.3f; model in %s", minutes, best_epoch, v.precision, v.recall, v.f1,
                v.ap, v.threshold, output)
    if v.best_f1 <= 0:
        logger.warning("the model found none of the %d validation particles at any threshold "
                       "(validation F1 0.000): check the particle diameter, that the coordinates belong "
                       "to these micrographs, and that they are in pixels of them",
                       sum(len(i.xy) for i in valid))
