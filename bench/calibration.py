"""Threshold rules and the ceiling: what trained models reach on the real CryoPPP test splits.

For every given model folder (by default every model the accuracy and ablation benchmarks left in
bench/results), pick the set's ``valid``, ``test`` and ``train`` micrographs with test-time
augmentation and NMS at 0.4 diameters (the 0.2 picking defaults), keeping every candidate. Then
score the test picks at the threshold each rule takes:

- ``best``: the highest threshold with the best F1 on ``valid`` (the engine's rule up to 0.2.0,
  ``train.calibration_tolerance = 0``);
- ``plateau``: the middle of the thresholds whose ``valid`` F1 is within 0.02 of the best (the
  engine's rule since 0.2.1, :meth:`cryounet.metrics.ThresholdCurve.calibrated_index`);
- ``smoothed``: the best of the ``valid`` F1 curve smoothed over 21 neighbouring thresholds;
- ``train+valid``: the ``best`` rule on ``valid`` and ``train`` pooled (in-sample, biased);
- ``oracle``: the best F1 on ``test`` itself, a ceiling no threshold rule can pass.

Prints one line per set (mean over models, and the highest oracle) and writes a JSON.

    python bench/calibration.py [--data ../shared/data] [--models FOLDER ...]
                                [--output bench/results/calibration]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO  # noqa: E402

from cryounet.evaluation.metrics import (MATCH_RADIUS, ThresholdCurve, best_f1, evaluate,  # noqa: E402
                                         threshold_curve)
from cryounet.inference.picker import Picker  # noqa: E402
from cryounet.io.coordinates import find_coordinate_file, read_coordinates  # noqa: E402
from cryounet.io.mrc import read_micrograph  # noqa: E402
from cryounet.models.weights import load_model  # noqa: E402

SPLITS = ("valid", "test", "train")
PLATEAU = 0.02
SMOOTHING = 21


def default_models() -> list[Path]:
    results = REPO / "bench" / "results"
    return sorted(p.parent for p in list(results.glob("accuracy/*/*/model/config.json"))
                  + list(results.glob("ablation/*/*/model_*/config.json")))


def set_of(model: Path, data: Path) -> str:
    """The shared set a benchmark model was trained on (a folder of that name in its path)."""
    names = [part for part in model.parts if (data / part / "meta.json").is_file()]
    if not names:
        raise SystemExit(f"{model}: no set of {data} in its path")
    return names[-1]


def pick_splits(model: Path, root: Path, diameter: float) -> dict[str, tuple[list, list, list]]:
    """Candidate picks (xy, scores) and ground truth of every split, input pixels."""
    loaded = load_model(model)
    # Candidates down to the model's pick.min_score, as the engine calibrates (not bench/common.py's
    # lower floor for AP): the rules are compared on the curves training sees.
    pick = dataclasses.replace(loaded.info.config.pick, tta=True, nms_radius=0.4)
    loaded.info.diameter_px = diameter
    picker = Picker([loaded], pick)
    out = {}
    for split in SPLITS:
        xy, scores, truth = [], [], []
        for mrc in sorted((root / split).glob("*.mrc")):
            result = picker.pick_image(read_micrograph(mrc), None)
            xy.append(result.picks.xy)
            scores.append(result.picks.scores)
            truth_file = find_coordinate_file(mrc.stem, mrc.parent) or mrc.with_suffix(".star")
            truth.append(read_coordinates(truth_file).xy)
        out[split] = (xy, scores, truth)
    return out


def best_rule(curve: ThresholdCurve) -> float:
    return float(curve.thresholds[curve.best_index()])


def plateau_rule(curve: ThresholdCurve) -> float:
    return float(curve.thresholds[curve.calibrated_index(PLATEAU)])


def smoothed_rule(curve: ThresholdCurve) -> float:
    half = SMOOTHING // 2
    padded = np.pad(curve.f1, half, mode="edge")
    smooth = np.convolve(padded, np.ones(SMOOTHING) / SMOOTHING, mode="valid")
    return float(curve.thresholds[int(np.argmax(smooth))])


def score_model(picks: dict[str, tuple[list, list, list]], radius: float) -> dict[str, float]:
    valid_curve = threshold_curve(*picks["valid"], radius)
    pooled = tuple(a + b for a, b in zip(picks["valid"], picks["train"]))
    thresholds = {
        "best": best_rule(valid_curve),
        "plateau": plateau_rule(valid_curve),
        "smoothed": smoothed_rule(valid_curve),
        "train+valid": best_rule(threshold_curve(*pooled, radius)),
    }
    xy, scores, truth = picks["test"]
    row = {rule: evaluate([p[s >= t] for p, s in zip(xy, scores)], truth, radius).f1
           for rule, t in thresholds.items()}
    row["oracle"] = best_f1(xy, scores, truth, radius)[1].f1  # exact over every threshold
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--models", type=Path, nargs="*", help="model folders (default: bench/results)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "calibration")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"calibration: no data folder {args.data}; nothing to measure")
        return 0
    models = args.models or default_models()
    if not models:
        print("calibration: no trained models; run bench/accuracy.py or bench/ablation.py first")
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in models:
        name = set_of(model, args.data)
        diameter = float(json.loads((args.data / name / "meta.json").read_text())["diameter_px"])
        picks = pick_splits(model, args.data / name, diameter)
        rows.append({"model": str(model), "set": name, **score_model(picks, MATCH_RADIUS * diameter)})
    (args.output / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    for name in sorted({r["set"] for r in rows}):
        of_set = [r for r in rows if r["set"] == name]
        means = {k: np.mean([r[k] for r in of_set]) for k in of_set[0] if k not in ("model", "set")}
        best = max(of_set, key=lambda r: r["oracle"])
        print(f"calibration {name}: {len(of_set)} models, mean test F1 by threshold rule "
              + " ".join(f"{k}={v:.3f}" for k, v in means.items())
              + f"; highest oracle {best['oracle']:.3f} ({best['model']})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
