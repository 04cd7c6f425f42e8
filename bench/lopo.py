"""Leave-one-protein-out evaluation of the general model (issue 34).

For each labelled set, a general model is trained on the OTHER sets together (``cryounet train
--datasets``: each set's ``train`` micrographs at its own diameter, validated on its ``valid``
micrographs when it has them, else on a held-out fraction), then picks the held-out set's ``test``
micrographs zero-shot (``--diameter`` of that set, candidates down to p = 0.0025) and is scored
there: best F1 (tuned on the test truth: a ceiling), AP, F1 at the model's own calibrated threshold,
and F1 at label-free thresholds computed from the held-out micrographs' own scores.

    python bench/lopo.py --data ../shared/data PUBLIC_SETS [--sets A B ...] [--threads 2] [--seed 0]
                         [--output bench/results/lopo-runs] [--json bench/results/general-lopo.json]
                         [--variant NAME --extra SIMULATED_SETS] [--config FILE.json]

``--extra`` adds training-only sets (``bench/simulated_sets.py``'s simulated ones) to every training;
``--variant`` names such a recipe, whose runs are kept beside the plain ones.

PUBLIC_SETS is the output folder of ``../shared/data/build_public_sets.py``. EMPIAR-10059 is never
used. Trained models are cached in ``--output`` (a rerun scores them again without training).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CANDIDATE_THRESHOLD, PY, REPO, provenance, run  # noqa: E402

from cryounet.evaluation.metrics import MATCH_RADIUS, average_precision, best_f1, evaluate  # noqa: E402
from cryounet.io.coordinates import list_coordinate_files, read_coordinates  # noqa: E402
from cryounet.io.model_folder import picking_threshold, read_model_info  # noqa: E402
from cryounet.postprocess.threshold_rules import otsu_split, otsu_threshold  # noqa: E402

RESERVED = ("10059",)


def find_sets(roots: list[Path], names: list[str] | None) -> dict[str, Path]:
    sets = {}
    for root in roots:
        for folder in sorted(p for p in root.iterdir() if (p / "meta.json").is_file()):
            if any(r in folder.name for r in RESERVED):
                continue
            sets[folder.name] = folder
    return {k: v for k, v in sets.items() if not names or k in names}


def diameter_of(folder: Path) -> float:
    return float(json.loads((folder / "meta.json").read_text())["diameter_px"])


def train_general(sets: dict[str, Path], model: Path, log: Path, threads: int, seed: int,
                  config: Path | None = None, extra: dict[str, Path] | None = None) -> float:
    """Train one model on ``sets`` together, plus the training-only ``extra`` sets (no validation
    from them); return the training minutes (0 when cached)."""
    marker = model / ".cryounet-output.json"
    if marker.is_file() and json.loads(marker.read_text()).get("complete"):
        return 0.0
    datasets = []
    for folder in sets.values():
        entry = {"micrographs": [str(folder / "train")], "coordinates": str(folder / "train"),
                 "diameter": diameter_of(folder)}
        if (folder / "valid").is_dir():
            entry.update(valid_micrographs=[str(folder / "valid")], valid_coordinates=str(folder / "valid"))
        datasets.append(entry)
    datasets += [{"micrographs": [str(folder / "train")], "coordinates": str(folder / "train"),
                  "diameter": diameter_of(folder), "validate": False} for folder in (extra or {}).values()]
    spec = model.parent / "datasets.json"
    spec.write_text(json.dumps(datasets, indent=1))
    cmd = PY + ["train", "--datasets", spec, "--output", model, "--overwrite", "--device", "cpu",
                "--seed", str(seed), "--threads", str(threads)]
    seconds, _ = run(cmd + (["--config", config] if config else []), log)
    return seconds / 60


def logged_minutes(log: Path) -> float:
    """The training minutes ``cryounet train`` logged last in a run folder's log (0 when none)."""
    found = re.findall(r"INFO done in ([0-9.]+) min", log.read_text()) if log.is_file() else []
    return float(found[-1]) if found else 0.0


def _read_folder(picks: Path, truth_dir: Path) -> tuple[list, list, list]:
    preds, scores, truths = [], [], []
    for stem, truth_file in list_coordinate_files(truth_dir).items():
        truths.append(read_coordinates(truth_file).xy)
        star = picks / f"{stem}.star"
        p = read_coordinates(star) if star.is_file() else None
        preds.append(np.zeros((0, 2)) if p is None else p.xy)
        scores.append(np.zeros(0) if p is None or p.scores is None else p.scores)
    return preds, scores, truths


def otsu_linear(values: np.ndarray) -> float:
    """Otsu's split of ``values`` on the probability scale (the first rule tried; kept for the record)."""
    return otsu_split(values, bins=200, value_range=(0.0, 1.0))


def label_free_thresholds(scores: list[np.ndarray]) -> dict[str, float]:
    """Thresholds that use nothing but the held-out micrographs' candidate scores: the engine's rule
    (``cryounet postprocess --threshold otsu``: Otsu on the logit scale) and Otsu on the probabilities."""
    pooled = np.concatenate([s for s in scores if len(s)]) if any(len(s) for s in scores) else np.zeros(1)
    return {"otsu": otsu_threshold(scores), "otsu_linear": otsu_linear(pooled)}


def score_set(model: Path, folder: Path, out: Path, log: Path, threads: int) -> dict:
    diameter = diameter_of(folder)
    picks = out / "picks"
    t0 = time.monotonic()
    run(PY + ["pick", "--model", model, "--micrographs", folder / "test", "--output", picks, "--overwrite",
              "--device", "cpu", "--quiet", "--threads", str(threads), "--diameter", str(diameter),
              "--threshold", str(CANDIDATE_THRESHOLD)], log)
    pick_s = time.monotonic() - t0
    preds, scores, truths = _read_folder(picks, folder / "test")
    radius = MATCH_RADIUS * diameter
    info = read_model_info(model)
    own = picking_threshold([info], info.config.pick.tta)
    best_t, best = best_f1(preds, scores, truths, radius)
    row = {"best_f1": best.f1, "best_threshold": best_t,
           "ap": average_precision(preds, scores, truths, radius), "pick_seconds": pick_s,
           "thresholds": {"own": own, **label_free_thresholds(scores)}}
    for rule, t in row["thresholds"].items():
        row[f"f1_{rule}"] = evaluate([p[s >= t] for p, s in zip(preds, scores)], truths, radius).f1
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", default=[REPO.parent / "shared" / "data"])
    parser.add_argument("--sets", nargs="*", help="set names (default: every set found)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, help="engine config JSON for the trainings")
    parser.add_argument("--extra", type=Path, nargs="*", default=[],
                        help="folders of further training-only sets (e.g. simulated; bench/simulated_sets.py): "
                             "every set in them is added to each training, never held out or scored")
    parser.add_argument("--variant", default="", help="name of this training recipe (runs are kept per variant)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "lopo-runs")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "general-lopo.json")
    args = parser.parse_args()
    sets = find_sets(args.data, None)
    extra = find_sets(args.extra, None) if args.extra else {}
    held_out = [name for name in sets if not args.sets or name in args.sets]
    earlier = json.loads(args.json.read_text()) if args.json.is_file() else {}
    previous = earlier.get("runs", [])
    rows = []
    for name in held_out:
        others = {k: v for k, v in sets.items() if k != name}
        out = args.output / f"seed{args.seed}{'-' + args.variant if args.variant else ''}" / f"without-{name}"
        out.mkdir(parents=True, exist_ok=True)
        log = out / "log.txt"
        minutes = train_general(others, out / "model", log, args.threads, args.seed, args.config, extra)
        if minutes == 0.0:  # cached: the minutes measured when it was trained
            minutes = next((r["train_minutes"] for r in previous if r["held_out"] == name
                            and r.get("seed") == args.seed and r.get("variant", "") == args.variant),
                           logged_minutes(log))
        row = {"held_out": name, "trained_on": sorted(others) + sorted(extra), "train_minutes": round(minutes, 2),
               **score_set(out / "model", sets[name], out, log, args.threads)}
        rows.append(row)
        print(f"lopo {name}: best F1 {row['best_f1']:.3f} AP {row['ap']:.3f} F1 own {row['f1_own']:.3f} "
              f"otsu {row['f1_otsu']:.3f} otsu_linear {row['f1_otsu_linear']:.3f} "
              f"(trained {minutes:.1f} min on {', '.join(sorted(others))})", flush=True)
    runs = [r for r in previous if not (r["held_out"] in held_out and r.get("seed") == args.seed
                                        and r.get("variant", "") == args.variant)]
    runs += [{**r, "seed": args.seed, "variant": args.variant} for r in rows]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    # the earlier record's command (its list of variants), notes and shipped recipe stay
    kept = {key: earlier[key] for key in ("shipped_recipe", "notes") if key in earlier}
    args.json.write_text(json.dumps({
        "id": "general-lopo", "title": "General model, leave one protein out (zero-shot)",
        "command": earlier.get("command", "python bench/lopo.py --data ../shared/data PUBLIC_SETS --threads T "
                                          "--seed S [--variant V --extra SIMULATED_SETS --config C]"),
        **provenance(earlier, f"{os.cpu_count()}-core {platform.machine()} VM, {args.threads} thread(s)",
                     f"{args.variant or 'plain'}, seed {args.seed}"),
        "date": time.strftime("%Y-%m-%d"), **kept, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
