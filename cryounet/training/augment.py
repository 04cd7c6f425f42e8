"""Augmentation presets (albumentations), applied to the image and its target/weight maps together.

- ``none``: nothing.
- ``light``: the 8 exact symmetries of the square (flips and 90-degree rotations).
- ``strong``: light + small rotations/scaling, elastic deformation, Gaussian noise,
  brightness/contrast, blur and coarse dropout (dropped regions are ignored in the loss).

``augment.scale_jitter`` j > 0 adds, to any preset, a rescaling of 80 % of the patches by a factor
from [1 / (1 + j), 1 + j], zooming in and out equally often (targets and weights rescaled with the
image).

Geometric transforms move the target and weight maps with the image; photometric ones touch the
image only.
"""
from __future__ import annotations

import logging
import os
from typing import Callable

import numpy as np

from cryounet.config import AUGMENT_PRESETS as PRESETS
from cryounet.config import AugmentConfig
from cryounet.errors import CryoUNetError

logger = logging.getLogger(__name__)

Augmenter = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def build_augmenter(cfg: AugmentConfig, seed: int) -> Augmenter:
    """A function ``(image, target, weight) -> (image, target, weight)`` for the preset."""
    if cfg.preset not in PRESETS:
        raise CryoUNetError(f"unknown augmentation preset '{cfg.preset}' (one of {', '.join(PRESETS)})")
    if cfg.preset == "none" and cfg.scale_jitter == 0:
        return lambda image, target, weight: (image, target, weight)

    # albumentations asks PyPI for a newer release when imported, unless this is set: no engine
    # process contacts the network (GPU nodes are often offline, and the failed lookup costs seconds).
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

    transforms: list = [] if cfg.preset == "none" else [A.D4(p=1.0)]
    if cfg.scale_jitter > 0:
        transforms.append(_scale_jitter(A, cv2, cfg.scale_jitter))
    if cfg.preset == "strong":
        transforms += [
            A.Affine(rotate=(-15, 15), scale=(0.9, 1.1), border_mode=cv2.BORDER_REFLECT_101,
                     interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST, p=0.5),
            A.ElasticTransform(alpha=8, sigma=6, border_mode=cv2.BORDER_REFLECT_101,
                               interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                               p=0.2),
            A.GaussNoise(std_range=(0.05, 0.3), p=0.3),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.GaussianBlur(blur_limit=(3, 5), p=0.2),
            A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.05, 0.15),
                            hole_width_range=(0.05, 0.15), fill=0.0, fill_mask=0.0, p=0.2),
        ]
    pipeline = A.Compose(transforms, seed=seed)

    def apply(image: np.ndarray, target: np.ndarray, weight: np.ndarray):
        out = pipeline(image=image, masks=[target, weight])
        new_target, new_weight = out["masks"]
        return (
            np.ascontiguousarray(out["image"], dtype=np.float32),
            np.ascontiguousarray(new_target, dtype=np.float32),
            np.ascontiguousarray(new_weight, dtype=np.float32),
        )

    return apply


def _scale_jitter(A, cv2, jitter: float):
    """Rescale by a factor in [1 / (1 + jitter), 1 + jitter] (in or out equally often) about the centre
    (edges reflected; masks moved with nearest interpolation, so their values stay as they are)."""
    return A.Affine(scale=(1 / (1 + jitter), 1 + jitter), balanced_scale=True, border_mode=cv2.BORDER_REFLECT_101,
                    interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST, p=0.8)
