"""``cryounet pick``: pick micrographs with one model or an ensemble and write STAR files."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cryounet.commands._common import (MICROGRAPHS_HELP, add_device, add_overwrite, diameter, non_negative_int,
                                      positive_int, shard, show_progress)
from cryounet.config import GPU_PICK_WORKERS, PRECISIONS, PickConfig
from cryounet.io.model_folder import AUTO_THRESHOLD

name = "pick"
help = "pick particles with one or more trained models (several = ensemble)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, type=Path,
                        help="model folder (repeat for an ensemble: mean probability, spread kept)")
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
    parser.add_argument("--workers", type=non_negative_int, metavar="N",
                        help="threads that read and preprocess micrographs ahead of the network and "
                             f"find peaks behind it (a setting of this machine; default {PickConfig.workers} on "
                             f"the CPU, {GPU_PICK_WORKERS} on a GPU; 0: one step after another)")
    parser.add_argument("--folds", action=argparse.BooleanOptionalAction, default=None,
                        help="with a model trained with train.calibration_folds, pick with its fold "
                             "networks too, as one ensemble (default: the config's pick.folds, on)")
    parser.add_argument("--diameter", type=diameter,
                        help="particle diameter in pixels (default: the one the model was trained "
                             "with; set it for a general model or a differently sampled dataset)")
    parser.add_argument("--allow-all-skipped", action="store_true",
                        help="exit 0 even when no micrograph could be read (each skipped one is "
                             "listed with its reason in OUTPUT/skipped.json); for pipelines")
    parser.add_argument("--config", type=Path,
                        help="JSON file whose 'pick' section overrides the models' pick settings")
    parser.add_argument("--shard", type=shard, metavar="K/N",
                        help="pick only shard K of N of the micrograph list (every N-th from the K-th): "
                             "run N of these (e.g. one queue job each, into N output folders), then "
                             "cryounet merge --picks THEM --output ONE")
    add_overwrite(parser)
    add_device(parser)


def main(args: argparse.Namespace) -> int:
    from cryounet.config import load_config
    from cryounet.device import machine_pick_settings, resolve_device
    from cryounet.inference.batch import pick_micrographs
    from cryounet.inference.picker import Picker
    from cryounet.inference.predict import check_precision
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.io.model_folder import parse_threshold, picking_members
    from cryounet.io.outputs import claim_output_folder
    from cryounet.io.picks_folder import PICK_PATTERNS, check_stems, select_shard
    from cryounet.models.weights import load_model

    threshold = parse_threshold(args.threshold)
    micrographs = expand_micrographs(args.micrographs)
    if args.shard is not None:
        total = len(micrographs)
        micrographs = select_shard(micrographs, *args.shard)
        logger.info("shard %d/%d: %d of %d micrographs", *args.shard, len(micrographs), total)
    device = resolve_device(args.device, args.threads)
    models = [load_model(path, device) for path in args.model]
    check_stems(micrographs)
    # The models' picking rules (threshold, NMS, ...) apply; the memory settings are this machine's.
    cfg = models[0].info.config.updated({"pick": machine_pick_settings(device)})
    if args.config is not None:
        cfg = load_config(args.config, base=cfg)
    pick_cfg = cfg.pick
    if args.batch_size is not None:
        pick_cfg.batch_size = args.batch_size
    if args.tta is not None:
        pick_cfg.tta = args.tta
    if args.precision is not None:
        pick_cfg.precision = args.precision
    if args.workers is not None:
        pick_cfg.workers = args.workers
    if args.folds is not None:
        pick_cfg.folds = args.folds
    folds = [path for path in picking_members(args.model, pick_cfg.folds) if path not in set(args.model)]
    if folds:
        models += [load_model(path, device) for path in folds]
        logger.info("with %d calibration fold model(s) of %s: an ensemble of %d networks "
                    "(--no-folds: the given model(s) alone)", len(folds),
                    ", ".join(str(p) for p in args.model), len(models))
    if args.diameter is not None:
        for model in models:
            model.info.diameter_px = args.diameter
    check_precision(device, pick_cfg.precision)
    if pick_cfg.precision != "float32":
        logger.info("forward passes in %s (autocast); probabilities in float32", pick_cfg.precision)
    logger.info("picking with tile_size %d, batch_size %d, %d worker thread(s), %s",
                pick_cfg.tile_size, pick_cfg.batch_size, pick_cfg.workers, pick_cfg.precision)
    picker = Picker(models, pick_cfg, device)
    folder = claim_output_folder(args.output, "pick", overwrite=args.overwrite, patterns=PICK_PATTERNS)
    summary = pick_micrographs(picker, micrographs, args.output, threshold, show_progress(args),
                               allow_all_skipped=args.allow_all_skipped)
    folder.complete()
    logger.info("picked %d particles on %d micrograph(s) at threshold %.3f%s; STAR files in %s",
                summary.total, len(summary.picked), summary.threshold,
                f" ({len(summary.failed)} skipped)" if summary.failed else "", args.output)
    return 0
