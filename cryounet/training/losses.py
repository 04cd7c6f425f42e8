"""Pixel-wise losses for probability maps; every loss honours a weight map (0 = ignored).

All losses take ``logits``, ``target`` in [0, 1] and ``weight`` >= 0 of the same shape ``(B, 1, H, W)``
and return a scalar. Weighted means divide by the summed weight, so ignored pixels change nothing.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from cryounet.config import LossConfig
from cryounet.errors import CryoUNetError

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum().clamp_min(1e-6)


def _class_weight(target: torch.Tensor, pos_weight: float) -> torch.Tensor:
    return 1.0 + (pos_weight - 1.0) * target


def bce_loss(logits, target, weight, pos_weight: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy; positives weighted by ``pos_weight``."""
    values = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return _weighted_mean(values, weight * _class_weight(target, pos_weight))


def focal_loss(logits, target, weight, gamma: float = 2.0, alpha: float = -1.0,
               pos_weight: float = 1.0) -> torch.Tensor:
    """Focal loss (Lin et al., 2017): BCE scaled by ``(1 - p_t) ** gamma``.

    ``alpha`` in [0, 1] weights positives by alpha and negatives by 1 - alpha; -1 disables it.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    prob = torch.sigmoid(logits)
    p_t = prob * target + (1 - prob) * (1 - target)
    values = bce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        values = values * (alpha * target + (1 - alpha) * (1 - target))
    return _weighted_mean(values, weight * _class_weight(target, pos_weight))


def dice_loss(logits, target, weight, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss over the non-ignored pixels of the whole batch."""
    prob = torch.sigmoid(logits)
    mask = (weight > 0).to(prob.dtype)
    intersection = (prob * target * mask).sum()
    total = (prob * mask).sum() + (target * mask).sum()
    return 1 - (2 * intersection + eps) / (total + eps)


def build_loss(cfg: LossConfig) -> LossFn:
    """The loss named in ``cfg.name``, with label smoothing applied to its targets."""

    def smooth(target: torch.Tensor) -> torch.Tensor:
        s = cfg.label_smoothing
        return target * (1 - s) + 0.5 * s if s > 0 else target

    def bce(lg, t, w):
        return bce_loss(lg, smooth(t), w, cfg.pos_weight)

    def focal(lg, t, w):
        return focal_loss(lg, smooth(t), w, cfg.focal_gamma, cfg.focal_alpha, cfg.pos_weight)

    def dice(lg, t, w):
        return dice_loss(lg, t, w)

    losses: dict[str, LossFn] = {
        "bce": bce,
        "focal": focal,
        "dice": dice,
        "bce_dice": lambda lg, t, w: bce(lg, t, w) + cfg.dice_weight * dice(lg, t, w),
        "focal_dice": lambda lg, t, w: focal(lg, t, w) + cfg.dice_weight * dice(lg, t, w),
    }
    if cfg.name not in losses:
        raise CryoUNetError(f"unknown loss '{cfg.name}' (available: {', '.join(losses)})")
    if not 0 <= cfg.label_smoothing < 1:
        raise CryoUNetError(f"loss.label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    return losses[cfg.name]
