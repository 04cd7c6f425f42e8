"""Picking on the CPU with ONNX Runtime, without importing PyTorch (``pick.backend``).

A model folder's ``model.onnx`` (written by training, :mod:`cryounet.models.onnx_export`) is the
same network as its ``model.safetensors``. ONNX Runtime imports in 0.1 s where torch takes over
1 s, and computes no slower: a cold single pick of a 4k micrograph took 0.55x PyTorch's wall time
without test-time augmentation and 0.8x with it, a warm batch with it the same time (2 cores,
docs/history: "ONNX Runtime on the CPU"). The maps equal PyTorch's to float32 rounding, tiling
and test-time augmentation included, so the calibrated thresholds hold. A graph is used only when
its bytes match the SHA-256 the folder's config.json records, and it was made from the folder's
weights (their SHA-256) for the network config.json describes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.special import expit

from cryounet.config import PickConfig
from cryounet.errors import CryoUNetError, InputFileError
from cryounet.inference.picking import BasePicker
from cryounet.limits import check_thread_room
from cryounet.inference.tiling import dihedral, dihedral_inverse, pad_to_multiple, predict_tiled, tta_symmetries
from cryounet.io.model_folder import (CONFIG_NAME, ONNX_MULTIPLE_KEY, ONNX_NAME, ONNX_NETWORK_KEY, ONNX_WEIGHTS_KEY,
                                      WEIGHTS_NAME, ModelInfo, check_weights_digest, network_signature,
                                      read_model_info, recorded_digest, weights_digest)

logger = logging.getLogger(__name__)


def runtime_version() -> str | None:
    """The installed ONNX Runtime's version, or None when it cannot be imported."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return str(onnxruntime.__version__)


class OnnxNetwork:
    """A ``model.onnx`` in an ONNX Runtime session: logits of ``(n, 1, ny, nx)`` float32 images of
    any size (padded to the pooling multiple as the PyTorch network pads, and cropped back)."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime

        check_thread_room(threads)  # a pool that cannot be created makes ONNX Runtime hang
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle threads sleep instead of spinning: the same wall time for one micrograph, 5 % less in
        # a batch (the spinning stole the core that preprocessing and peak finding run on), and no
        # CPU burnt between micrographs on a shared node (docs/history: "ONNX Runtime on the CPU").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise InputFileError(path, f"ONNX Runtime cannot load it ({str(exc).splitlines()[0][:300]}); "
                                       "remove it to pick with PyTorch") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.multiple = int(meta[ONNX_MULTIPLE_KEY])
        except (KeyError, ValueError):
            raise InputFileError(path, f"not a CryoUNet graph (no {ONNX_MULTIPLE_KEY} in its metadata)") from None
        self.weights_sha256 = meta.get(ONNX_WEIGHTS_KEY, "")
        self.network_signature = meta.get(ONNX_NETWORK_KEY, "")
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        ny, nx = batch.shape[-2:]
        padded = np.ascontiguousarray(pad_to_multiple(batch, self.multiple), dtype=np.float32)
        return self.session.run(None, {self.input: padded})[0][..., :ny, :nx]


@dataclass
class OnnxModel:
    """A model folder's ONNX network, with its metadata and origin."""

    network: OnnxNetwork
    info: ModelInfo
    path: Path


class OnnxUnusable(CryoUNetError):
    """A model folder cannot pick with ONNX Runtime (no ``model.onnx``, an unreadable one, or one
    made from other weights or for another network); PyTorch may still pick with it.

    Attributes:
        anomaly: the graph is damaged or does not belong to the folder (see ``__init__``).
        reason: what is wrong, without the advice that ``str()`` adds for a graph that ``cryounet
            export --overwrite`` can rewrite (``rewrite``: that folder).
    """

    def __init__(self, reason: str, rewrite: Path | None = None, anomaly: bool = False) -> None:
        self.reason = reason
        #: Something is wrong with a graph that should match (damaged, replaced): a warning, and
        #: ``cryounet export`` needs ``--overwrite`` to replace it.
        self.anomaly = anomaly
        super().__init__(reason if rewrite is None
                         else f"{reason} (cryounet export --model {rewrite} --overwrite rewrites it)")


def load_onnx_model(folder: str | os.PathLike[str], threads: int) -> OnnxModel:
    """The ONNX network of a model folder, after checking that its bytes match the SHA-256 its
    config.json records, and that it was made from the folder's weights (which must match their
    recorded SHA-256) for the network config.json describes.

    Raises:
        OnnxUnusable: why this folder cannot pick with ONNX Runtime.
    """
    folder = Path(folder)
    info = read_model_info(folder)
    path = folder / ONNX_NAME
    if not (folder / WEIGHTS_NAME).is_file():
        raise InputFileError(folder / WEIGHTS_NAME, "model weights are missing")
    if not path.is_file():
        raise OnnxUnusable(f"{folder} has no {ONNX_NAME} (a model trained with CryoUNet 0.4 or earlier: "
                           f"cryounet export --model {folder} writes it)")
    check_weights_digest(folder, info)
    problem = recorded_digest(folder, info, ONNX_NAME)
    if problem is not None:
        if ONNX_NAME in info.sha256:
            raise OnnxUnusable(problem, folder, anomaly=True)
        raise OnnxUnusable(f"{problem}: cryounet export --model {folder} writes the graph again and records it")
    try:
        network = OnnxNetwork(path, threads)
    except InputFileError as exc:
        raise OnnxUnusable(str(exc), anomaly=True) from None
    if network.weights_sha256 != weights_digest(folder):
        raise OnnxUnusable(f"{path} was made from other weights than {folder / WEIGHTS_NAME}", folder, anomaly=True)
    if not network.network_signature:
        raise OnnxUnusable(f"{path} does not record the network it was made for (an earlier export "
                           "format)", folder, anomaly=True)
    if network.network_signature != network_signature(info):
        raise OnnxUnusable(f"{path} was made for another network than {folder / CONFIG_NAME} describes",
                           anomaly=True)
    return OnnxModel(network, info, folder)


def predict_probability_onnx(network: OnnxNetwork, image: np.ndarray, pick: PickConfig) -> np.ndarray:
    """Particle-centre probability of a working-scale image: the same map as
    :func:`cryounet.inference.predict.predict_probability` with PyTorch (tiles, test-time
    augmentation over ``pick.tta_symmetries``), to float32 rounding."""
    image = np.asarray(image, dtype=np.float32)

    def probability(batch: np.ndarray) -> np.ndarray:
        if not pick.tta:
            return expit(network(batch[:, None])[:, 0])
        ks = tta_symmetries(pick.tta_symmetries)
        total = np.zeros(batch.shape, dtype=np.float32)
        for k in ks:
            total += dihedral_inverse(expit(network(dihedral(batch, k)[:, None])[:, 0]), k)
        return total / len(ks)

    return predict_tiled(probability, image, network.multiple, pick.tile_size, pick.tile_overlap,
                         pick.batch_size)


class OnnxPicker(BasePicker):
    """Picks micrographs with ONNX networks on the CPU (one model or an ensemble)."""

    def __init__(self, models: Sequence[OnnxModel], pick: PickConfig, diameter: float | None = None) -> None:
        if pick.precision != "float32":
            raise CryoUNetError(f"pick.precision {pick.precision} needs the PyTorch backend "
                                "(--backend torch); ONNX Runtime picks in float32")
        super().__init__(models, pick, diameter)

    def probability(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.combine([predict_probability_onnx(m.network, image, self.pick) for m in self.models])
