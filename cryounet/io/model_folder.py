"""Model folders on disk: file names, the metadata stored next to the weights, reading it back.

A model folder is data, never code: ``model.safetensors`` (weights, see
:mod:`cryounet.models.weights`), ``config.json`` (:class:`ModelInfo`), ``history.json`` and
``validation_curve.json``. This module imports no torch, so the Scipion plugin reads model folders
through it without loading the network libraries.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cryounet import __version__
from cryounet.config import CryoUNetConfig
from cryounet.errors import CryoUNetError, InputFileError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
HISTORY_NAME = "history.json"
CURVE_NAME = "validation_curve.json"
#: Per-round record of a pseudo-labelled refinement (written by ``cryounet refine``).
REFINE_HISTORY_NAME = "refine_history.json"
#: Resume state of an interrupted training run (tensors and plain values, ``weights_only``).
CHECKPOINT_NAME = "checkpoint.pt"
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


#: Folder (inside the package) of the general starting model, trained on several datasets.
GENERAL_MODEL = Path(__file__).resolve().parents[1] / "weights" / "general"


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
