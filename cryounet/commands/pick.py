"""``cryounet pick``: pick micrographs with one model or an ensemble and write STAR files."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cryounet.commands._common import (GENERAL_HELP, MICROGRAPHS_HELP, add_device, add_overwrite, diameter,
                                      model_folder, non_negative_int, positive_int, shard, show_progress)
from cryounet.config import BACKENDS, GPU_PICK_WORKERS, PRECISIONS, PickConfig
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
                             "pick.threshold when set, else the one calibrated at training; or otsu: "
                             "every candidate is picked, then the folder is cut at the threshold read "
                             "from their scores (for a model that never saw the protein, e.g. general)")
    parser.add_argument("--batch-size", type=positive_int, help="tiles per forward pass")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="test-time augmentation: average the network's output over the "
                             "model's pick.tta_symmetries (the four rotations, or all eight flips and "
                             "rotations) (default: the model's pick.tta)")
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
    from cryounet.inference.backend import OPTIONS, PickRequest, make_picker
    from cryounet.inference.batch import pick_micrographs
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.inference.label_free import cut_at_rule, picking_threshold_option
    from cryounet.io.model_folder import check_general_diameter
    from cryounet.io.outputs import claim_output_folder, input_paths
    from cryounet.io.picks_folder import PICK_PATTERNS, check_stems, pick_names, select_shard

    threshold, rule = picking_threshold_option(args.threshold, args.shard)
    check_general_diameter(args.model, args.diameter)
    micrographs = expand_micrographs(args.micrographs)
    total = len(micrographs)
    if args.shard is not None:
        micrographs = select_shard(micrographs, *args.shard)
        logger.info("shard %d/%d: %d of %d micrographs", *args.shard, len(micrographs), total)
    chosen = make_picker(PickRequest(list(args.model), args.device, args.threads, args.config,
                                     {option: getattr(args, option) for option in OPTIONS}, args.diameter))
    check_stems(micrographs)
    folder = claim_output_folder(args.output, "pick", overwrite=args.overwrite, resume=args.resume,
                                 patterns=PICK_PATTERNS, writes=pick_names(micrographs),
                                 inputs=input_paths(args.micrographs, micrographs, chosen.members, args.config))
    summary = pick_micrographs(chosen.picker, micrographs, args.output, threshold, show_progress(args),
                               allow_all_skipped=args.allow_all_skipped, shard=args.shard, listed=total,
                               resume=args.resume)
    if rule is not None:
        summary.threshold, summary.picked = cut_at_rule(args.output, rule, chosen.picker.threshold(None))
    folder.complete()
    logger.info("picked %d particles on %d micrograph(s) at threshold %.3f%s; STAR files in %s",
                summary.total, len(summary.picked), summary.threshold,
                f" ({len(summary.failed)} skipped)" if summary.failed else "", args.output)
    return 0
