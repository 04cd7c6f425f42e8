"""Tiling and the symmetries of test-time augmentation in numpy (cryounet.inference.tiling)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cryounet.inference.predict import _dihedral, _dihedral_inverse
from cryounet.inference.tiling import (axis_tiles, dihedral, dihedral_inverse, fits_one_tile, pad_to_multiple,
                                       predict_tiled, tile_starts)


def testaxis_tiles_are_the_fewest_equal_tiles_that_fit() -> None:
    assert axis_tiles(608, 1152, 64, 8) == ([0], 608)  # fits: one pass
    starts, size = axis_tiles(1312, 1152, 64, 8)  # a 50 px particle on a 4k micrograph
    assert len(starts) == 2 and size <= 1152 and size % 8 == 0
    assert size < 720  # two tiles of about half, not two of 1152
    for length, largest, overlap in ((1312, 512, 64), (4096, 1024, 96), (1000, 256, 0), (264, 256, 64)):
        starts, size = axis_tiles(length, largest, overlap, 8)
        assert size <= largest and all(s % 8 == 0 for s in starts)
        assert starts[0] == 0 and starts[-1] + size == length
        assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # overlap kept
        assert len(starts) == -(-(length - overlap) // (largest - overlap))  # no more than needed


def test_tile_starts_cover_the_length_ending_at_it() -> None:
    assert tile_starts(100, 200, 50) == [0]
    assert tile_starts(200, 64, 48) == [0, 48, 96, 136]


@pytest.mark.parametrize("k", range(8))
def test_numpy_symmetries_are_torchs(k: int) -> None:
    x = np.random.default_rng(k).normal(size=(2, 5, 7)).astype(np.float32)
    assert np.array_equal(dihedral(x, k), _dihedral(torch.from_numpy(x), k).numpy())
    assert np.array_equal(dihedral_inverse(dihedral(x, k), k), x)
    y = _dihedral(torch.from_numpy(x), k)
    assert np.array_equal(dihedral_inverse(y.numpy(), k), _dihedral_inverse(y, k).numpy())


def test_pad_to_multiple_pads_the_last_two_axes_only() -> None:
    x = np.arange(2 * 10 * 13, dtype=np.float32).reshape(2, 10, 13)
    padded = pad_to_multiple(x, 8)
    assert padded.shape == (2, 16, 16)
    assert np.array_equal(padded[:, :10, :13], x)
    assert np.array_equal(padded[0], pad_to_multiple(x[0], 8))
    assert pad_to_multiple(x[:, :8, :8], 8).shape == (2, 8, 8)
    tiny = np.ones((1, 3, 3), dtype=np.float32)  # smaller than the padding: edge values
    assert pad_to_multiple(tiny, 8).shape == (1, 8, 8)


def test_predict_tiled_stitches_a_pointwise_map_exactly() -> None:
    """A pointwise 'network' gives the same map tiled as whole: every pixel comes from one tile."""
    image = np.random.default_rng(1).normal(size=(301, 517)).astype(np.float32)
    assert not fits_one_tile(image.shape, 128, 8)
    calls = []

    def probability(tiles: np.ndarray) -> np.ndarray:
        calls.append(tiles.shape)
        return 1 / (1 + np.exp(-tiles))

    out = predict_tiled(probability, image, 8, 128, 32, batch_size=3)
    assert np.allclose(out, 1 / (1 + np.exp(-image)), atol=1e-7)
    assert all(shape[0] <= 3 and shape[1] <= 128 and shape[2] <= 128 for shape in calls)
