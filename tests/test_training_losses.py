"""Pixel-wise losses (cryounet.training.losses)."""
from __future__ import annotations

import math

import pytest
import torch

from cryounet.config import LossConfig
from cryounet.errors import CryoUNetError
from cryounet.training.losses import bce_loss, build_loss, dice_loss, focal_loss

NAMES = ["bce", "focal", "dice", "bce_dice", "focal_dice"]


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1)


def _random_case(seed: int = 0, shape=(2, 1, 8, 9)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g) * 3
    target = (torch.rand(shape, generator=g) > 0.7).float()
    weight = torch.rand(shape, generator=g)
    return logits, target, weight


@pytest.mark.parametrize("target", [0.0, 1.0, 0.5])
def test_bce_of_logit_zero_is_ln2(target: float) -> None:
    loss = bce_loss(_t(0, 0, 0), _t(target, target, target), _t(1, 1, 1))
    assert loss.item() == pytest.approx(math.log(2), rel=1e-6)


def test_bce_known_value_and_weighted_mean() -> None:
    # Per-pixel BCE: -log(sigmoid(2)) and -log(1 - sigmoid(-1)); weights 3 and 1.
    loss = bce_loss(_t(2.0, -1.0), _t(1.0, 0.0), _t(3.0, 1.0))
    a, b = math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0))
    assert loss.item() == pytest.approx((3 * a + b) / 4, rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_ignored_pixels_change_nothing(name: str) -> None:
    fn = build_loss(LossConfig(name=name))
    logits, target, weight = _random_case()
    weight[0, 0, :3] = 0.0
    base = fn(logits, target, weight)
    logits2, target2 = logits.clone(), target.clone()
    logits2[0, 0, :3] = torch.randn(3, 9) * 50  # wild predictions ...
    target2[0, 0, :3] = 1 - target2[0, 0, :3]  # ... and flipped labels where ignored
    assert fn(logits2, target2, weight).item() == pytest.approx(base.item(), rel=1e-6, abs=1e-7)


def test_all_ignored_is_finite() -> None:
    logits, target, _ = _random_case()
    loss = bce_loss(logits, target, torch.zeros_like(target))
    assert torch.isfinite(loss) and loss.item() == 0.0


def test_focal_gamma_zero_equals_bce() -> None:
    logits, target, weight = _random_case(1)
    assert focal_loss(logits, target, weight, gamma=0.0).item() == pytest.approx(
        bce_loss(logits, target, weight).item(), rel=1e-6)
    cfg = LossConfig(name="focal", focal_gamma=0.0, pos_weight=2.5)
    assert build_loss(cfg)(logits, target, weight).item() == pytest.approx(
        bce_loss(logits, target, weight, pos_weight=2.5).item(), rel=1e-6)


def test_focal_down_weights_easy_pixels() -> None:
    easy = focal_loss(_t(4.0), _t(1.0), _t(1.0), gamma=2.0).item()
    p = 1 / (1 + math.exp(-4.0))
    assert easy == pytest.approx((1 - p) ** 2 * -math.log(p), rel=1e-5)
    assert easy < bce_loss(_t(4.0), _t(1.0), _t(1.0)).item() / 50


def test_focal_alpha_weights_classes() -> None:
    pos = focal_loss(_t(0.0), _t(1.0), _t(1.0), gamma=0.0, alpha=0.25).item()
    neg = focal_loss(_t(0.0), _t(0.0), _t(1.0), gamma=0.0, alpha=0.25).item()
    assert pos == pytest.approx(0.25 * math.log(2), rel=1e-6)
    assert neg == pytest.approx(0.75 * math.log(2), rel=1e-6)


def test_perfect_dice_is_about_zero_and_wrong_dice_about_one() -> None:
    target = torch.zeros(1, 1, 16, 16)
    target[..., 4:12, 4:12] = 1.0
    weight = torch.ones_like(target)
    perfect = torch.where(target > 0, 20.0, -20.0)
    assert dice_loss(perfect, target, weight).item() < 1e-2
    assert dice_loss(-perfect, target, weight).item() > 0.98


def test_pos_weight_weights_positive_pixels() -> None:
    # One positive with loss a, one negative with loss b: weighted mean (3a + b) / 4.
    logits, target, weight = _t(0.5, 0.5), _t(1.0, 0.0), _t(1.0, 1.0)
    a, b = math.log1p(math.exp(-0.5)), math.log1p(math.exp(0.5))
    assert bce_loss(logits, target, weight, pos_weight=3.0).item() == pytest.approx(
        (3 * a + b) / 4, rel=1e-6)


def test_label_smoothing_squeezes_targets() -> None:
    logits, target, weight = _random_case(2)
    smoothed = build_loss(LossConfig(name="bce", label_smoothing=0.2))(logits, target, weight)
    expected = bce_loss(logits, target * 0.8 + 0.1, weight)
    assert smoothed.item() == pytest.approx(expected.item(), rel=1e-6)
    # The loss of a positive is now minimal at p = 0.9, not at p -> 1.
    x = torch.tensor([math.log(0.9 / 0.1)], requires_grad=True)
    build_loss(LossConfig(name="bce", label_smoothing=0.2))(
        x.reshape(1, 1, 1, 1), _t(1.0), _t(1.0)).backward()
    assert abs(x.grad.item()) < 1e-6


def test_combined_losses_are_sums() -> None:
    logits, target, weight = _random_case(3)
    cfg = LossConfig(name="bce_dice", dice_weight=0.5)
    assert build_loss(cfg)(logits, target, weight).item() == pytest.approx(
        bce_loss(logits, target, weight).item() + 0.5 * dice_loss(logits, target, weight).item(),
        rel=1e-6)
    cfg = LossConfig(name="focal_dice", dice_weight=2.0, focal_gamma=1.5)
    assert build_loss(cfg)(logits, target, weight).item() == pytest.approx(
        focal_loss(logits, target, weight, gamma=1.5).item()
        + 2.0 * dice_loss(logits, target, weight).item(), rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_flow(name: str) -> None:
    logits, target, weight = _random_case(4)
    logits.requires_grad_(True)
    build_loss(LossConfig(name=name))(logits, target, weight).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_unknown_loss_and_bad_smoothing() -> None:
    with pytest.raises(CryoUNetError, match="unknown loss 'l2'") as info:
        build_loss(LossConfig(name="l2"))
    for name in NAMES:
        assert name in str(info.value)
    for bad in (1.0, -0.1):
        with pytest.raises(CryoUNetError, match="label_smoothing"):
            build_loss(LossConfig(label_smoothing=bad))
