"""Model folders: weights (safetensors), config JSON, training history, validation curve.

A model folder is data, never code: weights are loaded with safetensors and the architecture is
rebuilt from the JSON config through the registry.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cryounet import __version__
from cryounet.config import CryoUNetConfig
from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.atomic import atomic_path, write_json
from cryounet.models import build_model

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
HISTORY_NAME = "history.json"
CURVE_NAME = "validation_curve.json"
MODEL_FORMAT = "cryounet-model"
FORMAT_VERSION = 1


@dataclass
class ModelInfo:
    """Everything stored next to the weights."""

    config: CryoUNetConfig
    diameter_px: float
    threshold: float
    validation: dict[str, float] = field(default_factory=dict)
    #: Threshold calibrated on the same validation data with test-time augmentation (TTA maps
    #: are smoother, so their best threshold differs); None when not calibrated.
    threshold_tta: float | None = None
    validation_tta: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {
            "format": MODEL_FORMAT,
            "format_version": FORMAT_VERSION,
            "cryounet_version": __version__,
            "diameter_px": self.diameter_px,
            "threshold": self.threshold,
            "validation": self.validation,
            "config": self.config.to_dict(),
        }
        if self.threshold_tta is not None:
            data["threshold_tta"] = self.threshold_tta
            data["validation_tta"] = self.validation_tta
        return data


def calibrated_threshold(infos: Sequence[ModelInfo], tta: bool) -> float:
    """The threshold ``--threshold auto`` picks at: the mean of the models' calibrated thresholds,
    those calibrated with test-time augmentation when ``tta`` (where a model has one)."""
    return float(np.mean([info.threshold_tta if tta and info.threshold_tta is not None
                          else info.threshold for info in infos]))


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
    """Write weights and config into ``folder`` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS_NAME, network)
    write_json(folder / CONFIG_NAME, info.to_json())


def read_model_info(folder: str | os.PathLike[str]) -> ModelInfo:
    """Read and check a model folder's ``config.json``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "model folder does not exist")
    config_path = folder / CONFIG_NAME
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(config_path, "model config is missing: not a CryoUNet model folder") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(config_path, f"model config is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise InputFileError(config_path, f"not a CryoUNet model config (format is not '{MODEL_FORMAT}')")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputFileError(config_path, f"format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise InputFileError(
            config_path, f"model format version {data['format_version']} is newer than this "
            f"CryoUNet ({__version__}) understands; upgrade CryoUNet"
        )
    try:
        return ModelInfo(
            config=CryoUNetConfig.from_dict(data["config"], source=f"{config_path}:config"),
            diameter_px=float(data["diameter_px"]),
            threshold=float(data["threshold"]),
            validation={k: float(v) for k, v in dict(data.get("validation", {})).items()},
            threshold_tta=None if data.get("threshold_tta") is None else float(data["threshold_tta"]),
            validation_tta={k: float(v) for k, v in dict(data.get("validation_tta", {})).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputFileError(config_path, f"model config is incomplete ({exc})") from None


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
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).splitlines()[:3])
        raise InputFileError(
            path, f"weights do not match the architecture in config.json ({detail})") from None


def load_model(folder: str | os.PathLike[str], device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the network of a model folder, load its weights and put it in eval mode."""
    folder = Path(folder)
    info = read_model_info(folder)
    network = build_model(info.config.model)
    load_weights(network, folder / WEIGHTS_NAME)
    network.to(device).eval()
    return LoadedModel(network, info, folder)


#: Folder (inside the package) of the general starting model, trained on several datasets.
GENERAL_MODEL = Path(__file__).resolve().parent / "weights" / "general"


def general_model_path() -> Path:
    """The shipped general starting model (``--init general``)."""
    if not (GENERAL_MODEL / WEIGHTS_NAME).is_file():
        raise CryoUNetError(f"no general starting model is installed (expected {GENERAL_MODEL})")
    return GENERAL_MODEL


def read_json_list(path: Path) -> list[dict[str, Any]]:
    """A JSON list file (history), or an empty list when it does not exist."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise CryoUNetError(f"{path}: expected a JSON list")
    return data
