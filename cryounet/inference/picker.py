"""Picking one micrograph with a model or an ensemble: preprocessing, mean probability (spread as
uncertainty), peaks as picks in input pixels."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from cryounet.config import PickConfig
from cryounet.device import preferred_layout
from cryounet.errors import CryoUNetError
from cryounet.inference.predict import forward_precision, predict_probability, symmetries_together
from cryounet.io.coordinates import Picks
from cryounet.io.model_folder import picking_threshold
from cryounet.models.fusion import fold_batch_norms
from cryounet.models.weights import LoadedModel
from cryounet.postprocess.peaks import candidate_peaks
from cryounet.preprocess import Scale, preprocess

logger = logging.getLogger(__name__)

#: Smallest tile side the picker falls back to when the device runs out of memory.
MIN_TILE_SIZE = 256


@dataclass
class PickResult:
    """Picks of one micrograph (input pixels) and the maps they came from (working pixels)."""

    picks: Picks
    scale: Scale
    probability: np.ndarray
    spread: np.ndarray | None


class Picker:
    """Picks micrographs with one model or an ensemble (mean probability, spread as uncertainty).

    All models of an ensemble must share the particle diameter and preprocessing, so that their
    probability maps are on the same grid. The picker rewrites the networks of eval-mode models for
    inference (batch normalisations folded into their convolutions; channels-last on the CPU):
    pick with them, do not train or save them afterwards.
    """

    def __init__(self, models: Sequence[LoadedModel], pick: PickConfig,
                 device: torch.device | str = "cpu") -> None:
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
        for model in self.models:
            # One pass over each feature map instead of two, in the device's fastest layout (same
            # values to float32 rounding, BENCHMARKS.md "Speed"); the picker owns its networks now.
            if not model.network.training:
                fold_batch_norms(model.network)
            preferred_layout(model.network, device, inference=True)
        if torch.device(device).type == "cuda":
            # A picking run passes images of one size again and again: let cuDNN time its
            # algorithms once per size and keep the fastest (BENCHMARKS.md, "GPU").
            torch.backends.cudnn.benchmark = True
        self.pick = pick
        self.device = device
        #: TTA symmetries as one batch (:func:`symmetries_together`); off after running out of memory.
        self.together = symmetries_together(device)
        calibrated = sorted({m.info.config.pick.tta_symmetries for m in self.models})
        if pick.tta and calibrated != [pick.tta_symmetries]:
            logger.warning("test-time augmentation over %d symmetries, but the TTA thresholds of these "
                           "models were calibrated over %s: the automatic threshold may be off",
                           pick.tta_symmetries, " and ".join(map(str, calibrated)))
        self.diameter = first.info.diameter_px
        self.preprocess_cfg = first.info.config.preprocess

    def threshold(self, explicit: float | None = None) -> float:
        """The threshold this picker picks at (:func:`cryounet.io.model_folder.picking_threshold`):
        ``explicit``, else ``pick.threshold``, else the models' calibrated one for ``pick.tta``."""
        return picking_threshold([m.info for m in self.models], self.pick.tta, explicit, self.pick.threshold)

    def probability(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean probability over the ensemble (and its standard deviation when > 1 model).

        When the device runs out of memory, the pass is retried with less at once (see
        :meth:`_use_less_memory`), and the picker keeps that for the next micrographs."""
        while True:
            try:
                with forward_precision(self.device, self.pick.precision):
                    maps = [
                        predict_probability(m.network, image, self.pick.tile_size, self.pick.tile_overlap,
                                            self.pick.batch_size, self.pick.tta, self.device,
                                            self.pick.tta_symmetries, self.together)
                        for m in self.models
                    ]
                break
            except torch.cuda.OutOfMemoryError as exc:
                if not self._use_less_memory(exc):
                    raise
        if len(maps) == 1:
            return maps[0], None
        stack = np.stack(maps)
        return stack.mean(axis=0), stack.std(axis=0)

    def _use_less_memory(self, exc: Exception) -> bool:
        """After running out of device memory: TTA symmetries one after another, else half the
        tiles per pass, else tiles of half the side (not below 256 px); False when nothing is left
        to lower. Each step is logged: the picks are the same or, for smaller tiles, nearly so."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        reason = str(exc).splitlines()[0] if str(exc) else "out of memory"
        if self.together and self.pick.tta:
            self.together = False
            change = "test-time augmentation's symmetries now go through the network one after another"
        elif self.pick.batch_size > 1:
            self.pick.batch_size //= 2
            change = f"now {self.pick.batch_size} tile(s) per pass (pick.batch_size)"
        elif self.pick.tile_size > MIN_TILE_SIZE:
            self.pick.tile_size = max(MIN_TILE_SIZE, self.pick.tile_size // 2)
            change = f"now tiles of at most {self.pick.tile_size} px (pick.tile_size)"
        else:
            return False
        logger.warning("out of memory on %s (%s): %s", self.device, reason, change)
        return True

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
