"""Picking metrics with the CryoPPP scoring convention.

Per micrograph, picks are matched one-to-one to ground-truth centres so that the number of pairs
closer than ``radius`` (0.5 x diameter) is maximal (maximum bipartite matching); those pairs are
true positives. Precision, recall and F1 are pooled over micrographs. The best F1 re-matches at each
score threshold; AP ranks all picks by score and matches greedily in that order (VOC style).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import cKDTree

#: Matching radius as a fraction of the particle diameter (CryoPPP convention).
MATCH_RADIUS = 0.5
#: Most distinct thresholds of a :func:`threshold_curve` (quantiles of the scores beyond that).
MAX_THRESHOLDS = 400


@dataclass
class Scores:
    """Pooled detection counts and rates."""

    tp: int
    n_pred: int
    n_true: int

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_true if self.n_true else 0.0

    @property
    def f1(self) -> float:
        denom = self.n_pred + self.n_true
        return 2 * self.tp / denom if denom else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "tp": self.tp, "n_pred": self.n_pred, "n_true": self.n_true}


def count_matches(pred: np.ndarray, true: np.ndarray, radius: float) -> int:
    """Size of the maximum one-to-one matching of ``pred`` to ``true`` within ``radius``."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    true = np.asarray(true, dtype=np.float64).reshape(-1, 2)
    rows, cols = _close_pairs(pred, true, radius)
    if len(rows) == 0:
        return 0
    # Distances of exactly 0 would vanish from a sparse matrix: mark adjacency with ones.
    graph = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(pred), len(true)))
    matching = maximum_bipartite_matching(graph, perm_type="column")
    return int((matching >= 0).sum())


def _close_pairs(pred: np.ndarray, truth: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(pick, centre)`` of every pair closer than ``radius`` (``(N, 2)`` float arrays)."""
    if len(pred) == 0 or len(truth) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pairs = cKDTree(pred).sparse_distance_matrix(cKDTree(truth), radius, output_type="coo_matrix")
    keep = pairs.data < radius
    return pairs.row[keep], pairs.col[keep]


def evaluate(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray], radius: float) -> Scores:
    """Pooled :class:`Scores` over micrographs (lists of ``(N, 2)`` arrays, same order)."""
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} pick lists for {len(truths)} ground-truth lists")
    tp = sum(count_matches(p, t, radius) for p, t in zip(preds, truths))
    return Scores(tp, sum(len(p) for p in preds), sum(len(t) for t in truths))


@dataclass
class ThresholdCurve:
    """Precision/recall/F1 as a function of the score threshold (picks with score >= threshold)."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    def best_index(self) -> int:
        """Index of the best F1 (the highest threshold among ties); -1 for an empty curve."""
        if len(self.f1) == 0:
            return -1
        return int(np.flatnonzero(self.f1 >= self.f1.max() - 1e-12)[-1])

    def calibrated_index(self, tolerance: float) -> int:
        """Index of the threshold to pick at: the middle one of all thresholds whose F1 is within
        ``tolerance`` of the best (the best index itself when ``tolerance`` is 0); -1 for an
        empty curve.

        On a few validation micrographs the F1 curve is jagged, and its single highest point
        often sits at the edge of the plateau of near-best thresholds; the middle of that plateau
        carries over to new micrographs better (``bench/calibration.py``).
        """
        if len(self.f1) == 0:
            return -1
        if tolerance <= 0:
            return self.best_index()
        near = np.flatnonzero(self.f1 >= self.f1.max() - tolerance)
        return int(near[len(near) // 2])

    def as_dict(self) -> dict[str, list[float]]:
        return {k: [float(v) for v in getattr(self, k)]
                for k in ("thresholds", "precision", "recall", "f1")}


def threshold_curve(preds: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                    truths: Sequence[np.ndarray], radius: float) -> ThresholdCurve:
    """Precision, recall and F1 at each candidate threshold (all distinct scores, or quantiles if
    many), each as a fresh maximum matching of the picks at or above it would give
    (:func:`ranked_true_positives`)."""
    ranked, found, n_true = ranked_true_positives(preds, scores, truths, radius)
    candidates = np.unique(ranked)
    if len(candidates) > MAX_THRESHOLDS:
        candidates = np.unique(np.quantile(ranked, np.linspace(0, 1, MAX_THRESHOLDS)))
    # Picks at or above each threshold: a prefix of the ranking, and its true positives.
    n_pred = np.searchsorted(-ranked, -candidates, side="right")
    tp = np.concatenate([[0], found])[n_pred]
    with np.errstate(divide="ignore", invalid="ignore"):  # (the 0 / 0 cases are set to 0)
        precision = np.where(n_pred > 0, tp / n_pred, 0.0)
        recall = tp / n_true if n_true else np.zeros(len(candidates))
        f1 = np.where(n_pred + n_true > 0, 2 * tp / (n_pred + n_true), 0.0)
    return ThresholdCurve(candidates, precision, recall, f1)


def prefix_true_positives(pred: np.ndarray, truth: np.ndarray, radius: float) -> np.ndarray:
    """True positives of the first k picks of ``pred``, for k = 1 .. len(pred): the size of a
    maximum one-to-one matching of each prefix (as :func:`count_matches`), in one pass.

    Picks are added one at a time and each looks for an augmenting path (Kuhn's algorithm); a
    pick that finds none cannot find one later either, so after every pick the matching is
    maximum for the picks so far."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    near: list[list[int]] = [[] for _ in range(len(pred))]
    for i, j in zip(*_close_pairs(pred, truth, radius)):
        near[int(i)].append(int(j))
    owner = np.full(len(truth), -1, dtype=np.int64)  # the pick each centre is matched to
    found = np.zeros(len(pred), dtype=np.int64)
    total = 0
    for start in range(len(pred)):
        if near[start] and _augment(start, near, owner):
            total += 1
        found[start] = total
    return found


def _augment(start: int, near: list[list[int]], owner: np.ndarray) -> bool:
    """Extend the matching ``owner`` by an augmenting path from pick ``start`` (iterative
    depth-first search); True when one was found and applied."""
    visited: set[int] = set()
    picks, options, via = [start], [iter(near[start])], []  # via[i]: centre from picks[i] to picks[i + 1]
    while picks:
        for centre in options[-1]:
            if centre in visited:
                continue
            visited.add(centre)
            if owner[centre] < 0:
                owner[centre] = picks[-1]
                for i, step in enumerate(via):
                    owner[step] = picks[i]
                return True
            via.append(centre)
            picks.append(int(owner[centre]))
            options.append(iter(near[picks[-1]]))
            break
        else:
            picks.pop()
            options.pop()
            if via:
                via.pop()
    return False


def _finite(score: np.ndarray) -> np.ndarray:
    """``score`` as a flat float array; NaN or infinite scores cannot be ranked (ValueError)."""
    score = np.asarray(score, dtype=np.float64).ravel()
    if not np.isfinite(score).all():
        raise ValueError(f"{int((~np.isfinite(score)).sum())} scores are not finite numbers")
    return score


def match_picks(pred: np.ndarray, truth: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Which picks and which truth centres a maximum one-to-one matching within ``radius`` pairs
    (as :func:`count_matches` counts them): boolean arrays over ``pred`` and ``truth``."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    hit_pred, hit_truth = np.zeros(len(pred), dtype=bool), np.zeros(len(truth), dtype=bool)
    rows, cols = _close_pairs(pred, truth, radius)
    if len(rows):
        graph = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(pred), len(truth)))
        owner = maximum_bipartite_matching(graph, perm_type="column")  # per pick: its centre or -1
        hit_pred = owner >= 0
        hit_truth[owner[hit_pred]] = True
    return hit_pred, hit_truth


def ranked_true_positives(preds: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                          truths: Sequence[np.ndarray], radius: float
                          ) -> tuple[np.ndarray, np.ndarray, int]:
    """Every pick's score in falling order, the pooled true positives of each prefix of that
    ranking, and the number of ground-truth centres.

    Each micrograph's picks are taken in score order (:func:`prefix_true_positives`), so the
    true positives after the last pick of any score are those of a fresh maximum matching of
    the picks at or above that score, micrograph by micrograph (what :func:`evaluate` counts)."""
    if len(preds) != len(truths) or len(scores) != len(truths):
        raise ValueError(f"{len(preds)} pick lists and {len(scores)} score lists for "
                         f"{len(truths)} ground-truth lists")
    gains, ranked = [], []
    for pred, score, truth in zip(preds, scores, truths):
        score = _finite(score)
        order = np.argsort(-score, kind="stable")
        pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)[order]
        gains.append(np.diff(prefix_true_positives(pred, truth, radius), prepend=0))
        ranked.append(score[order])
    n_true = sum(len(np.asarray(t).reshape(-1, 2)) for t in truths)
    if not ranked:
        return np.zeros(0), np.zeros(0, dtype=np.int64), n_true
    scores_all = np.concatenate(ranked)
    order = np.argsort(-scores_all, kind="stable")
    return scores_all[order], np.cumsum(np.concatenate(gains)[order]), n_true


def best_f1(preds, scores, truths, radius: float) -> tuple[float, Scores]:
    """Threshold with the best pooled F1 over every threshold (the highest among ties), and the
    scores there: exact, at each distinct score (:func:`ranked_true_positives`)."""
    ranked, found, n_true = ranked_true_positives(preds, scores, truths, radius)
    if len(ranked) == 0:
        return 0.5, Scores(0, 0, n_true)
    # A threshold lets in every pick of its score: F1 at the last pick of each distinct score.
    last = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    f1 = 2 * found[last] / (last + 1 + n_true)
    best = last[int(np.argmax(f1 >= f1.max() - 1e-12))]
    return float(ranked[best]), Scores(int(found[best]), int(best + 1), n_true)


def average_precision(preds: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                      truths: Sequence[np.ndarray], radius: float) -> float:
    """VOC-style AP: picks ranked by score, each matched greedily to the nearest free truth."""
    n_true = sum(len(t) for t in truths)
    if n_true == 0:
        return 0.0
    records = []  # (score, micrograph index, pick index)
    for m, s in enumerate(scores):
        records += [(float(v), m, i) for i, v in enumerate(_finite(s))]
    if not records:
        return 0.0
    records.sort(key=lambda r: -r[0])
    trees = [cKDTree(np.asarray(t).reshape(-1, 2)) if len(t) else None for t in truths]
    used = [np.zeros(len(t), dtype=bool) for t in truths]
    hits = np.zeros(len(records))
    for k, (_, m, i) in enumerate(records):
        tree = trees[m]
        if tree is None:
            continue
        candidates = tree.query_ball_point(preds[m][i], radius)
        free = [c for c in candidates if not used[m][c]]
        if free:
            dists = np.linalg.norm(np.asarray(truths[m])[free] - preds[m][i], axis=1)
            best = free[int(np.argmin(dists))]
            if dists.min() < radius:
                used[m][best] = True
                hits[k] = 1
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(records) + 1)
    recall = tp / n_true
    # All-points interpolation: precision made monotone from the right, integrated over recall.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return float((precision * recall_steps).sum())
