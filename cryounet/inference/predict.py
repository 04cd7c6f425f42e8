"""Full-micrograph prediction with optional test-time augmentation, tiled only when needed.

Memory is bounded by the largest tile side: a working-scale image that fits is done in one pass
(the fastest: no pixel is computed twice); a larger one is cut into the fewest overlapping tiles of
equal size that fit, so the overlap computed twice stays small. Tile starts are multiples of the
network's pooling factor (every tile sees the same pooling grid as the whole image), and each tile
contributes only its centre, away from the tile borders.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch import nn

from cryounet.config import check_tta_symmetries
from cryounet.device import large_gpu
from cryounet.errors import CryoUNetError


def _multiple(network: nn.Module) -> int:
    return int(getattr(network, "multiple", 1))


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Tile starts covering ``length`` (a multiple of the pooling factor, as are ``tile`` and
    ``step``): every ``step``, the last one ending exactly at ``length``."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _axis_tiles(length: int, largest: int, overlap: int, multiple: int) -> tuple[list[int], int]:
    """``(starts, size)`` of the fewest tiles of one size, at most ``largest``, that cover
    ``length`` with at least ``overlap`` pixels shared by neighbours (all multiples of
    ``multiple``, as ``length`` and ``largest`` are)."""
    if length <= largest:
        return [0], length
    count = -(-(length - overlap) // (largest - overlap))
    size = min(largest, -(-(length + (count - 1) * overlap) // (count * multiple)) * multiple)
    step = max(multiple, ((size - overlap) // multiple) * multiple)
    return _tile_starts(length, size, step), size


def _pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Pad bottom/right to a multiple of ``multiple`` exactly as the U-Net pads its input."""
    ny, nx = image.shape
    pad_y, pad_x = (-ny) % multiple, (-nx) % multiple
    if not (pad_y or pad_x):
        return image
    mode = "reflect" if min(ny, nx) > max(pad_y, pad_x) else "edge"
    return np.pad(image, ((0, pad_y), (0, pad_x)), mode=mode)


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 symmetries of the square (k in 0..7) on the last two dims."""
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def _dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.rot90(x, -(k % 4), dims=(-2, -1))
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return x


@contextlib.contextmanager
def forward_precision(device: torch.device | str, precision: str = "float32") -> Iterator[None]:
    """Autocast the forward passes inside to ``precision`` (``pick.precision``): nothing for
    ``float32``, ``bfloat16`` on the CPU or a GPU, ``float16`` on a CUDA GPU only."""
    check_precision(device, precision)
    if precision == "float32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float16
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


def check_precision(device: torch.device | str, precision: str) -> None:
    """Refuse a ``pick.precision`` the device cannot run (before any micrograph is read)."""
    device_type = torch.device(device).type
    if precision not in ("float32", "bfloat16", "float16"):
        raise CryoUNetError(f"unknown pick.precision {precision!r} (float32, bfloat16 or float16)")
    if precision == "float16" and device_type != "cuda":
        raise CryoUNetError(f"pick.precision float16 needs a CUDA GPU, and this pick runs on {device_type}; "
                            "use bfloat16 on the CPU (or float32)")


def tta_symmetries(count: int) -> tuple[int, ...]:
    """The symmetries (indices of :func:`_dihedral`) that test-time augmentation averages over:
    8, every flip and rotation of the square; 4, the four rotations (``pick.tta_symmetries``)."""
    check_tta_symmetries(count)
    return tuple(range(count))


def symmetries_together(device: torch.device | str) -> bool:
    """Whether test-time augmentation sends its symmetries of a batch through the network as one
    larger batch (same shape together) rather than one after another: on a CUDA GPU with the
    memory for it (:func:`cryounet.device.large_gpu`), where a pass over one micrograph leaves most
    of the device idle (BENCHMARKS.md, "GPU"); not on the CPU, where it would only multiply the
    memory a pass needs, nor on a smaller GPU."""
    return large_gpu(device)


@torch.no_grad()
def _forward_probability(network: nn.Module, batch: torch.Tensor, tta: bool,
                         symmetries: int = 8, together: bool = False) -> torch.Tensor:
    """Sigmoid of the network's output (mean over ``symmetries`` symmetries of the square when
    ``tta``), in float32 whatever the arithmetic of the forward pass. ``together``: the symmetric
    copies of the batch that share a shape go through the network as one batch (the same values)."""
    if not tta:
        return torch.sigmoid(network(batch).float())
    ks = tta_symmetries(symmetries)
    total = torch.zeros(batch.shape, dtype=torch.float32, device=batch.device)
    if not together:
        for k in ks:
            total += _dihedral_inverse(torch.sigmoid(network(_dihedral(batch, k)).float()), k)
        return total / len(ks)
    square = batch.shape[-1] == batch.shape[-2]
    # A quarter turn (odd k) swaps the sides: such copies go together only with each other.
    groups = [ks] if square else [tuple(k for k in ks if k % 2 == odd) for odd in (0, 1)]
    for group in groups:
        prob = torch.sigmoid(network(torch.cat([_dihedral(batch, k) for k in group])).float())
        for k, part in zip(group, prob.split(batch.shape[0])):
            total += _dihedral_inverse(part, k)
    return total / len(ks)


@torch.no_grad()
def predict_probability(
    network: nn.Module,
    image: np.ndarray,
    tile_size: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    tta: bool = False,
    device: torch.device | str = "cpu",
    tta_symmetries: int = 8,
    together: bool | None = None,
) -> np.ndarray:
    """Particle-centre probability for every pixel of a working-scale image.

    Args:
        network: model in eval mode, on ``device``.
        image: normalised ``(ny, nx)`` float32 image.
        tile_size: largest tile side (rounded up to the pooling multiple): images that fit are
            done whole, larger ones in the fewest equal tiles that fit.
        overlap: pixels shared by neighbouring tiles; half is discarded on each side.
        batch_size: tiles per forward pass.
        tta: average over symmetries of the square (test-time augmentation).
        device: where ``network`` is.
        tta_symmetries: how many: 8 (every flip and rotation) or 4 (the rotations).
        together: pass the symmetric copies as one batch (the same map); default
            :func:`symmetries_together` of ``device``.

    Returns:
        ``(ny, nx)`` float32 probabilities.
    """
    image = np.asarray(image, dtype=np.float32)
    together = symmetries_together(device) if together is None else together
    ny, nx = image.shape
    m = _multiple(network)
    tile = int(np.ceil(tile_size / m) * m)
    overlap = min(int(overlap), tile - m)
    if ny <= tile and nx <= tile:
        batch = torch.from_numpy(image)[None, None].to(device)
        return _forward_probability(network, batch, tta, tta_symmetries, together)[0, 0].float().cpu().numpy()

    # Pad once to the pooling multiple, as the network would pad the whole image; tiles then
    # never leave the padded image and see exactly the same values as a whole-image pass.
    padded = _pad_to_multiple(image, m)
    py, px = padded.shape
    (ys, th), (xs, tw) = _axis_tiles(py, tile, overlap, m), _axis_tiles(px, tile, overlap, m)
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
        prob = _forward_probability(network, torch.from_numpy(tiles)[:, None].to(device), tta,
                                    tta_symmetries, together)
        prob = prob[:, 0].float().cpu().numpy()
        for (iy, ix), p in zip(chunk, prob):
            y0, y1 = keep_range(ys, iy, th, ny)
            x0, x1 = keep_range(xs, ix, tw, nx)
            out[y0:y1, x0:x1] = p[y0 - ys[iy] : y1 - ys[iy], x0 - xs[ix] : x1 - xs[ix]]
    return out
