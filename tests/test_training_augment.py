"""Augmentation presets (cryounet.training.augment)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from cryounet.training.augment import PRESETS, build_augmenter
from cryounet.config import AugmentConfig
from cryounet.errors import CryoUNetError


def _marked(shape=(24, 32)):
    """Image, target and weight with one pixel marked at (row 3, column 5) in all three."""
    rng = np.random.default_rng(0)
    image = rng.normal(0, 0.1, shape).astype(np.float32)
    image[3, 5] = 10.0
    target = np.zeros(shape, dtype=np.float32)
    target[3, 5] = 1.0
    weight = np.full(shape, 0.5, dtype=np.float32)
    weight[3, 5] = 1.0
    weight[10, 20] = 0.0
    return image, target, weight


def _d4(array: np.ndarray) -> list[np.ndarray]:
    out = []
    for flipped in (array, array[:, ::-1]):
        for k in range(4):
            out.append(np.rot90(flipped, k))
    return out


def test_presets() -> None:
    assert set(PRESETS) == {"none", "light", "strong"}


def test_none_is_identity() -> None:
    image, target, weight = _marked()
    out = build_augmenter(AugmentConfig(preset="none"), seed=0)(image, target, weight)
    for before, after in zip((image, target, weight), out):
        np.testing.assert_array_equal(before, after)


def test_light_moves_target_and_weight_with_the_image() -> None:
    image, target, weight = _marked((24, 24))
    augment = build_augmenter(AugmentConfig(preset="light"), seed=1)
    seen = set()
    for _ in range(40):
        new_image, new_target, new_weight = augment(image.copy(), target.copy(), weight.copy())
        assert new_image.dtype == new_target.dtype == new_weight.dtype == np.float32
        peak = np.unravel_index(np.argmax(new_image), new_image.shape)
        assert np.argwhere(new_target == 1.0).tolist() == [list(peak)]
        assert new_weight[peak] == 1.0
        # Exactly one of the 8 symmetries, the same one for all three arrays.
        matches = [k for k, cand in enumerate(_d4(image)) if np.array_equal(cand, new_image)]
        assert len(matches) == 1
        k = matches[0]
        np.testing.assert_array_equal(new_target, _d4(target)[k])
        np.testing.assert_array_equal(new_weight, _d4(weight)[k])
        seen.add(k)
    assert len(seen) >= 6  # random symmetries, not always the same one


def test_light_on_non_square_patch_keeps_content() -> None:
    image, target, weight = _marked((24, 32))
    new_image, new_target, new_weight = build_augmenter(AugmentConfig("light"), seed=2)(
        image, target, weight)
    assert sorted(new_image.shape) == [24, 32] and new_target.shape == new_image.shape
    np.testing.assert_allclose(np.sort(new_image.ravel()), np.sort(image.ravel()))
    peak = np.unravel_index(np.argmax(new_image), new_image.shape)
    assert new_target[peak] == 1.0 and new_target.sum() == 1.0


def test_strong_keeps_shapes_dtypes_and_label_values() -> None:
    image, target, weight = _marked((32, 32))
    augment = build_augmenter(AugmentConfig(preset="strong"), seed=3)
    changed_photometry = False
    for _ in range(25):
        new_image, new_target, new_weight = augment(image.copy(), target.copy(), weight.copy())
        for a in (new_image, new_target, new_weight):
            assert a.shape == (32, 32) and a.dtype == np.float32 and a.flags.c_contiguous
        assert np.isfinite(new_image).all()
        # Masks are moved with nearest interpolation (or dropped to 0), never blended.
        assert np.isin(new_target, [0.0, 1.0]).all()
        assert np.isin(new_weight, [0.0, 0.5, 1.0]).all()
        matches = any(np.array_equal(c, new_image) for c in _d4(image))
        changed_photometry |= not matches
    assert changed_photometry  # strong does more than the 8 symmetries


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_same_seed_same_augmentations(preset: str) -> None:
    image, target, weight = _marked((32, 32))
    a = build_augmenter(AugmentConfig(preset), seed=7)
    b = build_augmenter(AugmentConfig(preset), seed=7)
    for _ in range(5):
        for x, y in zip(a(image, target, weight), b(image, target, weight)):
            np.testing.assert_array_equal(x, y)


def test_unknown_preset() -> None:
    with pytest.raises(CryoUNetError, match="unknown augmentation preset 'heavy'.*none, light, strong"):
        build_augmenter(AugmentConfig(preset="heavy"), seed=0)


def test_building_an_augmenter_contacts_no_server() -> None:
    """albumentations asks PyPI for a newer release when first imported unless told not to; the
    engine tells it (a fresh process, with the variable unset, any opened URL recorded)."""
    code = """
import urllib.request
opened = []
def record(self, request, *args, **kwargs):
    opened.append(getattr(request, "full_url", request))
    raise OSError("no network in this test")
urllib.request.OpenerDirector.open = record
from cryounet.config import AugmentConfig
from cryounet.training.augment import build_augmenter
build_augmenter(AugmentConfig(preset="strong"), 0)
import albumentations
print("opened", opened)
"""
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "opened []", out.stdout + out.stderr


def _disk(shape: int = 64, radius: float = 8.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dark disk in the image, the same disk in the target, weight 1 everywhere."""
    yy, xx = np.mgrid[:shape, :shape]
    inside = ((yy - shape / 2) ** 2 + (xx - shape / 2) ** 2) <= radius ** 2
    image = np.where(inside, -1.0, 0.0).astype(np.float32)
    return image, inside.astype(np.float32), np.ones((shape, shape), np.float32)


@pytest.mark.parametrize("preset", ["none", "light"])
def test_scale_jitter_rescales_image_and_targets_together(preset: str) -> None:
    image, target, weight = _disk()
    augment = build_augmenter(AugmentConfig(preset, scale_jitter=0.5), seed=4)
    areas = []
    for _ in range(60):
        new_image, new_target, new_weight = augment(image.copy(), target.copy(), weight.copy())
        assert np.isin(new_target, [0.0, 1.0]).all() and np.isin(new_weight, [1.0]).all()
        dark = new_image < -0.5
        assert (dark != (new_target == 1.0)).mean() < 0.01  # the target stays on the disk
        areas.append(new_target.sum())
    ratio = np.sqrt(np.array(areas) / target.sum())  # the radius' scale factor
    assert ratio.min() < 0.85 and ratio.max() > 1.2  # zoomed out and in
    assert ratio.min() > 1 / 1.5 - 0.05 and ratio.max() < 1.5 + 0.05  # within the jitter


@pytest.mark.parametrize("jitter", [-0.1, 1.5])
def test_scale_jitter_range_is_checked(jitter: float) -> None:
    from cryounet.config import CryoUNetConfig

    with pytest.raises(CryoUNetError, match="augment.scale_jitter must be between 0 and 1"):
        CryoUNetConfig.from_dict({"augment": {"scale_jitter": jitter}})
