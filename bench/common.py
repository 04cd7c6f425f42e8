"""Helpers shared by the benchmarks: timed runs of the real CLI, and picking + scoring.

Scoring follows ../shared/data/README.md: the test micrographs are picked once with every candidate
down to :data:`CANDIDATE_THRESHOLD` (so that best F1 and AP see the whole ranking), and
precision/recall/F1 are taken at the model's calibrated ("auto") threshold, which selects exactly
the picks that ``cryounet pick --threshold auto`` writes (the engine's own rule,
:func:`cryounet.io.model_folder.picking_threshold`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from cryounet.evaluation.folders import load_evaluation_input, score
from cryounet.io.model_folder import picking_members, picking_threshold, read_model_info

REPO = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "cryounet"]
#: Lowest score kept as a candidate: the probability of Topaz's default extraction threshold (a
#: log-likelihood ratio of -6, p >= 0.0025; the "usual threshold" of the peer table in
#: docs/history), so that AP ranks as deep a candidate list as Topaz's AP did. Up to 2026-12-04 it
#: was the engine's pick.min_score, 0.05, which cut the tail of the ranking off (AP up to 0.015
#: lower; F1 (auto) the same: docs/history, "AP down to Topaz's candidate floor").
CANDIDATE_THRESHOLD = 0.0025


def run(cmd: Sequence[str], log: Path) -> tuple[float, float]:
    """Run a command (output appended to ``log``); return (wall seconds, peak RSS MiB)."""
    t0 = time.monotonic()
    with open(log, "a") as out:
        out.write("$ " + " ".join(map(str, cmd)) + "\n")
        out.flush()
        proc = subprocess.Popen(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed, see {log}: {' '.join(map(str, cmd))}")
    return time.monotonic() - t0, usage.ru_maxrss / 1024


def provenance(earlier: dict, machine: str, what: str) -> dict[str, str]:
    """``machine`` and ``code`` for a results file that this run adds rows to or replaces rows of
    (``earlier``: the file as it was, or ``{}``): the earlier runs' stay on record and this run's
    commit, with ``what`` it measured, is added; a different machine is named beside the earlier."""
    code = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()
    if not earlier.get("code"):
        return {"machine": machine, "code": code}
    known = machine in earlier.get("machine", "")
    return {"machine": earlier["machine"] if known else f"{earlier['machine']}; {what}: {machine}",
            "code": f"{earlier['code']}, {code} ({what})"}


def uses_tta(models: Sequence[Path], extra: Sequence[str] = ()) -> bool:
    """Whether ``cryounet pick`` with these models and options applies test-time augmentation:
    as ``--tta``/``--no-tta`` say, else as the first model's stored ``pick.tta``."""
    if "--tta" in extra or "--no-tta" in extra:
        return "--tta" in extra
    return read_model_info(models[0]).config.pick.tta


def pick_and_score(models: Sequence[Path], test_dir: Path, diameter: float, out: Path, log: Path,
                   extra: Sequence[str] = ()) -> tuple[dict, float, float]:
    """Pick ``test_dir`` with ``models`` and score it; returns (scores, pick seconds, pick RSS)."""
    device = [] if "--device" in extra else ["--device", "cpu"]  # extra may name another one
    cmd = PY + ["pick", "--micrographs", test_dir, "--output", out / "picks", "--overwrite", *device,
                "--quiet", "--threshold", str(CANDIDATE_THRESHOLD), *extra]
    for model in models:
        cmd += ["--model", model]
    seconds, rss = run(cmd, log)
    first = read_model_info(models[0]).config.pick
    folds = "--folds" in extra or ("--no-folds" not in extra and first.folds)
    infos = [read_model_info(m) for m in picking_members(models, folds)]
    threshold = picking_threshold(infos, uses_tta(models, extra), configured=first.threshold)
    # P/R/F1 at the model's threshold; best F1 and AP over every candidate (evaluate's --threshold
    # would cut those too), in-process with the engine's own scoring.
    data = load_evaluation_input(out / "picks", test_dir)
    everything, at = score(data, float(diameter)), score(data, float(diameter), threshold)
    scores = {"precision": at.precision, "recall": at.recall, "f1": at.f1, "best_f1": everything.best_f1,
              "best_threshold": everything.best_threshold, "ap": everything.ap, "threshold": threshold,
              "n_picks": at.n_picks, "n_truth": at.n_truth}
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    return scores, seconds, rss
