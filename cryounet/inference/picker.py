"""Picking with PyTorch networks (any device): :class:`Picker` computes the probability maps of a
model or an ensemble; the rest is :class:`cryounet.inference.picking.BasePicker`'s."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from cryounet.config import PickConfig
from cryounet.device import preferred_layout
from cryounet.inference.picking import BasePicker
from cryounet.inference.predict import forward_precision, predict_probability, symmetries_together
from cryounet.models.fusion import fold_batch_norms
from cryounet.models.weights import LoadedModel

logger = logging.getLogger(__name__)

#: Smallest tile side the picker falls back to when the device runs out of memory.
MIN_TILE_SIZE = 256


class Picker(BasePicker):
    """Picks micrographs with one PyTorch model or an ensemble (mean probability, spread as
    uncertainty), on ``device``.

    The picker rewrites the networks of eval-mode models for inference (batch normalisations
    folded into their convolutions; channels-last on the CPU): pick with them, do not train or save
    them afterwards.
    """

    def __init__(self, models: Sequence[LoadedModel], pick: PickConfig,
                 device: torch.device | str = "cpu", diameter: float | None = None) -> None:
        super().__init__(models, pick, diameter)
        for model in self.models:
            # One pass over each feature map instead of two, in the device's fastest layout (same
            # values to float32 rounding, docs/history: "Folded batch norms"); the picker owns its networks now.
            if not model.network.training:
                fold_batch_norms(model.network)
            preferred_layout(model.network, device, inference=True)
        if torch.device(device).type == "cuda":
            # A picking run passes images of one size again and again: let cuDNN time its
            # algorithms once per size and keep the fastest (docs/history: "GPU").
            torch.backends.cudnn.benchmark = True
        self.device = device
        #: TTA symmetries as one batch (:func:`symmetries_together`); off after running out of memory.
        self.together = symmetries_together(device)

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
        return self.combine(maps)

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
