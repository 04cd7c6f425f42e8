"""Helpers shared by the engine tests (imported by ``conftest.py`` and the test modules)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
#: Real CryoPPP excerpts (never copied into the repository; tests skip when absent).
SHARED_DATA = REPO.parent / "shared" / "data"

SIM_DIAMETER = 24.0
SIM_SIZE = 192
#: Training settings small enough for a few seconds on one CPU thread.
TINY_CONFIG = {
    "train": {"epochs": 2, "steps_per_epoch": 4, "batch_size": 4, "patch_size": 64,
              "num_threads": 1},
    "model": {"base_channels": 4, "depth": 2},
}


@dataclass(frozen=True)
class SimData:
    """The session's simulated data set (read-only)."""

    folder: Path
    micrographs: list[Path]
    diameter: float
    size: int

    def star(self, index: int) -> Path:
        return self.micrographs[index].with_suffix(".star")


def error_line(err: str, command: str) -> str:
    """The message of the single ``cryounet <command>: error: ...`` line of a CLI run's stderr.

    Asserts the contract: exactly one such line, and it is the last line (a one-line message),
    with no traceback.
    """
    prefix = f"cryounet {command}: error: "
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(prefix)]
    assert len(errors) == 1, f"expected one error line starting {prefix!r} in:\n{err}"
    assert lines[-1] == errors[0], f"the error message is not one final line:\n{err}"
    assert "Traceback" not in err, err
    return errors[0][len(prefix):]


def gaussian_blobs(shape: tuple[int, int], xy, sigma: float, amplitude=1.0) -> np.ndarray:
    """Sum of isotropic Gaussians at ``xy`` (x = column, y = row), float64."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    out = np.zeros(shape)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    amps = np.broadcast_to(np.asarray(amplitude, dtype=np.float64), (len(xy),))
    for (x, y), a in zip(xy, amps):
        out += a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return out


class AffineNet(nn.Module):
    """A stand-in network: logits = gain * image + bias (equivariant, no pooling, no weights)."""

    multiple = 1

    def __init__(self, gain: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.gain, self.bias = gain, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * x + self.bias


def loaded_model(network: nn.Module, diameter: float = 32.0, threshold: float = 0.5,
                 name: str = "m"):
    """A :class:`~cryounet.modelio.LoadedModel` around ``network`` (working diameter 16, no
    clipping), without any file."""
    from cryounet.config import CryoUNetConfig
    from cryounet.io.model_folder import ModelInfo
    from cryounet.models.weights import LoadedModel

    cfg = CryoUNetConfig().updated({"preprocess": {"working_diameter": 16.0, "clip": 0.0}})
    return LoadedModel(network, ModelInfo(cfg, diameter, threshold), Path(name))


def spots_micrograph() -> tuple[np.ndarray, np.ndarray]:
    """256 x 256 micrograph with 4 bright spots centred on working-pixel centres (factor 2 for a
    32 px particle), and their input-pixel coordinates.

    Normalised, the spots peak at ~190 over unit noise: ``AffineNet(0.05, -5)`` gives them a
    probability of ~0.99 (unsaturated, so the peak is well defined) and the noise < 0.01.
    """
    working = np.array([[20, 30], [64, 64], [100, 40], [37, 110]], dtype=float)
    xy = working * 2 + 0.5  # input coordinates of those working-pixel centres
    rng = np.random.default_rng(0)
    image = gaussian_blobs((256, 256), xy, 4.0, 10.0) + rng.normal(0, 0.1, (256, 256))
    return image.astype(np.float32), xy


def train_interrupted_after_one_epoch(run_cli, monkeypatch, argv) -> int:
    """Run ``cryounet train`` in-process, interrupted (as by Ctrl-C) right after the first checkpoint
    is saved; returns the exit code (130). The monkeypatch is undone before returning."""
    from cryounet.training import loop

    real_save = loop._save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    try:
        return run_cli(*argv)[0]
    finally:
        monkeypatch.undo()
