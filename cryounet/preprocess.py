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
    """Zero-centred, unit-scale float32 image (robust: median/MAD; standard: mean/std), clipped."""
    image = np.asarray(image, dtype=np.float32)
    if cfg.normalisation == "robust":
        sample = image[::2, ::2] if image.size > 1_000_000 else image
        centre = float(np.median(sample))
        spread = 1.4826 * float(np.median(np.abs(sample - centre)))
        if spread <= 0:
            spread = float(sample.std())
    elif cfg.normalisation == "standard":
        centre, spread = float(image.mean()), float(image.std())
    else:
        raise CryoUNetError(f"unknown normalisation '{cfg.normalisation}' (robust or standard)")
    if spread <= 0:
        raise CryoUNetError("image has no contrast after downsampling; nothing can be picked")
    out = (image - centre) / spread
    if cfg.clip > 0:
        np.clip(out, -cfg.clip, cfg.clip, out=out)
    return out


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
