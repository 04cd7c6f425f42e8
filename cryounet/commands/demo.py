"""``cryounet demo``: simulate a small dataset, train, pick, evaluate — the whole job in minutes."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from cryounet.commands._common import (add_device, add_overwrite, diameter, positive_int, seed,
                                      show_progress)

name = "demo"
help = ("simulate micrographs with known particles, train a model, pick held-out micrographs, write "
        "STAR files and print precision/recall/F1 (a few minutes on 2 CPU cores)")
logger = logging.getLogger(__name__)

#: Demo training settings: short, but a real training run with validation and calibration.
DEMO_CONFIG = {
    "train": {"epochs": 12, "steps_per_epoch": 25, "batch_size": 8, "patch_size": 64, "patience": 6},
    "model": {"base_channels": 16, "depth": 3},
}


#: What ``demo`` writes (the new files under these make its manifest, :mod:`cryounet.io.outputs`).
DEMO_PATTERNS = ("data", "model", "picks", "scores.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, default=Path("cryounet-demo"),
                        help="folder for the simulated data, model, picks and scores")
    parser.add_argument("--micrographs", type=positive_int, default=8, help="training micrographs to simulate")
    parser.add_argument("--size", type=positive_int, default=512, help="micrograph side in pixels")
    parser.add_argument("--diameter", type=diameter, default=32.0, help="particle diameter in pixels")
    parser.add_argument("--epochs", type=positive_int, help="training epochs (default 12)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed")
    add_overwrite(parser)
    add_device(parser)


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from cryounet.config import CryoUNetConfig
    from cryounet.device import resolve_device
    from cryounet.errors import CryoUNetError
    from cryounet.evaluation.folders import evaluate_folders
    from cryounet.inference.batch import pick_micrographs
    from cryounet.inference.picker import Picker
    from cryounet.io.atomic import write_json
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.io.outputs import claim_output_folder
    from cryounet.models.weights import load_model
    from cryounet.simulate import SimulationConfig, simulate_dataset
    from cryounet.training.data import load_labelled, split_validation
    from cryounet.training.loop import train

    if args.micrographs < 2:
        raise CryoUNetError("--micrographs must be at least 2 (one is held out for validation)")
    t0 = time.monotonic()
    out: Path = args.output
    device = resolve_device(args.device, args.threads)
    folder = claim_output_folder(out, "demo", overwrite=args.overwrite, patterns=DEMO_PATTERNS)
    sim = dict(size=args.size, diameter_px=args.diameter)
    train_dir, test_dir = out / "data" / "train", out / "data" / "test"
    simulate_dataset(SimulationConfig(n_micrographs=args.micrographs, seed=args.seed, **sim), train_dir)
    simulate_dataset(SimulationConfig(n_micrographs=3, seed=args.seed + 1000, **sim), test_dir)
    logger.info("simulated %d training and 3 test micrographs in %s", args.micrographs, out / "data")

    cfg = CryoUNetConfig().updated(DEMO_CONFIG)
    cfg.train.seed = args.seed
    if args.epochs is not None:
        cfg.train.epochs = args.epochs
    items, _ = load_labelled(expand_micrographs([train_dir]), train_dir, args.diameter, cfg.preprocess)
    train_items, valid = split_validation(items, 0.25, np.random.default_rng(args.seed))
    result = train(train_items, valid, cfg, args.diameter, out / "model", device,
                   progress=show_progress(args))

    picker = Picker([load_model(out / "model", device)], cfg.pick, device)
    test_mics = expand_micrographs([test_dir])
    summary = pick_micrographs(picker, test_mics, out / "picks", None, show_progress(args))
    scores = evaluate_folders(out / "picks", test_dir, args.diameter, summary.threshold)
    write_json(out / "scores.json", {"precision": scores.precision, "recall": scores.recall,
                                     "f1": scores.f1, "ap": scores.ap, "threshold": summary.threshold,
                                     "best_epoch": result.best_epoch})
    folder.complete()
    print(f"demo: precision={scores.precision:.3f} recall={scores.recall:.3f} f1={scores.f1:.3f} "
          f"ap={scores.ap:.3f} at threshold {summary.threshold:.3f} on {len(test_mics)} held-out "
          f"micrographs ({scores.n_truth} particles); STAR files in {out / 'picks'}; "
          f"{(time.monotonic() - t0) / 60:.1f} min")
    return 0
