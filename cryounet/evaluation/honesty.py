"""What makes an evaluation's figures trustworthy, said with them: the matching radius against the
ground truth's own spacing, and whether the picks were already cut at a threshold before AP.

A matching radius wider than half the distance between neighbouring truth centres lets a pick
between two particles match either, and one wider than that distance lets a pick match a centre
one particle away: the scores rise although the picks are no better (``--diameter 300`` on 56 px
ribosomes scored F1 0.96 instead of 0.86). AP ranks the picks it is given: over picks already cut
at a threshold it integrates a truncated curve, and is not comparable with AP over all candidates.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree

from cryounet.config import PickConfig
from cryounet.errors import CryoUNetError

#: Warn when the matching radius exceeds this fraction of the truth's median neighbour distance.
RADIUS_WARN_FRACTION = 0.5
#: Refuse (unless allowed) when it exceeds this fraction: a pick could match the next particle.
RADIUS_REFUSE_FRACTION = 1.0
#: Lowest score CryoUNet reports as a candidate when picking without a threshold.
CANDIDATE_FLOOR = PickConfig.min_score
#: Picks whose lowest score is above this multiple of the candidate floor were cut at a threshold.
CUT_FACTOR = 2.0
#: The label every report gives the best F1.
BEST_F1_NOTE = ("tuned on this truth (the threshold that suits these labels best): an upper bound, "
                "not a result to quote")


def median_spacing(truths: Sequence[np.ndarray]) -> float | None:
    """Median distance from each truth centre to its nearest neighbour on the same micrograph
    (None when no micrograph holds two centres)."""
    distances = []
    for truth in truths:
        xy = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
        if len(xy) >= 2:
            d, _ = cKDTree(xy).query(xy, k=2)
            distances.append(d[:, 1])
    return float(np.median(np.concatenate(distances))) if distances else None


def check_radius(radius: float, diameter: float, spacing: float | None, allow: bool = False) -> str | None:
    """A warning when ``radius`` is wide against the truth's ``spacing`` (None when it is not).

    Raises:
        CryoUNetError: the radius exceeds the spacing itself and ``allow`` is False.
    """
    if spacing is None or radius <= RADIUS_WARN_FRACTION * spacing:
        return None
    wider = radius > RADIUS_REFUSE_FRACTION * spacing
    what = (f"the matching radius {radius:.1f} px (0.5 x --diameter {diameter:g}) is more than "
            f"{'the' if wider else 'half the'} median distance between neighbouring truth centres ({spacing:.1f} px)")
    if wider and allow:
        return f"{what}: a pick can match a centre one particle away, so the scores are inflated (--allow-large-radius)"
    if wider:
        raise CryoUNetError(
            f"{what}: a pick could match a centre one particle away and every score would be inflated. "
            f"--diameter must be the particle diameter in pixels of these micrographs (not in Å); "
            f"touching particles of this truth are at most about {spacing:.0f} px across. Give the "
            f"right diameter, or pass --allow-large-radius to score anyway")
    return (f"{what}: a pick between two particles can match either, so the scores may be inflated; "
            f"check that --diameter is the particle diameter in pixels of these micrographs")


def cut_level(scores: Sequence[np.ndarray], threshold: float | None,
              recorded: float | None = None) -> float | None:
    """The score at which the evaluated picks were already cut (AP over them is truncated), or
    None when they reach down to CryoUNet's candidate floor.

    ``threshold`` is evaluate's own ``--threshold``; ``recorded`` the threshold the pick folder
    says it was picked at; otherwise the lowest score among the picks tells."""
    floor = CUT_FACTOR * CANDIDATE_FLOOR
    for level in (threshold, recorded):
        if level is not None and level > floor:
            return float(level)
    pooled = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scores]) if scores else np.zeros(0)
    if pooled.size and pooled.min() > floor:
        return float(pooled.min())
    return None


def ap_note(cut: float | None, ranked: bool) -> str | None:
    """Why AP must not be compared with another's (None when it can be); ``ranked`` is False when
    the picks carry no scores, or all the same one."""
    if not ranked:
        return "the picks carry no scores (or all the same one): AP and best F1 are those of a single threshold"
    if cut is None:
        return None
    return (f"over picks already cut at score {cut:.3g} (CryoUNet's candidates reach down to "
            f"{CANDIDATE_FLOOR:g}): the curve is truncated there, so this AP is not comparable with AP over "
            f"all candidates; for a comparable AP pick with --threshold {CANDIDATE_FLOOR:g} and evaluate "
            f"without --threshold")


def check_finite_scores(scores: np.ndarray, source: object) -> None:
    """Refuse picks whose scores are NaN or infinite (they would rank anywhere).

    Raises:
        CryoUNetError: naming ``source`` and how many scores are not finite.
    """
    bad = int((~np.isfinite(np.asarray(scores, dtype=np.float64))).sum())
    if bad:
        raise CryoUNetError(f"{source}: {bad} of {len(scores)} picks have a score that is not a finite "
                            f"number (NaN or infinite); such picks cannot be ranked: fix or remove them")
