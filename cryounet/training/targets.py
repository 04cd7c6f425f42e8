"""Training targets from picks, aware that unpicked particles exist (positive-unlabelled data).

For each pick the target is 1 in a core of ``positive_radius`` (a disk, or a Gaussian of that sigma);
pixels between the core and ``ignore_radius`` get weight 0 (ignored: the pick centre is uncertain
there); every other pixel is an *unlabelled* negative with weight ``unlabelled_weight``. With weight 1
unpicked pixels count as certain negatives, which suits complete picks (as in CryoPPP); for sparse
picks lower it. :func:`describe_negatives` says which assumption a run makes.

With ``separation`` on, the ignored band between two touching picks keeps a thin border of
negatives (pixels about equally far from both, :func:`separation_border`), so the network learns to
leave a valley between touching particles instead of merging them. ``auto`` turns it on for crowded
picks (:func:`resolve_separation`).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree

from cryounet.config import CROWDED_SHARE, TargetConfig
from cryounet.errors import CryoUNetError


def make_targets(
    shape: tuple[int, int], xy: np.ndarray, diameter: float, cfg: TargetConfig,
    background: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Target and weight maps for picks on one image.

    Args:
        shape: ``(ny, nx)`` of the (working-scale) image.
        xy: ``(N, 2)`` pick centres, x = column, y = row, in the same pixels.
        diameter: particle diameter in the same pixels.
        cfg: target settings.
        background: per-pixel weight of pixels away from picks, replacing the constant
            ``unlabelled_weight`` (pseudo-labels: 1 for confident negatives, 0 for unsure pixels).

    ``separation`` ``auto`` is decided on these picks alone; training decides it once for all its
    labelled micrographs (:func:`decide_separation`) before it makes any target.

    Returns:
        ``target`` (float32 in [0, 1]) and ``weight`` (float32 >= 0, 0 = ignored), both ``shape``.
    """
    if not 0 < cfg.positive_radius <= cfg.ignore_radius:
        raise CryoUNetError(
            f"target radii must satisfy 0 < positive_radius ({cfg.positive_radius}) <= "
            f"ignore_radius ({cfg.ignore_radius})"
        )
    ny, nx = shape
    target = np.zeros(shape, dtype=np.float32)
    if background is None:
        weight = np.full(shape, cfg.unlabelled_weight, dtype=np.float32)
    else:
        weight = np.array(background, dtype=np.float32, copy=True)
        if weight.shape != tuple(shape):
            raise ValueError(f"background weights of shape {weight.shape} for an image of {shape}")
    r_pos = cfg.positive_radius * diameter
    r_ign = cfg.ignore_radius * diameter
    reach = int(np.ceil(max(r_ign, 3 * r_pos if cfg.shape == "gaussian" else r_pos))) + 1
    for x, y in np.asarray(xy, dtype=np.float64).reshape(-1, 2):
        x0, x1 = max(0, int(x) - reach), min(nx, int(x) + reach + 2)
        y0, y1 = max(0, int(y) - reach), min(ny, int(y) + reach + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d2 = (xx - x) ** 2 + (yy - y) ** 2
        if cfg.shape == "disk":
            core = (d2 <= r_pos**2).astype(np.float32)
        elif cfg.shape == "gaussian":
            core = np.exp(-d2 / (2 * r_pos**2)).astype(np.float32)
        else:
            raise CryoUNetError(f"unknown target shape '{cfg.shape}' (disk or gaussian)")
        np.maximum(target[y0:y1, x0:x1], core, out=target[y0:y1, x0:x1])
        band = d2 <= r_ign**2
        w = weight[y0:y1, x0:x1]
        w[band] = 0.0
    if cfg.separation == "auto":
        cfg = resolve_separation(cfg, [(xy, diameter)])
    if cfg.separation == "on" and cfg.separation_weight > 0:
        border = separation_border(shape, xy, diameter, cfg) & (target < 0.5)
        target[border] = 0.0
        weight[border] = cfg.separation_weight
    # Positive pixels always count, even inside another pick's ignore band.
    positive = target >= 0.5
    weight[positive] = 1.0
    if cfg.shape == "gaussian":
        # Soft targets: pixels with a clear Gaussian value also count.
        weight[(target > 0.05) & ~positive] = 1.0
    return target, weight


def separation_border(shape: tuple[int, int], xy: np.ndarray, diameter: float,
                      cfg: TargetConfig) -> np.ndarray:
    """Boolean map of the border between touching picks: pixels within ``ignore_radius`` of
    their two nearest picks whose distances to the two differ by at most ``separation_width``
    (all in diameters), outside the positive core of both. Empty with fewer than two picks."""
    border = np.zeros(shape, dtype=bool)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 2:
        return border
    reach = cfg.ignore_radius * diameter
    # Only pixels near a pick can be near two: the bounding box of each pick's reach.
    near = np.zeros(shape, dtype=bool)
    ny, nx = shape
    r = int(np.ceil(reach)) + 1
    for x, y in xy:
        near[max(0, int(y) - r):min(ny, int(y) + r + 2), max(0, int(x) - r):min(nx, int(x) + r + 2)] = True
    ys, xs = np.nonzero(near)
    if len(ys) == 0:
        return border
    dist, _ = cKDTree(xy).query(np.stack([xs, ys], axis=1), k=2, distance_upper_bound=reach)
    two = np.isfinite(dist[:, 1])  # inf where fewer than two picks lie within reach
    d1, d2 = dist[two, 0], dist[two, 1]
    on = (d2 - d1 <= cfg.separation_width * diameter) & (d1 > cfg.positive_radius * diameter)
    border[ys[two][on], xs[two][on]] = True
    return border


def crowded_share(picks: Sequence[tuple[np.ndarray, float]], distance: float) -> tuple[float, int]:
    """Share of picks with another pick of the same micrograph closer than ``distance`` diameters,
    and the number of picks; ``picks`` holds ``(xy, diameter)`` per micrograph."""
    close = total = 0
    for xy, diameter in picks:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        total += len(xy)
        if len(xy) >= 2:
            gaps, _ = cKDTree(xy).query(xy, k=2)
            close += int((gaps[:, 1] < distance * diameter).sum())
    return (close / total if total else 0.0), total


def resolve_separation(cfg: TargetConfig, picks: Sequence[tuple[np.ndarray, float]]) -> TargetConfig:
    """``cfg`` with ``separation`` ``auto`` decided (``on`` or ``off``) for these picks (``(xy,
    diameter)`` per micrograph): on when at least :data:`CROWDED_SHARE` of them have a neighbour
    closer than two ``ignore_radius``, the only pairs a border can lie between."""
    if cfg.separation != "auto":
        return cfg
    return _decided(cfg, crowded_share(picks, cfg.crowded_distance)[0])


def decide_separation(cfg: TargetConfig, picks: Sequence[tuple[np.ndarray, float]]
                      ) -> tuple[TargetConfig, str]:
    """:func:`resolve_separation`, and one sentence on the decision for the training log."""
    share, total = crowded_share(picks, cfg.crowded_distance)
    decided = _decided(cfg, share)
    why = (f"{'auto: ' if cfg.separation == 'auto' else ''}{100 * share:.0f} % of the {total} picks have a "
           f"neighbour closer than {cfg.crowded_distance:g} diameters")
    return decided, f"separation borders between touching picks: {decided.separation} ({why})"


def _decided(cfg: TargetConfig, share: float) -> TargetConfig:
    """``cfg`` with ``auto`` decided for picks of which ``share`` are crowded."""
    if cfg.separation != "auto":
        return cfg
    return dataclasses.replace(cfg, separation="on" if share >= CROWDED_SHARE else "off")


def describe_negatives(cfg: TargetConfig) -> str:
    """One sentence on how unpicked pixels are treated, for the training log."""
    if cfg.unlabelled_weight >= 1.0:
        return (
            "unpicked pixels are treated as negatives with full weight (assumes the picks are "
            "nearly complete; set target.unlabelled_weight below 1 for sparse picks)"
        )
    if cfg.unlabelled_weight <= 0:
        return "unpicked pixels are ignored (positive-only training)"
    return (
        f"unpicked pixels are treated as uncertain negatives with weight {cfg.unlabelled_weight:g} "
        "(positive-unlabelled data)"
    )
