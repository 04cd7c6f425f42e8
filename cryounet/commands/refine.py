"""``cryounet refine``: pseudo-labelled self-training of a trained model on unlabelled micrographs."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cryounet.commands._common import (GENERAL_HELP, MICROGRAPHS_HELP, add_device, add_overwrite,
                                      coordinates_folder, diameter, model_folder, positive_int, seed, show_progress)

name = "refine"
help = ("refine a trained model by self-training on unlabelled micrographs (pseudo-labels with "
        "thresholds that relax per round)")
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=model_folder,
                        help=f"trained model folder to start from ({GENERAL_HELP}, which needs --diameter)")
    parser.add_argument("--diameter", type=diameter,
                        help="particle diameter in pixels (default: the model's; required with the "
                             "general model)")
    parser.add_argument("--micrographs", nargs="+", required=True,
                        help=f"labelled {MICROGRAPHS_HELP} (those without coordinates count as unlabelled)")
    parser.add_argument("--coordinates", required=True, type=coordinates_folder, help="folder of coordinate files")
    parser.add_argument("--unlabelled", nargs="+", help=f"unlabelled {MICROGRAPHS_HELP}")
    parser.add_argument("--output", required=True, type=Path, help="folder for the refined model")
    parser.add_argument("--valid-micrographs", nargs="+", help=f"validation {MICROGRAPHS_HELP}")
    parser.add_argument("--valid-coordinates", type=coordinates_folder, help="folder of validation coordinates")
    parser.add_argument("--rounds", type=positive_int, help="self-training rounds (overrides the config)")
    parser.add_argument("--seed", type=seed, help="random seed (overrides the config)")
    parser.add_argument("--config", type=Path,
                        help="JSON file overriding the model's config (e.g. its 'refine' section)")
    add_overwrite(parser, "the model folder")
    add_device(parser)


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from cryounet.config import load_config
    from cryounet.device import resolve_device
    from cryounet.errors import CryoUNetError, InputFileError
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.io.model_folder import MODEL_PATTERNS, check_general_diameter
    from cryounet.io.outputs import claim_output_folder, input_paths
    from cryounet.models.weights import load_model
    from cryounet.training.data import load_labelled, load_micrograph, split_validation
    from cryounet.training.refine import refine

    if (args.valid_micrographs is None) != (args.valid_coordinates is None):
        raise CryoUNetError("--valid-micrographs and --valid-coordinates go together")
    if args.output.resolve() == args.model.resolve():
        raise CryoUNetError("--output must differ from --model (the input model would be overwritten)")
    check_general_diameter([args.model], args.diameter)
    device = resolve_device(args.device, args.threads)
    model = load_model(args.model, device)
    if args.diameter is not None:
        model.info.diameter_px = args.diameter
    cfg = load_config(args.config, base=model.info.config)
    if args.rounds is not None:
        cfg.refine.rounds = args.rounds
    if args.seed is not None:
        cfg.train.seed = args.seed
    diameter = model.info.diameter_px
    items, unlabelled_paths = load_labelled(expand_micrographs(args.micrographs), args.coordinates,
                                            diameter, cfg.preprocess)
    if args.unlabelled:
        unlabelled_paths += expand_micrographs(args.unlabelled)
    known = {it.name for it in items}
    unlabelled_paths = [p for p in dict.fromkeys(unlabelled_paths) if p.stem not in known]
    unlabelled = []
    for path in unlabelled_paths:
        try:
            unlabelled.append(load_micrograph(path, diameter, cfg.preprocess))
        except InputFileError as exc:
            logger.warning("skipping %s", exc)
    if args.valid_micrographs:
        valid, _ = load_labelled(expand_micrographs(args.valid_micrographs), args.valid_coordinates,
                                 diameter, cfg.preprocess)
        train_items = items
    else:
        train_items, valid = split_validation(items, cfg.train.valid_fraction,
                                              np.random.default_rng(cfg.train.seed))
    folder = claim_output_folder(args.output, "refine", overwrite=args.overwrite, patterns=MODEL_PATTERNS,
                                 inputs=input_paths(args.model, args.micrographs, args.coordinates, args.unlabelled,
                                                    args.valid_micrographs, args.valid_coordinates, args.config,
                                                    unlabelled_paths))
    history = refine(model, train_items, valid, unlabelled, cfg, args.output, device,
                     show_progress(args))
    folder.complete()
    for record in history[1:]:
        logger.info("round %d: %d pseudo-picks on %d micrograph(s), validation F1 %.3f",
                    record["round"], record["pseudo_positives"], record["micrographs_used"],
                    record["valid_f1"])
    return 0
