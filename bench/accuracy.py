"""Accuracy benchmark on the real CryoPPP excerpts in ../shared/data.

For each set: train on ``train`` (validating, early-stopping and calibrating the threshold on
``valid``, or on a held-out part of ``train`` where a set has no ``valid``),
pick ``test`` at the calibrated (auto) threshold, and score with the README's convention.
Each stage runs as the real ``cryounet`` CLI in its own process, so the wall time and peak RSS are
those a user sees. Prints one line per set and writes a JSON next to the chosen output folder.

    python bench/accuracy.py [--data ../shared/data] [--sets cryoppp-10028 ...] [--seed 0]
                             [--config FILE.json] [--init general|MODEL] [--output bench/results/accuracy]
                             [--label NAME] [--threads N] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, pick_and_score, run  # noqa: E402

from cryounet.io.model_folder import fold_model_folders  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sets", nargs="*", help="set names (default: every set in --data)")
    parser.add_argument("--config", type=Path, help="engine config JSON for training")
    parser.add_argument("--init", help="start training from this model folder or 'general' "
                        "(passed to cryounet train --init)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "accuracy")
    parser.add_argument("--label", default="default", help="name of this configuration in the output")
    parser.add_argument("--seed", type=int, default=0, help="training seed (run-to-run spread)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for training and picking (0: every core; the thread count "
                        "changes the numerics, so its spread is measured like the seed's)")
    parser.add_argument("--device", default="cpu", help="where training and picking run (cpu, cuda)")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"accuracy: no data folder {args.data}; nothing to measure")
        return 0
    sets = args.sets or sorted(p.name for p in args.data.iterdir() if (p / "meta.json").is_file())
    results = []
    py = [sys.executable, "-m", "cryounet"]
    for name in sets:
        root = args.data / name
        diameter = json.loads((root / "meta.json").read_text())["diameter_px"]
        out = args.output / args.label / name
        out.mkdir(parents=True, exist_ok=True)
        log = out / "log.txt"
        log.write_text("")
        model = out / "model"
        train_cmd = py + ["train", "--micrographs", str(root / "train"), "--coordinates", str(root / "train"),
                          "--diameter", str(diameter), "--output", str(model), "--overwrite", "--device", args.device,
                          "--seed", str(args.seed)]
        if (root / "valid").is_dir():  # else training holds out a part of ``train``, as a user's does
            train_cmd += ["--valid-micrographs", str(root / "valid"), "--valid-coordinates", str(root / "valid")]
        if args.threads:
            train_cmd += ["--threads", str(args.threads)]
        if args.config:
            train_cmd += ["--config", str(args.config)]
        if args.init:
            train_cmd += ["--init", args.init]
        train_s, train_rss = run(train_cmd, log)
        pick_extra = ["--threads", str(args.threads)] if args.threads else []
        pick_extra += ["--device", args.device]
        scores, pick_s, pick_rss = pick_and_score([model], root / "test", diameter, out, log, pick_extra)
        history = json.loads((model / "history.json").read_text())
        folds = fold_model_folders(model)
        if folds:
            # With train.calibration_folds, `cryounet pick` uses the fold networks too (pick.folds):
            # the row above scores that ensemble; score the main network alone as well.
            main_out = out / "main-network"
            main_out.mkdir(exist_ok=True)
            main, _, _ = pick_and_score([model], root / "test", diameter, main_out, log,
                                        pick_extra + ["--no-folds"])
            scores["main_network"] = {k: main[k] for k in ("precision", "recall", "f1", "best_f1", "ap",
                                                           "threshold")}
        row = {"set": name, "label": args.label, "seed": args.seed, "threads": args.threads, "init": args.init,
               **scores,
               "train_seconds": train_s, "train_peak_rss_mib": train_rss, "pick_seconds": pick_s,
               "pick_peak_rss_mib": pick_rss,
               "epochs_run": len(history), "device": args.device,
               "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)"}
        results.append(row)
        print(f"accuracy {args.label} {name}: P={scores['precision']:.3f} R={scores['recall']:.3f} "
              f"F1={scores['f1']:.3f} bestF1={scores['best_f1']:.3f} AP={scores['ap']:.3f} "
              f"train={train_s / 60:.1f}min ({len(history)} epochs) peakRSS={train_rss:.0f}MiB "
              f"pick={pick_s:.1f}s", flush=True)
        if folds:
            main = scores["main_network"]
            print(f"accuracy {args.label} {name} main network alone (without its {len(folds)} fold "
                  f"networks): F1={main['f1']:.3f} bestF1={main['best_f1']:.3f} AP={main['ap']:.3f}", flush=True)
    # Runs of other sets under the same label (e.g. one process per set) keep their rows.
    summary = args.output / args.label / "results.json"
    if summary.is_file():
        results = [r for r in json.loads(summary.read_text()) if r["set"] not in sets] + results
    summary.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
