"""Picking thresholds without labels, from the scores of the candidates themselves.

A model that never saw a protein (the general model, zero-shot) ranks its particles well but its
calibrated threshold does not carry over: on the four leave-one-protein-out folds of issue 34 the
best thresholds lay between 0.02 and 0.47. Picked down to a low floor, the candidates form two
populations: many background peaks with low scores and the particles with higher ones. On the
logit scale both are roughly bell-shaped, and Otsu's split (the cut that maximises the variance
between the two classes) separates them; it uses nothing but the micrographs being picked.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from cryounet.errors import CryoUNetError

logger = logging.getLogger(__name__)

#: Names ``--threshold`` accepts besides a number.
LABEL_FREE_RULES = ("otsu",)
#: Fewer candidates than this give no usable score distribution.
MIN_CANDIDATES = 50
#: Candidates cut at a threshold above this no longer hold the background peaks the rule needs.
MAX_CANDIDATE_FLOOR = 0.05
_BINS = 256
_EPS = 1e-6


def logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(clipped / (1.0 - clipped))


def otsu_split(values: np.ndarray, bins: int = _BINS, value_range: tuple[float, float] | None = None) -> float:
    """Otsu's threshold of ``values``: the bin edge that maximises the between-class variance of
    their histogram over ``value_range`` (default: their minimum to maximum)."""
    low, high = value_range or (float(values.min()), float(values.max()))
    if not high > low:
        raise CryoUNetError("the candidates all have the same score; a threshold cannot be read from them")
    hist, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)[:-1].astype(np.float64)
    total = float(hist.sum())
    mean = np.cumsum(hist * centres)[:-1]
    grand = float((hist * centres).sum())
    between = (grand * weight / total - mean) ** 2 / np.maximum(weight * (total - weight), 1.0)
    return float(edges[1:-1][int(np.argmax(between))])


def otsu_threshold(scores: Sequence[np.ndarray]) -> float:
    """The label-free threshold of candidates pooled over micrographs (scores in [0, 1]).

    Raises:
        CryoUNetError: fewer than :data:`MIN_CANDIDATES` candidates, or scores outside [0, 1]
            (picks that are not CryoUNet probabilities) or all equal.
    """
    pooled = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scores]) if scores else np.zeros(0)
    if len(pooled) < MIN_CANDIDATES:
        raise CryoUNetError(f"a threshold from the scores needs at least {MIN_CANDIDATES} candidates, these picks "
                            f"have {len(pooled)}: pick more micrographs, or down to a lower --threshold")
    if pooled.min() < 0.0 or pooled.max() > 1.0:
        raise CryoUNetError("a threshold from the scores needs scores between 0 and 1 (CryoUNet's); these picks "
                            f"range from {pooled.min():g} to {pooled.max():g}: give a number")
    threshold = float(1.0 / (1.0 + np.exp(-otsu_split(logit(pooled)))))
    logger.info("threshold from the scores of %d candidates (Otsu on the logit scale): %.4f", len(pooled), threshold)
    return threshold


def parse_threshold(text: str, option: str | None = "--threshold") -> float | str:
    """A ``--threshold`` value: a number, or the name of a label-free rule. Errors begin with
    ``option`` (None: with nothing, where argparse names the option itself)."""
    if text.strip().lower() in LABEL_FREE_RULES:
        return text.strip().lower()
    subject = f"{option} must" if option else "must"
    try:
        value = float(text)
    except ValueError:
        raise CryoUNetError(f"{subject} be a number or one of {', '.join(LABEL_FREE_RULES)}, got {text!r}") from None
    if not np.isfinite(value):
        raise CryoUNetError(f"{subject} be finite, got {text!r}")
    return value


def score_valley(scores: Sequence[float] | np.ndarray) -> float | None:
    """The valley of any pick scores, for a suggestion: Otsu on the logit scale for probabilities
    (CryoUNet's, with at least :data:`MIN_CANDIDATES`), on the scores themselves otherwise (e.g.
    Topaz's log-likelihood ratios); None when they cannot be split (too few or all equal)."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size < 2 or values.min() == values.max():
        return None
    if values.size >= MIN_CANDIDATES and values.min() >= 0.0 and values.max() <= 1.0:
        return float(1.0 / (1.0 + np.exp(-otsu_split(logit(values)))))
    return otsu_split(values)
