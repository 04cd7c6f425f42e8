"""Training targets from picks, aware that unpicked particles exist (positive-unlabelled data).

For each pick the target is 1 in a core of ``positive_radius`` (a disk, or a Gaussian of that sigma);
pixels between the core and ``ignore_radius`` get weight 0 (ignored: the pick centre is uncertain
there); every other pixel is an *unlabelled* negative with weight ``unlabelled_weight``. With weight 1
unpicked pixels count as certain negatives, which suits complete picks (as in CryoPPP); for sparse
picks lower it. :func:`describe_negatives` says which assumption a run makes.
"""
from __future__ import annotations

import numpy as np

from cryounet.config import TargetConfig
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
    # Positive pixels always count, even inside another pick's ignore band.
    positive = target >= 0.5
    weight[positive] = 1.0
    if cfg.shape == "gaussian":
        # Soft targets: pixels with a clear Gaussian value also count.
        weight[(target > 0.05) & ~positive] = 1.0
    return target, weight


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
