"""``cryounet pick``: pick micrographs with one model or an ensemble and write STAR files."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from cryounet.commands._common import (GENERAL_HELP, MICROGRAPHS_HELP, add_device, add_overwrite, diameter,
                                      model_folder, non_negative_int, positive_int, shard, show_progress)
from cryounet.config import BACKENDS, GPU_PICK_WORKERS, PRECISIONS, CryoUNetConfig, PickConfig
from cryounet.io.model_folder import AUTO_THRESHOLD

name = "pick"
help = "pick particles with one or more trained models (several = ensemble)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, type=model_folder,
                        help="model folder (repeat for an ensemble: mean probability, spread kept); "
                             f"{GENERAL_HELP}, which needs --diameter")
    parser.add_argument("--micrographs", nargs="+", required=True, help=MICROGRAPHS_HELP)
    parser.add_argument("--output", required=True, type=Path,
                        help="folder for <micrograph>.star files and the coordinates.star index")
    parser.add_argument("--threshold", default=AUTO_THRESHOLD,
                        help=f"probability threshold, or {AUTO_THRESHOLD} (default): the config's "
                             "pick.threshold when set, else the one calibrated at training")
    parser.add_argument("--batch-size", type=positive_int, help="tiles per forward pass")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="test-time augmentation over the model's pick.tta_symmetries (4 "
                             "rotations; 8 flips/rotations for models of 0.4.0 or earlier) (default: "
                             "the model's pick.tta, on for models trained since 0.2)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="arithmetic of the network when picking (a setting of this machine): "
                             "float32 (default; what thresholds are calibrated with), bfloat16 "
                             "(faster on processors with bfloat16 instructions, probabilities within a "
                             "few thousandths), float16 (CUDA GPUs only)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="what runs the networks (a setting of this machine): onnxruntime (the "
                             "CPU only, the model's model.onnx; faster, and starts without importing "
                             "PyTorch), torch, or auto (default: ONNX Runtime on the CPU when every "
                             "network has a matching model.onnx, else PyTorch, the reason logged)")
    parser.add_argument("--workers", type=non_negative_int, metavar="N",
                        help="threads that read and preprocess micrographs ahead of the network and "
                             f"find peaks behind it (a setting of this machine; default {PickConfig.workers} on "
                             f"the CPU, {GPU_PICK_WORKERS} on a GPU; 0: one step after another)")
    parser.add_argument("--folds", action=argparse.BooleanOptionalAction, default=None,
                        help="with a model trained with train.calibration_folds, pick with its fold "
                             "networks too, as one ensemble (default: the config's pick.folds, on)")
    parser.add_argument("--diameter", type=diameter,
                        help="particle diameter in pixels (default: the one the model was trained "
                             "with; required with the general model, and for a differently sampled dataset)")
    parser.add_argument("--allow-all-skipped", action="store_true",
                        help="exit 0 even when no micrograph could be read (each skipped one is "
                             "listed with its reason in OUTPUT/skipped.json); for pipelines")
    parser.add_argument("--config", type=Path,
                        help="JSON file whose 'pick' section overrides the models' pick settings")
    parser.add_argument("--shard", type=shard, metavar="K/N",
                        help="pick only shard K of N of the micrograph list (every N-th from the K-th): "
                             "run N of these (e.g. one queue job each, into N output folders), then "
                             "cryounet merge --picks THEM --output ONE")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted pick into --output: micrographs whose STAR file "
                             "it finished are kept, the others picked; the index lists them all")
    add_overwrite(parser)
    add_device(parser)


def main(args: argparse.Namespace) -> int:
    from cryounet.config import cpu_pick_settings
    from cryounet.inference.batch import pick_micrographs
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.io.model_folder import check_general_diameter, parse_threshold, read_model_info
    from cryounet.io.outputs import claim_output_folder, input_paths
    from cryounet.io.picks_folder import PICK_PATTERNS, check_stems, pick_names, select_shard

    threshold = parse_threshold(args.threshold)
    check_general_diameter(args.model, args.diameter)
    micrographs = expand_micrographs(args.micrographs)
    total = len(micrographs)
    if args.shard is not None:
        micrographs = select_shard(micrographs, *args.shard)
        logger.info("shard %d/%d: %d of %d micrographs", *args.shard, len(micrographs), total)
    base = read_model_info(args.model[0]).config
    # The models' picking rules (threshold, NMS, ...) apply; the machine's settings are this machine's.
    cpu_cfg = _pick_config(args, base, cpu_pick_settings())
    members = _members(args, cpu_cfg)  # pick.folds is a rule of the model, not of the machine
    picker = _onnx_picker(args, cpu_cfg, members)
    if picker is None:
        picker = _torch_picker(args, base, members)
    check_stems(micrographs)
    folder = claim_output_folder(args.output, "pick", overwrite=args.overwrite, resume=args.resume,
                                 patterns=PICK_PATTERNS, writes=pick_names(micrographs),
                                 inputs=input_paths(args.micrographs, micrographs, members, args.config))
    summary = pick_micrographs(picker, micrographs, args.output, threshold, show_progress(args),
                               allow_all_skipped=args.allow_all_skipped, shard=args.shard, listed=total,
                               resume=args.resume)
    folder.complete()
    logger.info("picked %d particles on %d micrograph(s) at threshold %.3f%s; STAR files in %s",
                summary.total, len(summary.picked), summary.threshold,
                f" ({len(summary.failed)} skipped)" if summary.failed else "", args.output)
    return 0


def _pick_config(args: argparse.Namespace, base: CryoUNetConfig, machine: dict[str, Any]) -> PickConfig:
    """The pick settings: the first model's rules, ``machine``'s settings, then ``--config``'s and
    the command line's."""
    from cryounet.config import load_config

    cfg = base.updated({"pick": machine})
    if args.config is not None:
        cfg = load_config(args.config, base=cfg)
    pick_cfg = cfg.pick
    for option in ("batch_size", "tta", "precision", "workers", "folds", "backend"):
        if getattr(args, option) is not None:
            setattr(pick_cfg, option, getattr(args, option))
    return pick_cfg


def _members(args: argparse.Namespace, pick_cfg: PickConfig) -> list[Path]:
    """The model folders to pick with: the given ones, then their calibration fold models."""
    from cryounet.io.model_folder import picking_members

    given = list(args.model)
    folds = [path for path in picking_members(given, pick_cfg.folds) if path not in set(given)]
    if folds:
        logger.info("with %d calibration fold model(s) of %s: an ensemble of %d networks "
                    "(--no-folds: the given model(s) alone)", len(folds),
                    ", ".join(str(p) for p in given), len(given) + len(folds))
    return given + folds


def _cuda_impossible() -> bool:
    """Whether this machine certainly has no CUDA GPU, known without importing torch: Linux
    without the NVIDIA driver (which every CUDA GPU needs, in a container too)."""
    return sys.platform.startswith("linux") and not Path("/proc/driver/nvidia/version").exists()


def _onnx_picker(args: argparse.Namespace, pick_cfg: PickConfig, members: list[Path]):
    """An :class:`~cryounet.inference.onnx_picker.OnnxPicker` when ``pick.backend`` and this
    machine allow it (see :class:`~cryounet.config.PickConfig`), else None (PyTorch picks; the
    reason is logged). ``--backend onnxruntime`` raises instead of falling back."""
    from cryounet.errors import CryoUNetError

    device = "auto" if args.device is None else args.device.strip().lower()
    if pick_cfg.backend == "torch":
        return None
    explicit = pick_cfg.backend == "onnxruntime"
    reason, anomaly = None, False
    if device not in ("cpu", "auto"):
        reason = f"ONNX Runtime picks on the CPU only, and --device {args.device} asks for a GPU"
    elif device == "auto" and not explicit and not _cuda_impossible():
        reason = "this machine may have a CUDA GPU (pass --device cpu to pick on the CPU with it)"
    elif pick_cfg.precision != "float32":
        reason = f"ONNX Runtime picks in float32, and pick.precision is {pick_cfg.precision}"
    if reason is None:
        from cryounet.inference.onnx_picker import runtime_version

        version = runtime_version()
        if version is None:
            reason = "ONNX Runtime is not installed (pip install onnxruntime)"
    if reason is None:
        from cryounet.inference.onnx_picker import OnnxPicker, OnnxUnusable, load_onnx_model
        from cryounet.limits import fit_threads

        threads = fit_threads(args.threads)
        try:
            models = [load_onnx_model(path, threads) for path in members]
        except OnnxUnusable as exc:
            reason, anomaly = str(exc), exc.anomaly
    if reason is not None:
        if explicit:
            raise CryoUNetError(f"--backend onnxruntime cannot pick here: {reason}")
        logger.log(logging.WARNING if anomaly else logging.INFO, "picking with PyTorch: %s", reason)
        return None
    if device == "auto" and not _cuda_impossible():
        logger.info("--backend onnxruntime: running on the CPU although this machine may have a CUDA GPU")
    logger.info("using device cpu (%d threads, ONNX Runtime %s; --backend torch for PyTorch)", threads, version)
    _set_diameter(args, models)
    _log_settings(pick_cfg)
    return OnnxPicker(models, pick_cfg)


def _torch_picker(args: argparse.Namespace, base: CryoUNetConfig, members: list[Path]):
    """A :class:`~cryounet.inference.picker.Picker` on ``--device``."""
    from cryounet.device import machine_pick_settings, resolve_device
    from cryounet.inference.picker import Picker
    from cryounet.inference.predict import check_precision
    from cryounet.models.weights import load_model

    device = resolve_device(args.device, args.threads)
    pick_cfg = _pick_config(args, base, machine_pick_settings(device))
    models = [load_model(path, device) for path in members]
    _set_diameter(args, models)
    check_precision(device, pick_cfg.precision)
    if pick_cfg.precision != "float32":
        logger.info("forward passes in %s (autocast); probabilities in float32", pick_cfg.precision)
    _log_settings(pick_cfg)
    return Picker(models, pick_cfg, device)


def _set_diameter(args: argparse.Namespace, models: list) -> None:
    if args.diameter is not None:
        for model in models:
            model.info.diameter_px = args.diameter


def _log_settings(pick_cfg: PickConfig) -> None:
    logger.info("picking with tile_size %d, batch_size %d, %d worker thread(s), %s",
                pick_cfg.tile_size, pick_cfg.batch_size, pick_cfg.workers, pick_cfg.precision)
