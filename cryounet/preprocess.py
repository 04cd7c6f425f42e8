"""Bringing micrographs to the working scale, normalising them, and mapping coordinates.

The working scale makes the particle ``working_diameter`` pixels wide. Coordinates map between input
and working pixels with the pixel-centre convention, separately per axis, so that the round trip is
exact: ``x_work = (x + 0.5) * nx_work / nx - 0.5``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from cryounet.config import PreprocessConfig
from cryounet.errors import CryoUNetError

logger = logging.getLogger(__name__)

#: Smallest working image side accepted (the network needs a few pooling levels).
MIN_WORKING_SIZE = 16
#: Side of the window whose variance tells a flat region (padding, a grid bar, vacuum), in working
#: particle diameters (rounded to an odd number of pixels).
FLAT_WINDOW = 0.5
#: A window whose variance is below this fraction of the informative level is flat.
FLAT_VARIANCE = 0.02
#: Quantile of the local variances (outside constant windows) taken as the informative level.
FLAT_LEVEL_QUANTILE = 0.75
#: Flat regions are widened by this many working diameters on each side (the pixels that mix a
#: region with its surroundings when the micrograph is downsampled or filtered).
FLAT_MARGIN = 0.1
#: The flat-region window keeps at least this many pixels across on a subgrid.
FLAT_MIN_SIDE = 4
#: Larger images are examined for flat regions on a subgrid of about this many pixels.
FLAT_PIXELS = 1_100_000
#: About this many pixels (a regular grid) give the informative centre and level of flat_mask.
FLAT_SAMPLE = 65_536
#: Flat regions are filled with white noise of this standard deviation (normalised units, centred on
#: 0): quiet empty ice. A constant drew picks along the regions' edges (bench/normalisation.py).
FILL_SCALE = 0.5
#: Seed of the noise that fills flat regions (fixed: the same image always normalises the same way).
FILL_SEED = 0
#: Below this informative share of the image, normalisation falls back to the whole image.
MIN_INFORMATIVE = 0.02


@dataclass(frozen=True)
class Scale:
    """Geometry of one micrograph at input and working scale.

    Attributes:
        input_shape: ``(ny, nx)`` of the input micrograph.
        working_shape: ``(ny, nx)`` after downsampling.
    """

    input_shape: tuple[int, int]
    working_shape: tuple[int, int]

    @property
    def factors(self) -> tuple[float, float]:
        """Input pixels per working pixel along x and y."""
        return (
            self.input_shape[1] / self.working_shape[1],
            self.input_shape[0] / self.working_shape[0],
        )

    def to_working(self, xy: np.ndarray) -> np.ndarray:
        """Input-pixel ``(N, 2)`` x/y coordinates to working pixels."""
        fx, fy = self.factors
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return np.stack([(xy[:, 0] + 0.5) / fx - 0.5, (xy[:, 1] + 0.5) / fy - 0.5], axis=1)

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """Working-pixel ``(N, 2)`` x/y coordinates to input pixels."""
        fx, fy = self.factors
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return np.stack([(xy[:, 0] + 0.5) * fx - 0.5, (xy[:, 1] + 0.5) * fy - 0.5], axis=1)


def downsample_factor(diameter: float, cfg: PreprocessConfig) -> float:
    """Input pixels per working pixel for a particle ``diameter`` (input px); never below 1."""
    if not math.isfinite(diameter) or diameter <= 0:
        raise CryoUNetError(f"particle diameter must be a positive number of pixels, got {diameter}")
    return max(1.0, diameter / cfg.working_diameter)


def working_scale(input_shape: tuple[int, int], diameter: float, cfg: PreprocessConfig) -> Scale:
    """The :class:`Scale` of a micrograph of ``input_shape`` for a given particle diameter."""
    factor = downsample_factor(diameter, cfg)
    ny, nx = input_shape
    if diameter >= min(ny, nx):
        raise CryoUNetError(
            f"particle diameter {diameter:g} px is not smaller than the micrograph ({nx} x {ny} px)"
        )
    shape = (max(1, int(round(ny / factor))), max(1, int(round(nx / factor))))
    if min(shape) < MIN_WORKING_SIZE:
        raise CryoUNetError(
            f"micrograph of {nx} x {ny} px is only {shape[1]} x {shape[0]} px at the working scale "
            f"(diameter {diameter:g} px -> {cfg.working_diameter:g} px); it is too small to pick"
        )
    return Scale((int(ny), int(nx)), shape)


def normalise(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Zero-centred, unit-scale float32 image (robust: median/MAD; standard: mean/std), clipped.

    The statistics are taken over the informative part of the image: near-constant regions (zero
    padding, a grid bar, denoised vacuum; :func:`flat_mask`) would shrink the spread and amplify the
    rest, so they are left out, and filled with quiet noise (:data:`FILL_SCALE`) around the centre,
    so that they read as empty ice and hold no peaks. When less than :data:`MIN_INFORMATIVE` of the
    image is informative, the whole image is used.
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    if cfg.normalisation not in ("robust", "standard"):
        raise CryoUNetError(f"unknown normalisation '{cfg.normalisation}' (robust or standard)")
    flat = flat_mask(image, cfg.working_diameter)
    if flat is not None and np.count_nonzero(flat) > (1 - MIN_INFORMATIVE) * flat.size:
        logger.debug("%.0f %% of the image is flat; normalising over all of it", 100 * flat.mean())
        flat = None
    centre, spread = _statistics(image, flat, cfg.normalisation)
    if spread <= 0:
        raise CryoUNetError("image has no contrast after downsampling; nothing can be picked")
    out = (image - centre) / spread
    if flat is not None:
        noise = np.random.default_rng(FILL_SEED).standard_normal(np.count_nonzero(flat), dtype=np.float32)
        out[flat] = FILL_SCALE * noise
    if cfg.clip > 0:
        np.clip(out, -cfg.clip, cfg.clip, out=out)
    return out


def _statistics(image: np.ndarray, flat: np.ndarray | None, kind: str) -> tuple[float, float]:
    """Centre and spread of ``image`` outside ``flat`` (all of it when ``flat`` is None)."""
    if kind == "standard":
        values = image if flat is None else image[~flat]
        return float(values.mean()), float(values.std())
    step = 2 if image.size > 1_000_000 else 1
    sample = image[::step, ::step]
    if flat is not None:
        sample = sample[~flat[::step, ::step]]
    centre = float(np.median(sample))
    spread = 1.4826 * float(np.median(np.abs(sample - centre)))
    if spread <= 0:
        spread = float(sample.std())
    return centre, spread


def flat_mask(image: np.ndarray, working_diameter: float) -> np.ndarray | None:
    """Near-constant regions of a working image (True), or None when it has none.

    A pixel is flat when the window of :data:`FLAT_WINDOW` working diameters around it holds one
    value only (padding, a constant bar), or its variance is below :data:`FLAT_VARIANCE` times the
    informative level (the :data:`FLAT_LEVEL_QUANTILE` quantile of the local variances outside the
    constant windows; denoised vacuum). Flat specks smaller than the window (chance in noise) are
    dropped; the rest is widened by the window and :data:`FLAT_MARGIN` diameters, so that it reaches
    the region's edge and the pixels that mix both sides. Images of more than :data:`FLAT_PIXELS`
    pixels are examined on the subgrid of every k-th pixel, as long as the window keeps
    :data:`FLAT_MIN_SIDE` of its pixels across.
    """
    window = FLAT_WINDOW * working_diameter
    stride = max(1, min(int(math.sqrt(image.size / FLAT_PIXELS)), int(window / FLAT_MIN_SIDE)))
    grid = np.ascontiguousarray(image[::stride, ::stride])
    side = 2 * max(1, int(round(window / stride / 2))) + 1
    flat = _low_variance(grid, side)
    if flat is None:
        return None
    square = np.ones((side, side), np.uint8)
    flat = cv2.erode(flat.view(np.uint8), square, borderType=cv2.BORDER_REPLICATE)
    if not flat.any():
        return None
    grow = 2 * side + 2 * max(1, int(math.ceil(FLAT_MARGIN * working_diameter / stride)))
    flat = cv2.dilate(flat, np.ones((grow, grow), np.uint8)).view(bool)
    if stride == 1:
        return flat
    full = np.repeat(np.repeat(flat, stride, axis=0), stride, axis=1)
    return full[: image.shape[0], : image.shape[1]]


def _low_variance(grid: np.ndarray, side: int) -> np.ndarray | None:
    """Pixels whose ``side`` x ``side`` window is constant or of low variance (see
    :func:`flat_mask`), or None when there are none."""
    square = np.ones((side, side), np.uint8)
    flat = cv2.dilate(grid, square) == cv2.erode(grid, square)
    step = max(1, int(math.sqrt(grid.size / FLAT_SAMPLE)))  # the level needs no more pixels
    live = ~flat[::step, ::step]
    if not live.any():
        return flat
    # Variances of values centred on the informative median (no float32 cancellation from an offset).
    centred = grid - np.float32(np.median(grid[::step, ::step][live]))
    mean = cv2.boxFilter(centred, -1, (side, side), borderType=cv2.BORDER_REFLECT_101)
    variance = cv2.boxFilter(centred * centred, -1, (side, side), borderType=cv2.BORDER_REFLECT_101)
    variance -= mean * mean
    level = float(np.quantile(variance[::step, ::step][live], FLAT_LEVEL_QUANTILE))
    flat |= variance < FLAT_VARIANCE * level
    return flat if flat.any() else None


def preprocess(image: np.ndarray, diameter: float, cfg: PreprocessConfig) -> tuple[np.ndarray, Scale]:
    """Downsample (area averaging, an anti-aliasing filter) and normalise one micrograph.

    Args:
        image: ``(ny, nx)`` micrograph (may be a memory map of any real dtype).
        diameter: particle diameter in input pixels.
        cfg: preprocessing settings.

    Returns:
        The normalised float32 working image and its :class:`Scale`.
    """
    scale = working_scale(image.shape, diameter, cfg)
    data = np.asarray(image, dtype=np.float32)
    if scale.working_shape != scale.input_shape:
        wy, wx = scale.working_shape
        data = cv2.resize(data, (wx, wy), interpolation=cv2.INTER_AREA)
    data = lowpass(data, cfg.lowpass_sigma * cfg.working_diameter)
    return normalise(data, cfg), scale


def lowpass(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of a working image (``sigma`` in its pixels; 0 returns it unchanged);
    the border is reflected, so edges keep their level."""
    if sigma <= 0:
        return image
    return cv2.GaussianBlur(np.ascontiguousarray(image, dtype=np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REFLECT_101)
