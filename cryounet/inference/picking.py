"""What every picker shares, whatever runs its networks: the ensemble's rules, the threshold,
preprocessing, and peaks as picks (no torch; :mod:`cryounet.inference.picker` runs the networks
with PyTorch, :mod:`cryounet.inference.onnx_picker` with ONNX Runtime)."""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from cryounet.config import PickConfig
from cryounet.errors import CryoUNetError
from cryounet.io.coordinates import Picks
from cryounet.io.model_folder import ModelInfo, picking_threshold
from cryounet.postprocess.peaks import candidate_peaks
from cryounet.preprocess import Scale, preprocess

logger = logging.getLogger(__name__)


class PickingModel(Protocol):
    """A network ready to pick with, its metadata and its folder."""

    info: ModelInfo
    path: Path


@dataclass
class PickResult:
    """Picks of one micrograph (input pixels) and the maps they came from (working pixels)."""

    picks: Picks
    scale: Scale
    probability: np.ndarray
    spread: np.ndarray | None


class BasePicker(ABC):
    """Picks micrographs with one model or an ensemble (mean probability, spread as uncertainty);
    subclasses compute the probability maps (:meth:`probability`).

    All models of an ensemble must share the particle diameter and preprocessing, so that their
    probability maps are on the same grid.
    """

    def __init__(self, models: Sequence[PickingModel], pick: PickConfig, diameter: float | None = None) -> None:
        """``diameter``: the particle diameter to pick at (px of the micrographs), None for the
        models' own (a general model, or micrographs of another pixel size, need another)."""
        if not models:
            raise CryoUNetError("no model given")
        first = models[0]
        for other in models[1:]:
            if other.info.diameter_px != first.info.diameter_px or \
                    other.info.config.preprocess != first.info.config.preprocess:
                raise CryoUNetError(
                    f"models {first.path} and {other.path} use different particle diameters or "
                    "preprocessing and cannot be combined in one ensemble"
                )
        self.models = list(models)
        self.pick = pick
        calibrated = sorted({m.info.config.pick.tta_symmetries for m in self.models})
        if pick.tta and calibrated != [pick.tta_symmetries]:
            logger.warning("test-time augmentation over %d symmetries, but the TTA thresholds of these "
                           "models were calibrated over %s: the automatic threshold may be off",
                           pick.tta_symmetries, " and ".join(map(str, calibrated)))
        self.diameter = first.info.diameter_px if diameter is None else float(diameter)
        self.preprocess_cfg = first.info.config.preprocess

    def threshold(self, explicit: float | None = None) -> float:
        """The threshold this picker picks at (:func:`cryounet.io.model_folder.picking_threshold`):
        ``explicit``, else ``pick.threshold``, else the models' calibrated one for ``pick.tta``."""
        return picking_threshold([m.info for m in self.models], self.pick.tta, explicit, self.pick.threshold)

    @abstractmethod
    def probability(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean probability over the ensemble (and its standard deviation when > 1 model)."""

    @staticmethod
    def combine(maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """The ensemble's mean map, and the members' standard deviation when there are several."""
        if len(maps) == 1:
            return maps[0], None
        stack = np.stack(maps)
        return stack.mean(axis=0), stack.std(axis=0)

    def prepare(self, micrograph: np.ndarray) -> tuple[np.ndarray, Scale]:
        """The working image of one micrograph and its :class:`Scale` (no network; safe to call
        from other threads while :meth:`probability` runs)."""
        return preprocess(micrograph, self.diameter, self.preprocess_cfg)

    def finish(self, prob: np.ndarray, spread: np.ndarray | None, scale: Scale,
               threshold: float | None) -> Picks:
        """Picks (input pixels) from the maps of :meth:`probability` (no network; thread-safe)."""
        return peaks_to_picks(prob, spread, scale, self.diameter, self.pick, threshold)

    def pick_image(self, micrograph: np.ndarray, threshold: float | None) -> PickResult:
        """Pick one micrograph (input pixels); ``threshold`` None keeps every candidate above
        ``min_score`` (for calibration and curves)."""
        image, scale = self.prepare(micrograph)
        prob, spread = self.probability(image)
        return PickResult(self.finish(prob, spread, scale, threshold), scale, prob, spread)


def peaks_to_picks(prob: np.ndarray, spread: np.ndarray | None, scale: Scale, diameter: float,
                   pick: PickConfig, threshold: float | None) -> Picks:
    """Peaks of a working-scale probability map as picks in input pixels."""
    working_diameter = diameter / scale.factors[0]
    min_score = pick.min_score if threshold is None else max(threshold, 1e-6)
    xy, scores = candidate_peaks(prob, working_diameter, pick, min_score)
    uncertainty = None
    if spread is not None:
        iy = np.clip(np.round(xy[:, 1]).astype(int), 0, prob.shape[0] - 1)
        ix = np.clip(np.round(xy[:, 0]).astype(int), 0, prob.shape[1] - 1)
        uncertainty = spread[iy, ix].astype(np.float64)
    return Picks(scale.to_input(xy), scores, uncertainty)
