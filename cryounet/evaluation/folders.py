"""Scoring pick folders against ground-truth folders (files matched to micrographs by the rule of
:func:`cryounet.io.coordinates.list_coordinate_files`)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryounet.errors import CryoUNetError
from cryounet.evaluation.metrics import MATCH_RADIUS, average_precision, best_f1, evaluate
from cryounet.io.coordinates import (COORDINATE_SUFFIXES, find_coordinate_file, list_coordinate_files,
                                     read_coordinates)
from cryounet.io.picks_folder import check_picks_folder

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """Pooled scores of a picking run."""

    precision: float
    recall: float
    f1: float
    best_f1: float
    best_threshold: float
    best_precision: float
    best_recall: float
    ap: float
    n_micrographs: int
    n_picks: int
    n_truth: int

    def line(self) -> str:
        return (f"precision={self.precision:.3f} recall={self.recall:.3f} f1={self.f1:.3f} "
                f"best_f1={self.best_f1:.3f} (threshold {self.best_threshold:.3f}, "
                f"P {self.best_precision:.3f} R {self.best_recall:.3f}) ap={self.ap:.3f} "
                f"micrographs={self.n_micrographs} picks={self.n_picks} truth={self.n_truth}")


def evaluate_folders(picks_dir: Path, truth_dir: Path, diameter: float,
                     threshold: float | None = None) -> Evaluation:
    """Compare every ground-truth file in ``truth_dir`` with the same-stem file in ``picks_dir``.

    A ground-truth micrograph without a picks file counts as picked with nothing. Picks without a
    score get score 1. ``threshold`` filters picks by score before precision/recall/F1 (AP and best
    F1 always use all picks).
    """
    check_picks_folder(picks_dir)
    if not Path(truth_dir).is_dir():
        raise CryoUNetError(f"{truth_dir}: ground-truth folder does not exist")
    if diameter <= 0:
        raise CryoUNetError(f"--diameter must be positive, got {diameter}")
    truth_files = list_coordinate_files(truth_dir)
    if not truth_files:
        raise CryoUNetError(f"{truth_dir}: no coordinate files ({', '.join(COORDINATE_SUFFIXES)})")
    preds, scores, truths, missing = [], [], [], []
    for stem, truth_file in truth_files.items():
        truths.append(read_coordinates(truth_file).xy)
        pick_file = find_coordinate_file(stem, picks_dir, truth_files)
        if pick_file is None:
            missing.append(stem)
            preds.append(np.zeros((0, 2)))
            scores.append(np.zeros(0))
            continue
        picks = read_coordinates(pick_file)
        preds.append(picks.xy)
        scores.append(picks.scores if picks.scores is not None else np.ones(len(picks)))
    if len(missing) == len(truth_files):
        raise CryoUNetError(f"{picks_dir}: no pick file matches any ground-truth file in {truth_dir}")
    if missing:
        logger.warning("%d micrograph(s) have no pick file and count as empty: %s",
                       len(missing), ", ".join(missing[:5]))
    radius = MATCH_RADIUS * diameter
    kept = preds if threshold is None else [p[s >= threshold] for p, s in zip(preds, scores)]
    at = evaluate(kept, truths, radius)
    best_t, best = best_f1(preds, scores, truths, radius)
    return Evaluation(at.precision, at.recall, at.f1, best.f1, best_t, best.precision, best.recall,
                      average_precision(preds, scores, truths, radius), len(truths),
                      sum(len(p) for p in kept), sum(len(t) for t in truths))
