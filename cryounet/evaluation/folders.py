"""Scoring pick folders against ground-truth folders (files matched to micrographs by the rule of
:func:`cryounet.io.coordinates.list_coordinate_files`)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryounet.errors import CryoUNetError
from cryounet.evaluation.honesty import (BEST_F1_NOTE, ap_note, check_finite_scores, check_radius,
                                         cut_level, median_spacing)
from cryounet.evaluation.metrics import MATCH_RADIUS, average_precision, best_f1, evaluate
from cryounet.io.coordinates import (COORDINATE_SUFFIXES, find_coordinate_file, is_folder_index,
                                     list_coordinate_files, read_coordinates)
from cryounet.io.folders import input_folder
from cryounet.io.picks_folder import check_picks_folder, read_pick_record

logger = logging.getLogger(__name__)


@dataclass
class EvaluationInput:
    """Picks and truth of the micrographs of a truth folder, in the same order."""

    stems: list[str]
    preds: list[np.ndarray]
    scores: list[np.ndarray]
    truths: list[np.ndarray]
    scored: bool = True  # False when no pick file carries scores (each counts as 1)
    recorded_threshold: float | None = None  # the threshold the pick folder says it was picked at

    def above(self, threshold: float | None) -> "EvaluationInput":
        """The same micrographs with only the picks scoring at least ``threshold``."""
        if threshold is None:
            return self
        keep = [s >= threshold for s in self.scores]
        return EvaluationInput(self.stems, [p[k] for p, k in zip(self.preds, keep)],
                               [s[k] for s, k in zip(self.scores, keep)], self.truths, self.scored,
                               self.recorded_threshold)


@dataclass
class Evaluation:
    """Pooled scores of a picking run, with what they mean."""

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
    diameter: float = 0.0
    matching_radius: float = 0.0
    truth_spacing: float | None = None  # median distance between neighbouring truth centres (px)
    radius_warning: str | None = None
    threshold: float | None = None  # evaluate's --threshold: every figure counts only picks above it
    lowest_score: float | None = None
    ap_cut_at: float | None = None  # the picks were already cut at this score
    ap_note: str | None = None
    best_f1_note: str = field(default=BEST_F1_NOTE)

    def line(self) -> str:
        """The figures as ``key=value`` (for scripts); :meth:`lines` says what they mean."""
        return (f"precision={self.precision:.3f} recall={self.recall:.3f} f1={self.f1:.3f} ap={self.ap:.3f} "
                f"micrographs={self.n_micrographs} picks={self.n_picks} truth={self.n_truth}")

    def lines(self) -> list[str]:
        """The report: the figures, the matching rule, which picks count, best F1 and AP, labelled."""
        spacing = ("unknown (no micrograph holds two truth centres)" if self.truth_spacing is None
                   else f"{self.truth_spacing:.1f} px")
        which = ("all picks" if self.threshold is None
                 else f"picks scoring >= {self.threshold:g} (--threshold; every figure)")
        lowest = "" if self.lowest_score is None else f", lowest score {self.lowest_score:.3g}"
        return [self.line(),
                f"matching: one-to-one, a pick within {self.matching_radius:.1f} px of a truth centre "
                f"(0.5 x --diameter {self.diameter:g}); truth centres' median neighbour distance {spacing}",
                f"counted: {which}: {self.n_picks} picks{lowest}; {self.n_truth} truth centres on "
                f"{self.n_micrographs} micrographs",
                f"best F1 {self.best_f1:.3f} at threshold {self.best_threshold:.3g} (P {self.best_precision:.3f}, "
                f"R {self.best_recall:.3f}): {self.best_f1_note}",
                f"AP {self.ap:.3f}" + (f": {self.ap_note}" if self.ap_note else
                                       " over all candidates (comparable between runs)")]


def load_evaluation_input(picks_dir: Path, truth_dir: Path) -> EvaluationInput:
    """Every ground-truth file of ``truth_dir`` with the same-stem pick file of ``picks_dir``.

    A ground-truth micrograph without a picks file counts as picked with nothing; picks without a
    score get score 1.

    Raises:
        CryoUNetError: a folder is missing, holds no coordinate file or nothing matches, or a score
            is not a finite number.
    """
    picks_dir = check_picks_folder(picks_dir)
    truth_dir = input_folder(truth_dir, "ground-truth folder", is_folder_index)
    truth_files = list_coordinate_files(truth_dir)
    if not truth_files:
        raise CryoUNetError(f"{truth_dir}: no coordinate files ({', '.join(COORDINATE_SUFFIXES)})")
    data = EvaluationInput([], [], [], [], scored=False, recorded_threshold=_recorded_threshold(picks_dir))
    missing = []
    for stem, truth_file in truth_files.items():
        data.stems.append(stem)
        data.truths.append(read_coordinates(truth_file).xy)
        pick_file = find_coordinate_file(stem, picks_dir, truth_files)
        picks = read_coordinates(pick_file) if pick_file is not None else None
        if picks is None:
            missing.append(stem)
        elif picks.scores is not None:
            check_finite_scores(picks.scores, pick_file)
            data.scored = True
        data.preds.append(np.zeros((0, 2)) if picks is None else picks.xy)
        data.scores.append(np.zeros(0) if picks is None else
                           picks.scores if picks.scores is not None else np.ones(len(picks)))
    if len(missing) == len(truth_files):
        raise CryoUNetError(f"{picks_dir}: no pick file matches any ground-truth file in {truth_dir}")
    if missing:
        logger.warning("%d micrograph(s) have no pick file and count as empty: %s",
                       len(missing), ", ".join(missing[:5]))
    return data


def _recorded_threshold(picks_dir: Path) -> float | None:
    """The threshold a pick folder's ``pick.json`` says its picks were cut at, when it says one."""
    record = read_pick_record(picks_dir)
    value = None if record is None else record.threshold
    return float(value) if value is not None and math.isfinite(value) else None


def score(data: EvaluationInput, diameter: float, threshold: float | None = None,
          allow_large_radius: bool = False) -> Evaluation:
    """Every figure over the picks scoring at least ``threshold`` (all picks when None).

    Raises:
        CryoUNetError: a diameter that is not positive, or a matching radius wider than the truth's
            spacing (unless ``allow_large_radius``).
    """
    if not diameter > 0:
        raise CryoUNetError(f"--diameter must be positive, got {diameter}")
    radius = MATCH_RADIUS * diameter
    spacing = median_spacing(data.truths)
    warning = check_radius(radius, diameter, spacing, allow_large_radius)
    if warning:
        logger.warning("%s", warning)
    kept = data.above(threshold)
    at = evaluate(kept.preds, kept.truths, radius)
    best_t, best = best_f1(kept.preds, kept.scores, kept.truths, radius)
    pooled = np.concatenate(kept.scores) if kept.scores else np.zeros(0)
    ranked = data.scored and pooled.size > 0 and float(np.ptp(pooled)) > 0  # more than one score to rank by
    cut = cut_level(kept.scores, threshold, data.recorded_threshold) if ranked else None
    return Evaluation(at.precision, at.recall, at.f1, best.f1, best_t, best.precision, best.recall,
                      average_precision(kept.preds, kept.scores, kept.truths, radius), len(kept.truths),
                      at.n_pred, at.n_true, diameter=diameter, matching_radius=radius, truth_spacing=spacing,
                      radius_warning=warning, threshold=threshold,
                      lowest_score=float(pooled.min()) if pooled.size and data.scored else None,
                      ap_cut_at=cut, ap_note=ap_note(cut, ranked))


def evaluate_folders(picks_dir: Path, truth_dir: Path, diameter: float, threshold: float | None = None,
                     allow_large_radius: bool = False) -> Evaluation:
    """Compare every ground-truth file in ``truth_dir`` with the same-stem file in ``picks_dir``
    (:func:`load_evaluation_input`, then :func:`score`)."""
    if not diameter > 0:
        raise CryoUNetError(f"--diameter must be positive, got {diameter}")
    return score(load_evaluation_input(picks_dir, truth_dir), diameter, threshold, allow_large_radius)
