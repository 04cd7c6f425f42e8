"""Full-micrograph prediction with PyTorch, with optional test-time augmentation, tiled only when
needed (the tiling is :mod:`cryounet.inference.tiling`'s)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch import nn

from cryounet.device import large_gpu
from cryounet.errors import CryoUNetError
from cryounet.inference.tiling import predict_tiled, tta_symmetries


def _multiple(network: nn.Module) -> int:
    return int(getattr(network, "multiple", 1))


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


def symmetries_together(device: torch.device | str) -> bool:
    """Whether test-time augmentation sends its symmetries of a batch through the network as one
    larger batch (same shape together) rather than one after another: on a CUDA GPU with the
    memory for it (:func:`cryounet.device.large_gpu`), where a pass over one micrograph leaves most
    of the device idle (docs/history: "GPU"); not on the CPU, where it would only multiply the
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

    def probability(tiles: np.ndarray) -> np.ndarray:
        prob = _forward_probability(network, torch.from_numpy(tiles)[:, None].to(device), tta,
                                    tta_symmetries, together)
        return prob[:, 0].float().cpu().numpy()

    return predict_tiled(probability, image, _multiple(network), tile_size, overlap, batch_size)
