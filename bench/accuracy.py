"""Accuracy benchmark on the real CryoPPP excerpts in ../shared/data.

For each set: train on ``train`` (validating, early-stopping and calibrating the threshold on
``valid``), pick ``test`` at the calibrated (auto) threshold, and score with the README's convention.
Each stage runs as the real ``cryounet`` CLI in its own process, so the wall time and peak RSS are
those a user sees. Prints one line per set and writes a JSON next to the chosen output folder.

    python bench/accuracy.py [--data ../shared/data] [--sets cryoppp-10028 ...]
                             [--config FILE.json] [--output bench/results/accuracy]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run a command, return (wall seconds, peak RSS in MiB of that process)."""
    t0 = time.monotonic()
    with open(log, "a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}), see {log}: {' '.join(cmd)}")
    return time.monotonic() - t0, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sets", nargs="*", help="set names (default: every set in --data)")
    parser.add_argument("--config", type=Path, help="engine config JSON for training")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "accuracy")
    parser.add_argument("--label", default="default", help="name of this configuration in the output")
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
        model, picks = out / "model", out / "picks"
        train_cmd = py + ["train", "--micrographs", str(root / "train"), "--coordinates", str(root / "train"),
                          "--valid-micrographs", str(root / "valid"), "--valid-coordinates", str(root / "valid"),
                          "--diameter", str(diameter), "--output", str(model), "--device", "cpu"]
        if args.config:
            train_cmd += ["--config", str(args.config)]
        train_s, train_rss = run(train_cmd, log)
        pick_s, pick_rss = run(py + ["pick", "--model", str(model), "--micrographs", str(root / "test"),
                                     "--output", str(picks), "--device", "cpu"], log)
        scores_json = out / "scores.json"
        run(py + ["evaluate", "--picks", str(picks), "--truth", str(root / "test"),
                  "--diameter", str(diameter), "--json", str(scores_json)], log)
        scores = json.loads(scores_json.read_text())
        history = json.loads((model / "history.json").read_text())
        row = {"set": name, "label": args.label, **scores, "train_seconds": train_s,
               "train_peak_rss_mib": train_rss, "pick_seconds": pick_s, "pick_peak_rss_mib": pick_rss,
               "epochs_run": len(history), "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)"}
        results.append(row)
        print(f"accuracy {args.label} {name}: P={scores['precision']:.3f} R={scores['recall']:.3f} "
              f"F1={scores['f1']:.3f} bestF1={scores['best_f1']:.3f} AP={scores['ap']:.3f} "
              f"train={train_s / 60:.1f}min ({len(history)} epochs) peakRSS={train_rss:.0f}MiB "
              f"pick={pick_s:.1f}s", flush=True)
    (args.output / args.label / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
