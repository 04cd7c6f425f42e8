"""Validation of a network on labelled micrographs (F1 curve, calibrated threshold, AP, loss) and
hard-negative mining on the training micrographs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from cryounet.config import CryoUNetConfig
from cryounet.evaluation.metrics import MATCH_RADIUS, ThresholdCurve, average_precision, evaluate, threshold_curve
from cryounet.inference.predict import predict_probability
from cryounet.postprocess.peaks import candidate_peaks
from cryounet.training.data import LabelledMicrograph
from cryounet.training.targets import make_targets


@dataclass
class Validation:
    """Result of picking the validation micrographs with one network."""

    curve: ThresholdCurve
    threshold: float
    precision: float
    recall: float
    f1: float
    ap: float
    loss: float
    #: Highest F1 over all thresholds (what model selection compares; ``f1`` is at ``threshold``).
    best_f1: float

    def metrics(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "ap": self.ap,
                "best_f1": self.best_f1}


@dataclass
class Candidates:
    """Every candidate pick (score >= ``pick.min_score``) of some labelled micrographs, with their
    annotated picks: what a threshold is calibrated on (working pixels)."""

    preds: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    truths: list[np.ndarray] = field(default_factory=list)
    diameters: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def extend(self, other: "Candidates") -> "Candidates":
        """Pool ``other``'s micrographs into these (returns self)."""
        for name in ("preds", "scores", "truths", "diameters", "losses"):
            getattr(self, name).extend(getattr(other, name))
        return self

    @property
    def n_truth(self) -> int:
        return int(sum(len(t) for t in self.truths))


@torch.no_grad()
def pick_candidates(network: nn.Module, items: Sequence[LabelledMicrograph], cfg: CryoUNetConfig,
                    device: torch.device, loss_fn=None, tta: bool = False) -> Candidates:
    """Pick every micrograph of ``items`` with ``network`` (test-time augmentation when ``tta``),
    keeping every candidate; with ``loss_fn``, also the loss of each probability map."""
    network.eval()
    found = Candidates()
    for item in items:
        prob = predict_probability(network, item.image, cfg.pick.tile_size, cfg.pick.tile_overlap,
                                   cfg.pick.batch_size, tta, device, cfg.pick.tta_symmetries)
        xy, s = candidate_peaks(prob, item.diameter, cfg.pick, cfg.pick.min_score)
        found.preds.append(xy)
        found.scores.append(s)
        found.truths.append(item.xy)
        found.diameters.append(float(item.diameter))
        if loss_fn is not None:
            target, weight = make_targets(item.image.shape, item.xy, item.diameter, cfg.target)
            logit = torch.logit(torch.from_numpy(prob).clamp(1e-6, 1 - 1e-6))[None, None]
            found.losses.append(float(loss_fn(logit, torch.from_numpy(target)[None, None],
                                              torch.from_numpy(weight)[None, None])))
    return found


def calibrate(found: Candidates, tolerance: float) -> Validation:
    """The threshold calibrated on the pooled F1 curve of ``found`` (middle of the near-best
    plateau, :meth:`ThresholdCurve.calibrated_index`), with P/R/F1 there, best F1, AP and mean loss."""
    preds, scores, truths = found.preds, found.scores, found.truths
    radius = MATCH_RADIUS * float(np.mean(found.diameters))
    curve = threshold_curve(preds, scores, truths, radius)
    if len(curve.thresholds) == 0:
        result = evaluate([np.zeros((0, 2))] * len(truths), truths, radius)
        threshold, best = 0.5, result.f1
    else:
        threshold = float(curve.thresholds[curve.calibrated_index(tolerance)])
        result = evaluate([p[s >= threshold] for p, s in zip(preds, scores)], truths, radius)
        best = float(curve.f1.max())
    ap = average_precision(preds, scores, truths, radius)
    return Validation(curve, threshold, result.precision, result.recall, result.f1, ap,
                      float(np.mean(found.losses)) if found.losses else float("nan"), best)


def validate(network: nn.Module, items: Sequence[LabelledMicrograph], cfg: CryoUNetConfig,
             device: torch.device, loss_fn=None, tta: bool = False) -> Validation:
    """Pick every validation micrograph and calibrate the threshold on the pooled F1 curve
    (middle of the near-best plateau, ``train.calibration_tolerance``), with test-time
    augmentation when ``tta``."""
    return calibrate(pick_candidates(network, items, cfg, device, loss_fn, tta), cfg.train.calibration_tolerance)


@torch.no_grad()
def mine_hard_negatives(network: nn.Module, items: Sequence[LabelledMicrograph], cfg: CryoUNetConfig,
                        device: torch.device, level: float = 0.5) -> list[np.ndarray]:
    """Peaks above ``level`` with no pick within the matching radius: the model's false positives
    on each training micrograph (working pixels)."""
    from scipy.spatial import cKDTree

    network.eval()
    mined = []
    for item in items:
        prob = predict_probability(network, item.image, cfg.pick.tile_size, cfg.pick.tile_overlap,
                                   cfg.pick.batch_size, False, device)
        xy, _ = candidate_peaks(prob, item.diameter, cfg.pick, level)
        if len(xy) and len(item.xy):
            dist, _ = cKDTree(item.xy).query(xy)
            xy = xy[dist >= MATCH_RADIUS * item.diameter]
        mined.append(xy)
    return mined
