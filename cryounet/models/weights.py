"""Network weights in a model folder: safetensors save/load and rebuilding a network from its folder.

Weights are loaded with safetensors (never unpickled) and the architecture is rebuilt from the
folder's ``config.json`` through the registry.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cryounet.errors import InputFileError
from cryounet.io.atomic import atomic_path, write_json
from cryounet.io.model_folder import (CONFIG_NAME, WEIGHTS_NAME, ModelInfo, check_weights_digest, read_model_info,
                                      weights_digest)
from cryounet.models.registry import build_model


@dataclass
class LoadedModel:
    """A network ready for inference, with its metadata and origin."""

    network: nn.Module
    info: ModelInfo
    path: Path


def save_weights(path: str | os.PathLike[str], network: nn.Module) -> None:
    """Save a network's state dict with safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def save_model(folder: str | os.PathLike[str], network: nn.Module, info: ModelInfo) -> None:
    """Write weights and config into ``folder`` (created if needed); the config records the
    weights' SHA-256 (and no graph's: a ``model.onnx`` of earlier weights is not this network)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS_NAME, network)
    info = dataclasses.replace(info, sha256={WEIGHTS_NAME: weights_digest(folder)})
    write_json(folder / CONFIG_NAME, info.to_json())


def load_weights(network: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load safetensors weights into ``network`` (shapes must match exactly)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "model weights are missing")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputFileError(path, f"not a readable safetensors file ({exc})") from None
    broken = [name for name, tensor in state.items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise InputFileError(path, f"weights contain NaN or infinite values ({', '.join(broken[:3])}); "
                             "the model is unusable, retrain it")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).splitlines()[:3])
        raise InputFileError(
            path, f"weights do not match the architecture in config.json ({detail})") from None


def load_model(folder: str | os.PathLike[str], device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the network of a model folder, load its weights (checked against the SHA-256 its
    config.json records) and put it in eval mode."""
    folder = Path(folder)
    info = read_model_info(folder)
    network = build_model(info.config.model)
    load_weights(network, folder / WEIGHTS_NAME)  # an unreadable file or another network: named as such
    check_weights_digest(folder, info)
    network.to(device).eval()
    return LoadedModel(network, info, folder)
