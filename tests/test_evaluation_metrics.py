"""Picking metrics with the CryoPPP scoring convention (cryounet.evaluation.metrics)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from cryounet.evaluation.metrics import (MAX_THRESHOLDS, Scores, ThresholdCurve, average_precision, best_f1,
                                         count_matches, evaluate, match_picks, prefix_true_positives,
                                         threshold_curve)


def _a(*points) -> np.ndarray:
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def _reference_max_matching(pred: np.ndarray, true: np.ndarray, radius: float) -> int:
    """Maximum one-to-one matching by a different algorithm (assignment on the adjacency)."""
    if len(pred) == 0 or len(true) == 0:
        return 0
    d = np.linalg.norm(pred[:, None] - true[None], axis=-1)
    adjacent = d < radius
    rows, cols = linear_sum_assignment(-adjacent.astype(float))
    return int(adjacent[rows, cols].sum())


# --------------------------------------------------------------------------------- matching
def test_two_picks_near_one_truth_give_one_tp() -> None:
    assert count_matches(_a((10, 10), (11, 10)), _a((10.5, 10)), radius=5) == 1
    scores = evaluate([_a((10, 10), (11, 10))], [_a((10.5, 10))], radius=5)
    assert (scores.tp, scores.n_pred, scores.n_true) == (1, 2, 1)
    assert scores.precision == 0.5 and scores.recall == 1.0


def test_maximum_matching_beats_greedy() -> None:
    # P1 is nearest to T1, but only the pairing P1-T2, P2-T1 matches both.
    truth = _a((0, 0), (10, 0))
    picks = _a((4.5, 0), (-4, 0))
    assert count_matches(picks, truth, radius=6) == 2
    # (A greedy nearest-first matching would give 1: P1 takes T1 and P2 has nothing left.)


def test_exact_zero_distance_counts() -> None:
    assert count_matches(_a((5, 5), (20, 20)), _a((5, 5), (20, 20)), radius=3) == 2


def test_radius_is_strict() -> None:
    truth = _a((0, 0))
    assert count_matches(_a((3, 4)), truth, radius=5.0) == 0  # exactly 5 away
    assert count_matches(_a((3, 3.999)), truth, radius=5.0) == 1


def test_empty_inputs() -> None:
    assert count_matches(np.zeros((0, 2)), _a((1, 1)), 5) == 0
    assert count_matches(_a((1, 1)), np.zeros((0, 2)), 5) == 0
    s = evaluate([np.zeros((0, 2))], [np.zeros((0, 2))], 5)
    assert s.precision == s.recall == s.f1 == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_matching_is_maximum_on_random_clutter(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, true = rng.uniform(0, 40, (30, 2)), rng.uniform(0, 40, (25, 2))
    assert count_matches(pred, true, 6.0) == _reference_max_matching(pred, true, 6.0)


def test_scores_are_pooled_over_micrographs() -> None:
    preds = [_a((0, 0), (50, 50)), _a((100, 100), (200, 200))]
    truths = [_a((1, 0), (50, 51)), _a((0, 0))]
    s = evaluate(preds, truths, radius=5)
    assert (s.tp, s.n_pred, s.n_true) == (2, 4, 3)
    assert s.precision == pytest.approx(2 / 4) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 2 / (4 + 3))  # not the mean of per-micrograph F1 (0.5)
    with pytest.raises(ValueError):
        evaluate(preds, truths[:1], 5)


def test_scores_dict() -> None:
    d = Scores(tp=3, n_pred=4, n_true=6).as_dict()
    assert d["precision"] == 0.75 and d["recall"] == 0.5 and d["f1"] == pytest.approx(0.6)
    assert Scores(0, 0, 0).f1 == 0.0


# ------------------------------------------------------------------------------ thresholds
def test_best_f1_picks_the_right_threshold() -> None:
    truth = _a((0, 0), (100, 0), (200, 0))
    picks = _a((0, 1), (100, 1), (300, 300), (400, 400), (200, 1))
    scores = np.array([0.9, 0.8, 0.5, 0.4, 0.2])
    # F1 at 0.9: 2/4; 0.8: 4/5; 0.5: 4/6; 0.4: 4/7; 0.2: 6/8.
    threshold, result = best_f1([picks], [scores], [truth], radius=5)
    assert threshold == 0.8
    assert (result.tp, result.n_pred) == (2, 2) and result.f1 == pytest.approx(0.8)
    curve = threshold_curve([picks], [scores], [truth], radius=5)
    np.testing.assert_allclose(curve.thresholds, [0.2, 0.4, 0.5, 0.8, 0.9])
    np.testing.assert_allclose(curve.f1, [6 / 8, 4 / 7, 4 / 6, 4 / 5, 2 / 4])
    np.testing.assert_allclose(curve.precision, [3 / 5, 2 / 4, 2 / 3, 1, 1])
    np.testing.assert_allclose(curve.recall, [1, 2 / 3, 2 / 3, 2 / 3, 1 / 3])
    assert set(curve.as_dict()) == {"thresholds", "precision", "recall", "f1"}


def test_curve_rematches_at_each_threshold() -> None:
    # Both picks are within reach of the single truth; at threshold 0.9 the high-score pick alone
    # must be matched (a single matching with all picks could have given the truth to the other).
    truth = _a((0, 0))
    picks = _a((2, 0), (0, 1))
    curve = threshold_curve([picks], [np.array([0.9, 0.1])], [truth], radius=5)
    np.testing.assert_allclose(curve.precision, [0.5, 1.0])
    np.testing.assert_allclose(curve.recall, [1.0, 1.0])


def test_best_index_prefers_highest_threshold_among_ties() -> None:
    # Two truths; ranked hit (0.9), miss, miss, hit (0.6): F1 is 2/3 both at 0.9 (1 of 1 pick
    # right) and at 0.6 (2 of 4): the higher threshold wins the tie.
    truth = _a((0, 0), (100, 0))
    picks = _a((0, 1), (300, 0), (400, 0), (100, 1))
    curve = threshold_curve([picks], [np.array([0.9, 0.8, 0.7, 0.6])], [truth], 5)
    np.testing.assert_allclose(curve.f1, [2 / 3, 2 / 5, 2 / 4, 2 / 3])
    threshold, result = best_f1([picks], [np.array([0.9, 0.8, 0.7, 0.6])], [truth], 5)
    assert threshold == 0.9 and (result.tp, result.n_pred) == (1, 1)


def _curve(f1: list[float]) -> ThresholdCurve:
    thresholds = np.linspace(0.1, 0.9, len(f1))
    return ThresholdCurve(thresholds, np.zeros(len(f1)), np.zeros(len(f1)), np.array(f1))


def test_calibrated_index_takes_the_middle_of_the_near_best_plateau() -> None:
    # A jagged curve whose single best point (index 6) sits at the plateau's upper edge.
    curve = _curve([0.50, 0.70, 0.79, 0.80, 0.795, 0.785, 0.81, 0.60, 0.40])
    assert curve.best_index() == 6
    assert curve.calibrated_index(0.02) == 4  # F1 >= 0.79: indices 2, 3, 4, 6
    assert curve.calibrated_index(0.015) == 4  # F1 >= 0.795: indices 3, 4, 6
    assert curve.calibrated_index(0.0) == 6  # 0 = the best F1 itself
    assert curve.calibrated_index(0.005) == 6  # nothing else within 0.005
    assert curve.calibrated_index(0.25) == 4  # F1 >= 0.56: indices 1..7


def test_calibrated_index_of_an_empty_curve() -> None:
    assert _curve([]).calibrated_index(0.02) == -1


def test_best_f1_without_candidates() -> None:
    threshold, result = best_f1([np.zeros((0, 2))], [np.zeros(0)], [_a((1, 1))], 5)
    assert result.tp == 0 and result.n_true == 1 and result.f1 == 0.0
    assert 0 <= threshold <= 1


def test_many_scores_use_at_most_max_thresholds() -> None:
    rng = np.random.default_rng(0)
    picks = rng.uniform(0, 1000, (1000, 2))
    curve = threshold_curve([picks], [rng.random(1000)], [picks[:500]], 3)
    assert 2 <= len(curve.thresholds) <= MAX_THRESHOLDS
    assert np.all(np.diff(curve.thresholds) > 0)
    # Recall falls as the threshold rises.
    assert np.all(np.diff(curve.recall) <= 1e-12)


def test_best_f1_is_not_missed_under_a_long_tail_of_candidates() -> None:
    # Ten hits scored 0.9991-0.9999 above 5000 far-away candidates scored below 0.999: F1 is 1 at
    # the lowest hit's score. Quantiles of all 5010 scores (threshold_curve's grid) step from
    # 0.9999 straight to about 0.9975, past it; best_f1 looks at every score.
    rng = np.random.default_rng(1)
    truth = np.stack([np.arange(10) * 100.0, np.zeros(10)], axis=1)
    hits = truth + 1.0
    misses = rng.uniform(5000, 9000, (5000, 2))
    picks = np.concatenate([hits, misses])
    scores = np.concatenate([np.linspace(0.9991, 0.9999, 10), rng.uniform(0, 0.999, 5000)])
    threshold, result = best_f1([picks], [scores], [truth], radius=5)
    assert result.f1 == 1.0 and threshold == pytest.approx(0.9991)
    assert threshold_curve([picks], [scores], [truth], radius=5).f1.max() < 1.0


def test_best_f1_matches_the_exhaustive_search() -> None:
    # 1200 picks near 1000 truths (some near the same one) among 2000 misses; ties in the scores.
    rng = np.random.default_rng(2)
    truth = rng.uniform(0, 100000, (1000, 2))
    near = truth[rng.integers(0, 1000, 1200)] + rng.normal(0, 1, (1200, 2))
    picks = np.concatenate([near, rng.uniform(200000, 300000, (2000, 2))])
    scores = np.round(np.concatenate([rng.beta(5, 2, 1200), rng.beta(2, 5, 2000)]), 3)
    threshold, result = best_f1([picks[:1700], picks[1700:]], [scores[:1700], scores[1700:]],
                                [truth[:600], truth[600:]], radius=5)
    exhaustive = [evaluate([picks[:1700][scores[:1700] >= t], picks[1700:][scores[1700:] >= t]],
                           [truth[:600], truth[600:]], 5).f1 for t in np.unique(scores)]
    assert result.f1 == pytest.approx(max(exhaustive))
    assert threshold == max(t for t, f in zip(np.unique(scores), exhaustive) if f >= max(exhaustive) - 1e-12)


def test_prefix_true_positives_equal_a_fresh_matching_of_each_prefix() -> None:
    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 100, (60, 2))
    picks = np.concatenate([truth + rng.normal(0, 3, (60, 2)), rng.uniform(0, 100, (60, 2))])
    picks = picks[rng.permutation(len(picks))]
    found = prefix_true_positives(picks, truth, 6)
    assert list(found) == [count_matches(picks[:k], truth, 6) for k in range(1, len(picks) + 1)]


def test_prefix_true_positives_reassign_an_earlier_pick() -> None:
    # The first pick reaches both centres and takes A; the second reaches only A: a maximum
    # matching gives the first pick B instead (greedy matching in score order would stop at 1).
    truth = _a((0, 0), (8, 0))
    assert list(prefix_true_positives(_a((4, 0), (-1, 0)), truth, 5)) == [1, 2]
    assert list(prefix_true_positives(np.zeros((0, 2)), truth, 5)) == []
    assert list(prefix_true_positives(_a((4, 0)), np.zeros((0, 2)), 5)) == [0]


def test_best_f1_when_no_pick_is_near_a_truth() -> None:
    threshold, result = best_f1([_a((50, 50), (60, 60))], [np.array([0.3, 0.7])], [_a((0, 0))], 5)
    assert result.f1 == 0.0 and threshold == 0.7


# -------------------------------------------------------------------------------------- AP
def test_ap_is_one_for_perfectly_ranked_hits() -> None:
    truths = [_a((0, 0), (50, 50)), _a((10, 10))]
    preds = [_a((0, 1), (50, 49), (80, 80)), _a((10, 11))]
    scores = [np.array([0.9, 0.8, 0.1]), np.array([0.7])]  # the miss is ranked last
    assert average_precision(preds, scores, truths, 5) == pytest.approx(1.0)


def test_ap_hand_computed_mixed_case() -> None:
    # Ranked: hit (0.9), miss (0.8), hit (0.7); 3 truths, one never found.
    # precision 1, 1/2, 2/3; recall 1/3, 1/3, 2/3 -> interpolated precision 1, 2/3, 2/3
    # AP = 1 * 1/3 + 2/3 * 1/3 = 5/9.
    truth = _a((0, 0), (100, 0), (200, 0))
    preds = _a((0, 1), (500, 500), (100, 1))
    ap = average_precision([preds], [np.array([0.9, 0.8, 0.7])], [truth], radius=5)
    assert ap == pytest.approx(5 / 9)


def test_ap_matches_greedily_in_score_order() -> None:
    # The crafted case of the maximum-matching test: ranked greedily, the best pick takes its
    # nearest truth (T1) and the second pick finds nothing: AP = 1 * 1/2 = 0.5.
    truth = _a((0, 0), (10, 0))
    preds = _a((4.5, 0), (-4, 0))
    assert average_precision([preds], [np.array([0.9, 0.8])], [truth], 6) == pytest.approx(0.5)


def test_ap_duplicate_pick_is_a_false_positive_and_edge_cases() -> None:
    truth = _a((0, 0))
    ap = average_precision([_a((0, 0), (0, 1))], [np.array([0.9, 0.8])], [truth], 5)
    assert ap == pytest.approx(1.0)  # the duplicate ranks after the hit
    ap = average_precision([_a((0, 1), (0, 0))], [np.array([0.2, 0.8])], [truth], 5)
    assert ap == pytest.approx(1.0)  # ranking is by score, not by list order
    assert average_precision([_a((0, 0))], [np.array([1.0])], [np.zeros((0, 2))], 5) == 0.0
    assert average_precision([np.zeros((0, 2))], [np.zeros(0)], [truth], 5) == 0.0
    # Radius is strict in AP too.
    assert average_precision([_a((3, 4))], [np.array([1.0])], [truth], 5.0) == 0.0


def test_match_picks_marks_the_pairs_of_a_maximum_matching() -> None:
    # Pick 0 lies near both centres, pick 1 only near centre 0: the maximum matching pairs both.
    pred = np.array([[7.0, 0.0], [0.0, 0.0], [500.0, 500.0]])
    truth = np.array([[2.0, 0.0], [12.0, 0.0], [900.0, 900.0]])
    hit_pred, hit_truth = match_picks(pred, truth, radius=6.0)
    np.testing.assert_array_equal(hit_pred, [True, True, False])
    np.testing.assert_array_equal(hit_truth, [True, True, False])
    assert hit_pred.sum() == count_matches(pred, truth, 6.0)
    empty_pred, empty_truth = match_picks(np.zeros((0, 2)), truth, 6.0)
    assert empty_pred.shape == (0,) and not empty_truth.any()


def test_scores_that_are_not_finite_cannot_be_ranked() -> None:
    pred, truth = [np.array([[0.0, 0.0], [50.0, 50.0]])], [np.array([[0.0, 0.0]])]
    for bad in (np.nan, np.inf):
        scores = [np.array([0.9, bad])]
        with pytest.raises(ValueError, match="1 scores are not finite"):
            best_f1(pred, scores, truth, 5.0)
        with pytest.raises(ValueError, match="1 scores are not finite"):
            average_precision(pred, scores, truth, 5.0)
