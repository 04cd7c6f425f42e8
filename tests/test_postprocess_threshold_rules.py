"""Label-free thresholds from the candidates' scores (cryounet.postprocess.threshold_rules)."""
from __future__ import annotations

import numpy as np
import pytest

from cryounet.errors import CryoUNetError
from cryounet.postprocess.threshold_rules import (MIN_CANDIDATES, logit, otsu_split, otsu_threshold,
                                                  parse_threshold)


def _two_populations(rng: np.random.Generator, particles: float, background: float, n_bg: int = 3000,
                     n_fg: int = 400) -> list[np.ndarray]:
    """Candidate scores whose logits are two bell curves, split over three micrographs."""
    z = np.concatenate([rng.normal(background, 0.6, n_bg), rng.normal(particles, 0.6, n_fg)])
    scores = 1 / (1 + np.exp(-z))
    return np.array_split(rng.permutation(scores), 3)


@pytest.mark.parametrize("particles, background", [(-1.0, -4.5), (1.5, -2.5), (-2.5, -5.5)])
def test_otsu_threshold_separates_two_populations_wherever_they_lie(particles: float, background: float) -> None:
    threshold = otsu_threshold(_two_populations(np.random.default_rng(0), particles, background))
    cut = float(logit(np.array([threshold]))[0])
    assert background + 1.0 < cut < particles - 1.0  # between the modes, clear of both


def test_otsu_split_of_two_clusters() -> None:
    values = np.concatenate([np.full(100, 1.0), np.full(50, 5.0)])
    assert 1.0 <= otsu_split(values) < 5.0


@pytest.mark.parametrize("scores, words", [
    ([np.full(MIN_CANDIDATES - 1, 0.3)], f"at least {MIN_CANDIDATES} candidates"),
    ([], f"at least {MIN_CANDIDATES} candidates"),
    ([np.linspace(-1, 3, 200)], "scores between 0 and 1"),
    ([np.full(200, 0.4)], "all have the same score"),
])
def test_otsu_threshold_refuses_scores_it_cannot_read(scores: list, words: str) -> None:
    with pytest.raises(CryoUNetError, match=words):
        otsu_threshold(scores)


def test_parse_threshold() -> None:
    assert parse_threshold("0.25") == 0.25
    assert parse_threshold(" OTSU ") == "otsu"
    for bad in ("auto-ish", "nan", "inf"):
        with pytest.raises(CryoUNetError, match="--threshold must be"):
            parse_threshold(bad)


def test_score_valley_of_probabilities_and_other_scores() -> None:
    from cryounet.postprocess.threshold_rules import score_valley

    rng = np.random.default_rng(2)
    probabilities = np.concatenate(_two_populations(rng, 1.0, -3.5))
    assert score_valley(probabilities) == pytest.approx(otsu_threshold([probabilities]))
    log_ratios = np.concatenate([rng.normal(-4, 0.5, 300), rng.normal(2, 0.5, 80)])  # Topaz-like
    assert -2.5 < score_valley(log_ratios) < 0.5
    assert score_valley([0.5, 0.5]) is None and score_valley([1.0]) is None and score_valley([]) is None
    assert score_valley([0.1, np.nan, 0.9]) is not None
