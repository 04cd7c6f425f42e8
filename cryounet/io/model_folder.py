"""Model folders on disk: file names, the metadata stored next to the weights, reading it back.

A model folder is data, never code: ``model.safetensors`` (weights, see
:mod:`cryounet.models.weights`), ``config.json`` (:class:`ModelInfo`), ``history.json`` and
``validation_curve.json``, and for fast CPU picking ``model.onnx`` (the same network as an ONNX
graph, written by training; see :mod:`cryounet.inference.onnx_picker`). This module imports no
torch, so the Scipion plugin reads model folders through it without loading the network libraries.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cryounet import __version__
from cryounet.config import LEGACY_TTA_SYMMETRIES, CryoUNetConfig
from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.atomic import write_json
from cryounet.io.folders import folder_of
from cryounet.io.json_files import parse_json, read_json
from cryounet.io.outputs import is_incomplete

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
#: The network as an ONNX graph for picking on the CPU without PyTorch (batch norms folded; a
#: derived copy of the weights, made by training; a folder without it picks with PyTorch).
ONNX_NAME = "model.onnx"
#: Keys of ``model.onnx``'s metadata: the SHA-256 of the ``model.safetensors`` it was made from and
#: the ``model`` section of the config.json it was made with (:func:`network_signature`; a graph that
#: does not match the folder's weights and network is not used), and the network's pooling multiple.
ONNX_WEIGHTS_KEY = "cryounet_weights_sha256"
ONNX_MULTIPLE_KEY = "cryounet_multiple"
ONNX_NETWORK_KEY = "cryounet_network"
CONFIG_NAME = "config.json"
#: Key of config.json holding ``{file name: SHA-256 hex}`` of the files a model folder picks with
#: (``model.safetensors``, and ``model.onnx`` once exported): a file that does not match is not
#: used (:func:`check_weights_digest`, :func:`recorded_digest`).
SHA256_KEY = "sha256"
#: The files whose SHA-256 the record holds.
HASHED_FILES = (WEIGHTS_NAME, ONNX_NAME)
HISTORY_NAME = "history.json"
CURVE_NAME = "validation_curve.json"
#: Per-round record of a pseudo-labelled refinement (written by ``cryounet refine``).
REFINE_HISTORY_NAME = "refine_history.json"
#: Resume state of an interrupted training run (tensors and plain values, ``weights_only``).
CHECKPOINT_NAME = "checkpoint.pt"
MODEL_FORMAT = "cryounet-model"
FORMAT_VERSION = 1
#: Files a model folder must hold to be usable.
REQUIRED_FILES = (CONFIG_NAME, WEIGHTS_NAME)
#: The main model's epoch count, written when it finished, for fold models of
#: ``train.fold_epochs = "main"`` (an interrupted run then resumes with the folds).
MAIN_EPOCHS_NAME = "main_epochs.json"
#: Files of a model folder that a finished model does not need (a copy may leave them out).
RESUME_FILES = (CHECKPOINT_NAME, MAIN_EPOCHS_NAME)
#: Cross-fitting fold models of ``train.calibration_folds`` (each a model folder of its own).
FOLD_PREFIX = "fold_"
#: What ``train`` and ``refine`` write in a model folder (the new files of these kinds make the
#: manifest of :mod:`cryounet.io.outputs`).
MODEL_PATTERNS = (WEIGHTS_NAME, ONNX_NAME, CONFIG_NAME, HISTORY_NAME, CURVE_NAME, REFINE_HISTORY_NAME, CHECKPOINT_NAME,
                  MAIN_EPOCHS_NAME, "round_*", FOLD_PREFIX + "*")


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
    #: How the thresholds were calibrated when not on the validation micrographs alone (cross-fitted
    #: over folds, :mod:`cryounet.training.crossfit`): numbers of folds, micrographs and picks, and
    #: the validation-only thresholds it replaced. Empty otherwise.
    calibration: dict[str, float] = field(default_factory=dict)
    #: CryoUNet version that wrote the folder (this one for a model being trained).
    cryounet_version: str = __version__
    #: SHA-256 (hex) of the folder's files by name (:data:`SHA256_KEY`); empty for a folder written
    #: before CryoUNet recorded them.
    sha256: dict[str, str] = field(default_factory=dict, compare=False)
    #: Where it was read from (for messages; not stored).
    source: str = field(default="this model", compare=False)

    @property
    def architecture(self) -> str:
        return self.config.model.architecture

    def to_json(self) -> dict[str, Any]:
        data = {
            "format": MODEL_FORMAT,
            "format_version": FORMAT_VERSION,
            "cryounet_version": self.cryounet_version,
            "diameter_px": self.diameter_px,
            "threshold": self.threshold,
            "validation": self.validation,
            "config": self.config.to_dict(),
        }
        if self.threshold_tta is not None:
            data["threshold_tta"] = self.threshold_tta
            data["validation_tta"] = self.validation_tta
        if self.calibration:
            data["calibration"] = self.calibration
        if self.sha256:
            data[SHA256_KEY] = dict(self.sha256)
        return data


#: How the automatic threshold is written on the command line (``--threshold auto``); inside the
#: engine it is ``None``.
AUTO_THRESHOLD = "auto"


def parse_threshold(text: str, option: str = "--threshold") -> float | None:
    """``auto`` -> None (the calibrated threshold), else a probability in [0, 1]."""
    if text.strip().lower() == AUTO_THRESHOLD:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CryoUNetError(f"{option} must be '{AUTO_THRESHOLD}' or a number, got {text!r}") from None
    if not 0 <= value <= 1:  # also refuses NaN
        raise CryoUNetError(f"{option} must be between 0 and 1 (a probability), got {value}")
    return value


def format_threshold(value: float | None) -> str:
    """The command-line form of a threshold: ``auto`` for None, else the probability."""
    return AUTO_THRESHOLD if value is None else f"{float(value):.6f}"


def picking_threshold(infos: Sequence[ModelInfo], tta: bool, explicit: float | None = None,
                      configured: float | None = None) -> float:
    """The threshold a pick runs at; the one rule for the CLI, the picker and the Scipion plugin.

    Args:
        infos: the models picking together (one, or an ensemble).
        tta: whether the pick uses test-time augmentation.
        explicit: a threshold the user gave for this run (``--threshold``, a form value); wins.
        configured: ``pick.threshold`` of the configuration in force; next.

    Returns:
        ``explicit``, else ``configured``, else the mean of the models' calibrated thresholds:
        those calibrated with test-time augmentation when ``tta`` (a model without one falls back
        to its plain threshold, with a warning).
    """
    if explicit is not None:
        return float(explicit)
    if configured is not None:
        return float(configured)
    if not infos:
        raise CryoUNetError("no model to take the calibrated threshold from")
    if tta:
        missing = [info.source for info in infos if info.threshold_tta is None]
        if missing:
            logger.warning("no threshold calibrated with test-time augmentation for %s; using the plain "
                           "one (retrain, or give --threshold)", ", ".join(missing))
    return float(np.mean([info.threshold_tta if tta and info.threshold_tta is not None
                          else info.threshold for info in infos]))


def _with_legacy_defaults(config: object) -> object:
    """A stored config with the values its model was calibrated with for settings added since it
    was written (a missing key would otherwise take today's default): ``pick.tta_symmetries``
    (8 up to CryoUNet 0.4.0) and ``target.separation`` (no borders before it existed)."""
    if not isinstance(config, dict) or not isinstance(config.get("pick", {}), dict) \
            or not isinstance(config.get("target", {}), dict):
        return config  # from_dict names what is wrong
    pick = dict(config.get("pick", {}))
    pick.setdefault("tta_symmetries", LEGACY_TTA_SYMMETRIES)
    target = dict(config.get("target", {}))
    target.setdefault("separation", "off")
    return {**config, "pick": pick, "target": target}


def read_model_info(folder: str | os.PathLike[str], allow_incomplete: bool = False) -> ModelInfo:
    """Read and check a model folder's ``config.json``.

    A folder whose training or refinement did not complete (killed, out of disk, still running) is
    refused unless ``allow_incomplete`` (``train --resume`` reads its own).
    """
    folder = folder_of(folder, "model folder")
    if not folder.is_dir():
        raise InputFileError(folder, "model folder does not exist")
    if not allow_incomplete and is_incomplete(folder):
        raise InputFileError(folder, "model folder of a training run that did not finish (interrupted, "
                             "or still running): continue it with cryounet train --resume, or train again")
    config_path = folder / CONFIG_NAME
    if not config_path.exists():
        raise InputFileError(config_path, "model config is missing: not a CryoUNet model folder")
    data = read_json(config_path, "model config")
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
        info = ModelInfo(
            config=CryoUNetConfig.from_dict(_with_legacy_defaults(data["config"]),
                                            source=f"{config_path}:config"),
            diameter_px=float(data["diameter_px"]),
            threshold=float(data["threshold"]),
            validation={k: float(v) for k, v in dict(data.get("validation", {})).items()},
            threshold_tta=None if data.get("threshold_tta") is None else float(data["threshold_tta"]),
            validation_tta={k: float(v) for k, v in dict(data.get("validation_tta", {})).items()},
            calibration={k: float(v) for k, v in dict(data.get("calibration", {})).items()},
            cryounet_version=str(data.get("cryounet_version", "")),
            sha256=_read_digests(data.get(SHA256_KEY, {}), config_path),
            source=str(folder),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputFileError(config_path, f"model config is incomplete ({exc})") from None
    if not (math.isfinite(info.diameter_px) and info.diameter_px > 0):
        raise InputFileError(config_path, f"diameter_px must be a positive number of pixels, got {info.diameter_px}")
    for key, value in (("threshold", info.threshold), ("threshold_tta", info.threshold_tta)):
        if value is not None and not 0 <= value <= 1:  # also refuses NaN
            raise InputFileError(config_path, f"{key} must be a probability between 0 and 1, got {value}")
    return info


def _read_digests(value: object, config_path: Path) -> dict[str, str]:
    """The ``sha256`` record of a config.json, checked: file names of :data:`HASHED_FILES` to
    64 hex digits."""
    if not isinstance(value, dict):
        raise InputFileError(config_path, f"'{SHA256_KEY}' must map file names to SHA-256 digests")
    for name, digest in value.items():
        if name not in HASHED_FILES or not isinstance(digest, str) or len(digest) != 64 \
                or any(c not in "0123456789abcdef" for c in digest):
            raise InputFileError(config_path, f"'{SHA256_KEY}' holds {name!r}: {digest!r}, not a file of "
                                              f"the model with its SHA-256 (64 hex digits)")
    return dict(value)


def check_model_folder(folder: str | os.PathLike[str]) -> list[str]:
    """Problems that make ``folder`` unusable as a model (an empty list when it is fine)."""
    folder = Path(folder)
    if str(folder) and folder.is_file():
        try:
            folder_of(folder, "model folder")
        except CryoUNetError as exc:
            return [str(exc)]
    if not str(folder) or not folder.is_dir():
        return [f"model folder {folder} does not exist"]
    missing = [f"model folder {folder} has no {name}" for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        return missing
    try:
        info = read_model_info(folder)
        check_weights_file(folder / WEIGHTS_NAME)
        check_weights_digest(folder, info, warn=False)
    except CryoUNetError as exc:
        return [str(exc)]
    return []


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(folder: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a model folder's ``model.safetensors``: what ties ``model.onnx`` to it."""
    return file_digest(Path(folder) / WEIGHTS_NAME)


def recorded_digest(folder: str | os.PathLike[str], info: ModelInfo, name: str) -> str | None:
    """Whether ``folder/name`` matches the SHA-256 its config.json records: None when it does, else
    why not (nothing recorded, or other bytes)."""
    path = Path(folder) / name
    recorded = info.sha256.get(name)
    if recorded is None:
        return f"{Path(folder) / CONFIG_NAME} records no SHA-256 of {name} (a folder written by an earlier CryoUNet)"
    if file_digest(path) != recorded:
        return f"{path} does not match the SHA-256 recorded in {Path(folder) / CONFIG_NAME} (damaged or replaced)"
    return None


def check_weights_digest(folder: str | os.PathLike[str], info: ModelInfo, warn: bool = True) -> None:
    """Refuse weights whose bytes differ from the SHA-256 config.json records; weights of a folder
    that records none are used, with a warning (when ``warn``) that names the command recording it.

    Raises:
        InputFileError: the weights are not the ones the folder recorded.
    """
    problem = recorded_digest(folder, info, WEIGHTS_NAME)
    if problem is None:
        return
    if WEIGHTS_NAME in info.sha256:
        raise InputFileError(Path(folder) / WEIGHTS_NAME, "does not match the SHA-256 recorded in its "
                             f"{CONFIG_NAME}: the weights are damaged or were replaced; copy the model "
                             "folder again, or retrain")
    if warn:
        logger.warning("%s; its weights cannot be checked (cryounet export --model %s records it)",
                       problem, folder)


def record_digests(folder: str | os.PathLike[str], names: Sequence[str]) -> None:
    """Record in ``folder/config.json`` the SHA-256 of each of ``names`` present in the folder
    (and drop the record of those absent); the rest of config.json is kept as it is."""
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    data = _read_json(config_path, "model config")
    if not isinstance(data, dict):
        raise InputFileError(config_path, "not a CryoUNet model config")
    digests = dict(_read_digests(data.get(SHA256_KEY, {}), config_path))
    for name in names:
        if (folder / name).is_file():
            digests[name] = file_digest(folder / name)
        else:
            digests.pop(name, None)
    data[SHA256_KEY] = digests
    write_json(config_path, data)


def network_signature(info: ModelInfo) -> str:
    """The network a model folder's config.json describes (its ``model`` section, as canonical
    JSON): what ``model.onnx`` must have been made with, besides the weights."""
    return json.dumps(dataclasses.asdict(info.config.model), sort_keys=True)


#: Largest safetensors JSON header accepted (a CryoUNet header is a few kB).
_MAX_HEADER_BYTES = 16 * 1024 * 1024


def check_weights_file(path: Path) -> None:
    """Check, without torch, that ``path`` is a complete safetensors file: an 8-byte header length,
    a JSON header, and tensor data that ends exactly at the end of the file (a truncated copy or
    another kind of file fails here, before any network is built).

    Raises:
        InputFileError: naming the file and what is wrong.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= length <= min(_MAX_HEADER_BYTES, size - 8):
            raise InputFileError(path, "is not a safetensors weights file (bad header)")
        try:
            header = parse_json(handle.read(length).decode("utf-8"), path, "safetensors header")
            ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
        except (UnicodeDecodeError, InputFileError, AttributeError, KeyError, TypeError, ValueError,
                IndexError):
            raise InputFileError(path, "is not a safetensors weights file (unreadable header)") from None
    if not ends:
        raise InputFileError(path, "holds no tensors")
    if max(ends) != size - 8 - length:
        raise InputFileError(path, f"is incomplete or damaged: its tensors need {max(ends) + 8 + length} "
                                   f"bytes, the file has {size}")


def fold_model_folders(folder: str | os.PathLike[str]) -> list[Path]:
    """The cross-fitting fold models inside a model folder (``fold_1``, ``fold_2``, ... of
    ``train.calibration_folds``), in order; an unusable one is left out with a warning."""
    folds = []
    for path in Path(folder).glob(FOLD_PREFIX + "*"):
        suffix = path.name[len(FOLD_PREFIX):]
        if path.is_dir() and suffix.isdigit():
            folds.append((int(suffix), path))
    usable = []
    for _, path in sorted(folds):
        problems = check_model_folder(path)
        if problems:
            logger.warning("%s: calibration fold model left out of the ensemble: %s", path, problems[0])
        else:
            usable.append(path)
    return usable


def picking_members(folders: Sequence[str | os.PathLike[str]], folds: bool) -> list[Path]:
    """The model folders that pick together (the one rule for the CLI and the Scipion plugin):
    each given folder, followed by its calibration fold models when ``folds`` (``pick.folds``)."""
    members = []
    for folder in folders:
        members.append(Path(folder))
        if folds:
            members += fold_model_folders(folder)
    return members


def list_model_folders(root: str | os.PathLike[str]) -> list[str]:
    """Names of the usable model folders directly inside ``root`` (a site's model library), sorted;
    folders that are not models, or are unfinished or damaged, are left out. An absent ``root``
    holds none."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(child.name for child in root.iterdir()
                  if child.is_dir() and not check_model_folder(child))


#: Folder (inside the package) of the general starting model, trained on several datasets.
GENERAL_MODEL = Path(__file__).resolve().parents[1] / "weights" / "general"


#: The name that stands for the shipped general model wherever a model folder is asked for.
GENERAL_NAME = "general"


def general_model_path() -> Path:
    """The shipped general starting model (``--model general``, ``--init general``)."""
    if not (GENERAL_MODEL / WEIGHTS_NAME).is_file():
        raise CryoUNetError(f"no general starting model is installed (expected {GENERAL_MODEL})")
    return GENERAL_MODEL


def is_general(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` names the shipped general model: the word ``general`` as typed (a string;
    a folder of that name is given as ``./general``) or its folder."""
    return (isinstance(model, str) and model == GENERAL_NAME) or Path(model).resolve() == GENERAL_MODEL


def resolve_model(model: str | os.PathLike[str]) -> Path:
    """The model folder ``model`` names: the shipped general model for the string ``general``
    (as typed on a command line or in a form), else the path; a file of a model folder
    (``model/model.safetensors``) names that folder (logged), any other file is refused.

    Raises:
        CryoUNetError: ``model`` is a file outside a model folder.
    """
    if isinstance(model, str) and model == GENERAL_NAME:
        return general_model_path()
    return folder_of(model, "model folder", is_model_file)


def is_model_file(path: Path) -> bool:
    """Whether ``path`` is a file in a model folder (one that holds every file of
    :data:`REQUIRED_FILES`): the file stands for that folder."""
    return all((Path(path).parent / name).is_file() for name in REQUIRED_FILES)


def check_general_diameter(models: Sequence[str | os.PathLike[str]], diameter: float | None,
                           option: str = "--diameter") -> None:
    """Refuse picking with the general model without the user's particle diameter: its own
    diameter is the one of the sets it was trained on, not the user's.

    Raises:
        CryoUNetError: a model is the general one and ``diameter`` is None.
    """
    if diameter is None and any(is_general(model) for model in models):
        own = read_model_info(GENERAL_MODEL).diameter_px
        raise CryoUNetError(f"the general model needs the particle diameter: give {option} (in pixels of "
                            f"your micrographs); its own {own:g} px is the diameter of the sets it was "
                            "trained on, not of yours")


def _read_json(path: Path, what: str) -> Any:
    return read_json(path, what)


def read_json_list(path: Path, what: str = "history") -> list[dict[str, Any]]:
    """A JSON list of records (training or refinement history), or [] when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    data = _read_json(path, what)
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise InputFileError(path, f"{what} should be a JSON list of records")
    return data


def read_main_epochs(folder: str | os.PathLike[str]) -> int | None:
    """The main model's best epoch count recorded when it finished (``train.fold_epochs = "main"``),
    or None when it has not finished."""
    path = Path(folder) / MAIN_EPOCHS_NAME
    if not path.is_file():
        return None
    data = _read_json(path, "the main model's epoch record")
    epochs = data.get("main_best_epoch") if isinstance(data, dict) else None
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise InputFileError(path, f"main_best_epoch must be a positive integer, got {epochs!r}; "
                                   "train again with --overwrite")
    return epochs


def write_main_epochs(folder: str | os.PathLike[str], epochs: int) -> None:
    """Record that the main model finished at best epoch ``epochs`` (a resume then skips it)."""
    write_json(Path(folder) / MAIN_EPOCHS_NAME, {"main_best_epoch": int(epochs)})


def read_history(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per-epoch training history of a model folder ([] when absent)."""
    return read_json_list(Path(folder) / HISTORY_NAME, "training history")


def read_refine_history(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per-round pseudo-labelling history of a refined model folder ([] when absent)."""
    return read_json_list(Path(folder) / REFINE_HISTORY_NAME, "refinement history")


def read_validation_curve(folder: str | os.PathLike[str]) -> dict[str, list[float]] | None:
    """Validation precision-recall curve of a model folder (lists by key), or None when absent."""
    path = Path(folder) / CURVE_NAME
    if not path.is_file():
        return None
    data = _read_json(path, "validation curve")
    missing = [key for key in ("thresholds", "precision", "recall") if not isinstance(data, dict) or key not in data]
    if missing:
        raise InputFileError(path, f"validation curve has no '{missing[0]}'")
    return data


#: ``train --init auto`` (Scipion: *Start from* automatic): start from the general model when fewer
#: micrographs than this are labelled, else from random weights. With one labelled micrograph a
#: start from another set's model gained F1 on both shared sets; with four it gained nothing
#: (docs/history: "Few picks, with and without a starting model").
AUTO_INIT_BELOW = 2
#: The word that asks for the automatic start.
AUTO_INIT = "auto"


def automatic_start(labelled_micrographs: int) -> str | None:
    """What ``--init auto`` starts from for this many labelled micrographs: ``general`` (the shipped
    general model) or None (random weights)."""
    return GENERAL_NAME if labelled_micrographs < AUTO_INIT_BELOW else None
