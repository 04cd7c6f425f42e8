"""Tiling a working-scale image for the network, and the symmetries of test-time augmentation, in
numpy (no torch: the ONNX Runtime picker uses this module alone, PyTorch's picker the tiling).

Memory is bounded by the largest tile side: a working-scale image that fits is done in one pass
(the fastest: no pixel is computed twice); a larger one is cut into the fewest overlapping tiles of
equal size that fit, so the overlap computed twice stays small. Tile starts are multiples of the
network's pooling factor (every tile sees the same pooling grid as the whole image), and each tile
contributes only its centre, away from the tile borders.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from cryounet.config import check_tta_symmetries

#: A batch of images ``(n, ny, nx)`` in, their particle probabilities (same shape, float32) out.
BatchProbability = Callable[[np.ndarray], np.ndarray]


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Tile starts covering ``length`` (a multiple of the pooling factor, as are ``tile`` and
    ``step``): every ``step``, the last one ending exactly at ``length``."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def axis_tiles(length: int, largest: int, overlap: int, multiple: int) -> tuple[list[int], int]:
    """``(starts, size)`` of the fewest tiles of one size, at most ``largest``, that cover
    ``length`` with at least ``overlap`` pixels shared by neighbours (all multiples of
    ``multiple``, as ``length`` and ``largest`` are)."""
    if length <= largest:
        return [0], length
    count = -(-(length - overlap) // (largest - overlap))
    size = min(largest, -(-(length + (count - 1) * overlap) // (count * multiple)) * multiple)
    step = max(multiple, ((size - overlap) // multiple) * multiple)
    return tile_starts(length, size, step), size


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Pad the last two axes bottom/right to a multiple of ``multiple`` exactly as the U-Net pads
    its input (reflection, or edge values for an image smaller than the padding)."""
    ny, nx = image.shape[-2:]
    pad_y, pad_x = (-ny) % multiple, (-nx) % multiple
    if not (pad_y or pad_x):
        return image
    mode = "reflect" if min(ny, nx) > max(pad_y, pad_x) else "edge"
    return np.pad(image, [(0, 0)] * (image.ndim - 2) + [(0, pad_y), (0, pad_x)], mode=mode)


def tile_size_for(tile_size: int, multiple: int) -> int:
    """The largest tile side actually used: ``tile_size`` rounded up to the pooling multiple."""
    return int(np.ceil(tile_size / multiple) * multiple)


def predict_tiled(probability: BatchProbability, image: np.ndarray, multiple: int, tile_size: int,
                  overlap: int, batch_size: int) -> np.ndarray:
    """The probability map of a working-scale image (``probability`` maps a batch of images to
    their probabilities): in one pass when it fits one tile, else stitched from the centres of the
    fewest equal tiles that cover it."""
    if fits_one_tile(image.shape, tile_size, multiple):
        return probability(image[None])[0]
    ny, nx = image.shape
    tile = tile_size_for(tile_size, multiple)
    overlap = min(int(overlap), tile - multiple)
    # Pad once to the pooling multiple, as the network would pad the whole image; tiles then
    # never leave the padded image and see exactly the same values as a whole-image pass.
    padded = pad_to_multiple(image, multiple)
    py, px = padded.shape
    (ys, th), (xs, tw) = axis_tiles(py, tile, overlap, multiple), axis_tiles(px, tile, overlap, multiple)
    out = np.zeros((ny, nx), dtype=np.float32)
    half = overlap // 2

    def keep_range(starts: list[int], i: int, size: int, length: int) -> tuple[int, int]:
        lo = 0 if i == 0 else starts[i] + half
        hi = length if i == len(starts) - 1 else starts[i] + size - (overlap - half)
        return lo, min(hi, length)

    positions = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    for b in range(0, len(positions), batch_size):
        chunk = positions[b : b + batch_size]
        tiles = np.stack([padded[ys[iy] : ys[iy] + th, xs[ix] : xs[ix] + tw] for iy, ix in chunk])
        for (iy, ix), p in zip(chunk, probability(tiles)):
            y0, y1 = keep_range(ys, iy, th, ny)
            x0, x1 = keep_range(xs, ix, tw, nx)
            out[y0:y1, x0:x1] = p[y0 - ys[iy] : y1 - ys[iy], x0 - xs[ix] : x1 - xs[ix]]
    return out


def fits_one_tile(shape: tuple[int, ...], tile_size: int, multiple: int) -> bool:
    """Whether an image of ``shape`` is predicted whole (no tiling)."""
    tile = tile_size_for(tile_size, multiple)
    return shape[-2] <= tile and shape[-1] <= tile


def tta_symmetries(count: int) -> tuple[int, ...]:
    """The symmetries (indices of :func:`dihedral`) that test-time augmentation averages over:
    8, every flip and rotation of the square; 4, the four rotations (``pick.tta_symmetries``)."""
    check_tta_symmetries(count)
    return tuple(range(count))


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 symmetries of the square (k in 0..7) on the last two axes, as numpy
    views (the same order as :func:`cryounet.inference.predict._dihedral`)."""
    if k >= 4:
        x = np.flip(x, axis=-1)
    return np.rot90(x, k % 4, axes=(-2, -1))


def dihedral_inverse(x: np.ndarray, k: int) -> np.ndarray:
    """Undo :func:`dihedral`."""
    x = np.rot90(x, -(k % 4), axes=(-2, -1))
    if k >= 4:
        x = np.flip(x, axis=-1)
    return x
