"""From probability maps to candidate picks: map clean-up, peak finding, sub-pixel refinement,
non-maximum suppression (optionally saddle-aware, to separate touching particles) and the edge
exclusion every pick uses."""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cryounet.config import PickConfig


def disk_footprint(radius: float) -> np.ndarray:
    """Boolean disk of the given radius (at least the 3 x 3 neighbourhood)."""
    r = max(1, int(np.floor(radius)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx**2 + yy**2) <= max(radius, 1.0) ** 2 + 1e-9


def _greedy_suppression(xy: np.ndarray, order: np.ndarray, radius: float,
                        belongs: Callable[[int, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The greedy skeleton of every NMS here: walk ``order`` (best first), keep each peak not yet
    suppressed and suppress the not yet suppressed peaks within ``radius`` of it, or only those
    that ``belongs(kept, near)`` marks (a boolean mask over ``near``)."""
    tree = cKDTree(xy)
    suppressed = np.zeros(len(xy), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        near = np.asarray(tree.query_ball_point(xy[i], radius - 1e-9), dtype=np.int64)
        near = near[~suppressed[near]]
        if belongs is not None and len(near):
            near = near[belongs(i, near)]
        suppressed[near] = True
    return np.asarray(keep, dtype=np.int64)


def nms(xy: np.ndarray, scores: np.ndarray, distance: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first, none closer than
    ``distance`` to a better one."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    order = np.argsort(-np.asarray(scores), kind="stable")
    if distance <= 0 or len(order) < 2:
        return order
    return _greedy_suppression(xy, order, distance)


def saddle_nms(xy: np.ndarray, scores: np.ndarray, prob: np.ndarray, distance: float,
               saddle_distance: float, ratio: float) -> np.ndarray:
    """Greedy NMS that separates touching particles: indices kept, best score first.

    A peak closer than ``distance`` to a better kept one is dropped, as in :func:`nms`. One closer
    than ``saddle_distance`` (but not than ``distance``) is dropped only when the map does not dip
    between the two: its lowest value on the segment joining them (:func:`valleys`) is at least
    ``ratio`` times the lower of their ``scores`` (peak values). Two maxima on one ridge or plateau
    are one particle; two maxima with a saddle between them are two touching particles.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64)
    if ratio <= 0 or saddle_distance <= distance:
        return nms(xy, scores, distance)
    order = np.argsort(-scores, kind="stable")
    if len(order) < 2:
        return order
    prob = np.asarray(prob, dtype=np.float32)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))

    def belongs(kept: int, near: np.ndarray) -> np.ndarray:
        mask = rank[near] > rank[kept]  # only lower peaks are tested against the kept one
        if mask.any():
            lower = near[mask]
            mask[mask] = _same_particle(prob, xy[kept], xy[lower], scores[lower], distance, ratio)
        return mask

    return _greedy_suppression(xy, order, saddle_distance, belongs)


def _same_particle(prob: np.ndarray, kept: np.ndarray, others: np.ndarray, heights: np.ndarray,
                   distance: float, ratio: float) -> np.ndarray:
    """Which of ``others`` (lower peaks of values ``heights``) belong to the particle of the kept
    peak at ``kept``: closer than ``distance``, or no valley below ``ratio * heights`` between."""
    gaps = np.hypot(*(others - kept).T)
    samples = max(3, int(np.ceil(2 * gaps.max())) + 1)  # about two per pixel
    low = valleys(prob, np.broadcast_to(kept, others.shape), others, samples)
    return (gaps <= distance - 1e-9) | (low >= ratio * heights)


def valleys(prob: np.ndarray, a: np.ndarray, b: np.ndarray, samples: int) -> np.ndarray:
    """Lowest map value on each segment from ``a[k]`` to ``b[k]`` (``(K, 2)`` x/y px), from
    ``samples`` evenly spaced bilinear samples, the end points included."""
    t = np.linspace(0.0, 1.0, samples)[None, :]
    x = a[:, :1] + t * (b[:, :1] - a[:, :1])
    y = a[:, 1:] + t * (b[:, 1:] - a[:, 1:])
    values = ndimage.map_coordinates(prob, [y.ravel(), x.ravel()], order=1, mode="nearest")
    return values.reshape(x.shape).min(axis=1)


def local_maxima(prob: np.ndarray, radius: float, min_value: float) -> tuple[np.ndarray, np.ndarray]:
    """``(ys, xs)`` of the pixels that are the maximum of the disk of ``radius`` px around them
    (:func:`disk_footprint`) and at least ``min_value``."""
    local_max = ndimage.maximum_filter(prob, footprint=disk_footprint(radius), mode="nearest")
    return np.nonzero((prob >= local_max) & (prob >= min_value))


def find_peaks(prob: np.ndarray, nms_distance: float, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of a probability map, at least ``nms_distance`` apart.

    Peaks are refined to sub-pixel positions by a parabola fit along each axis.

    Returns:
        ``(xy, scores)``: ``(N, 2)`` x/y in the map's pixels and the map value at each peak, best
        first.
    """
    return find_separated_peaks(prob, nms_distance, min_score)


def find_separated_peaks(prob: np.ndarray, nms_distance: float, min_score: float,
                         saddle_distance: float = 0.0, saddle_ratio: float = 0.0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`find_peaks`, with the saddle test of :func:`saddle_nms` for peaks closer than
    ``saddle_distance`` (``saddle_ratio`` 0, or ``saddle_distance`` <= ``nms_distance``: plain NMS,
    exactly :func:`find_peaks`)."""
    prob = np.asarray(prob, dtype=np.float32)
    ys, xs = local_maxima(prob, nms_distance / 2, min_score)
    if len(ys) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    scores = prob[ys, xs].astype(np.float64)
    xy = _refine(prob, ys, xs)
    keep = saddle_nms(xy, scores, prob, nms_distance, saddle_distance, saddle_ratio)
    return xy[keep], scores[keep]


def _refine(prob: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sub-pixel peak positions: a parabola through each peak and its two neighbours, per axis
    (offset clipped to half a pixel; none on the border or on a flat top)."""
    ny, nx = prob.shape

    def offset(left: np.ndarray, centre: np.ndarray, right: np.ndarray) -> np.ndarray:
        curvature = left - 2 * centre + right
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
        return np.clip(np.nan_to_num(delta), -0.5, 0.5)

    inner_x = (xs > 0) & (xs < nx - 1)
    inner_y = (ys > 0) & (ys < ny - 1)
    xm, xp = np.clip(xs - 1, 0, nx - 1), np.clip(xs + 1, 0, nx - 1)
    ym, yp = np.clip(ys - 1, 0, ny - 1), np.clip(ys + 1, 0, ny - 1)
    centre = prob[ys, xs].astype(np.float64)
    dx = np.where(inner_x, offset(prob[ys, xm], centre, prob[ys, xp]), 0.0)
    dy = np.where(inner_y, offset(prob[ym, xs], centre, prob[yp, xs]), 0.0)
    return np.stack([xs + dx, ys + dy], axis=1).astype(np.float64)


def clean_probability(prob: np.ndarray, diameter: float, opening_radius: float = 0.0,
                      min_area: float = 0.0, max_area: float = 0.0, level: float = 0.5) -> np.ndarray:
    """Map-level post-processing before peak finding (all sizes relative to ``diameter`` px).

    Args:
        prob: ``(ny, nx)`` probability map.
        diameter: particle diameter in the map's pixels.
        opening_radius: grey opening with a disk of ``opening_radius * diameter`` (0: none).
        min_area / max_area: connected regions above ``level`` smaller / larger than this many
            particle disk areas are set to 0 (0: no bound).
        level: probability defining the regions.
    """
    out = np.asarray(prob, dtype=np.float32)
    if opening_radius > 0:
        out = ndimage.grey_opening(out, footprint=disk_footprint(opening_radius * diameter))
    if min_area > 0 or max_area > 0:
        labels, n = ndimage.label(out >= level)
        if n:
            disk_area = np.pi * (diameter / 2) ** 2
            areas = np.bincount(labels.ravel())[1:] / disk_area
            bad = np.zeros(n + 1, dtype=bool)
            if min_area > 0:
                bad[1:] |= areas < min_area
            if max_area > 0:
                bad[1:] |= areas > max_area
            out = np.where(bad[labels], 0.0, out).astype(np.float32)
    return out


def candidate_peaks(prob: np.ndarray, diameter: float, pick: PickConfig, min_score: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of a working-scale map after map clean-up, NMS and edge exclusion.

    Args:
        prob: probability map.
        diameter: particle diameter in the map's pixels.
        pick: post-processing settings.
        min_score: lowest peak value kept.
    """
    if pick.opening_radius > 0 or pick.min_component_area > 0 or pick.max_component_area > 0:
        prob = clean_probability(prob, diameter, pick.opening_radius, pick.min_component_area,
                                 pick.max_component_area, pick.component_level)
    xy, scores = find_separated_peaks(prob, pick.nms_radius * diameter, min_score,
                                      pick.saddle_radius * diameter, pick.saddle_ratio)
    if pick.edge_exclusion > 0 and len(xy):
        d = pick.edge_exclusion * diameter
        ny, nx = prob.shape
        inside = (xy[:, 0] >= d - 0.5) & (xy[:, 0] <= nx - 0.5 - d) & \
                 (xy[:, 1] >= d - 0.5) & (xy[:, 1] <= ny - 0.5 - d)
        xy, scores = xy[inside], scores[inside]
    return xy, scores
