"""Pseudo-labelled refinement: self-training on unlabelled micrographs.

Each round predicts every unlabelled micrograph with an ensemble of the latest round checkpoints
(the current model and its predecessors, test-time augmented by default), turns confident,
low-entropy peaks into pseudo-picks and confidently empty pixels into pseudo-negatives
(everything in between is ignored), and trains on labelled + pseudo-labelled micrographs starting
from the current weights. Thresholds start strict and relax linearly per round;
with the curriculum on, the most confident micrographs are used first. The labelled validation set
judges every round, and the best model (the input model included) is the result.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cryounet.config import CryoUNetConfig, RefineConfig
from cryounet.device import preferred_layout
from cryounet.errors import CryoUNetError
from cryounet.inference.predict import predict_probability
from cryounet.io.atomic import write_json
from cryounet.io.model_folder import (CONFIG_NAME, CURVE_NAME, HISTORY_NAME, ONNX_NAME, REFINE_HISTORY_NAME,
                                      WEIGHTS_NAME, ModelInfo)
from cryounet.models.onnx_export import export_onnx
from cryounet.models.weights import LoadedModel, load_weights, save_model
from cryounet.postprocess.peaks import find_peaks
from cryounet.training.data import LabelledMicrograph
from cryounet.training.loop import train
from cryounet.training.validation import validate

logger = logging.getLogger(__name__)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of a Bernoulli probability (0 = certain, 1 = a coin flip)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def round_thresholds(cfg: RefineConfig, round_index: int) -> tuple[float, float]:
    """``(positive, negative)`` thresholds of a round (0-based), relaxed linearly."""
    t = round_index / max(1, cfg.rounds - 1)
    positive = cfg.positive_start + t * (cfg.positive_end - cfg.positive_start)
    negative = cfg.negative_start + t * (cfg.negative_end - cfg.negative_start)
    return positive, negative


@dataclass
class PseudoLabels:
    """Pseudo-labels of one micrograph and how confident its map was overall."""

    item: LabelledMicrograph
    confidence: float


def pseudo_label(image_item: LabelledMicrograph, prob: np.ndarray, cfg: CryoUNetConfig,
                 positive: float, negative: float) -> PseudoLabels:
    """Pseudo-picks (peaks >= ``positive`` with low entropy) and a background weight map
    (1 where probability <= ``negative``, else 0) for one working-scale micrograph."""
    d = image_item.diameter
    xy, scores = find_peaks(prob, cfg.pick.nms_radius * d, positive)
    if len(xy):
        iy = np.round(xy[:, 1]).astype(int)
        ix = np.round(xy[:, 0]).astype(int)
        keep = binary_entropy(prob[iy, ix]) <= cfg.refine.max_entropy
        xy = xy[keep]
    background = (prob <= negative).astype(np.float32)
    # Confidence: the fraction of pixels whose label is sure either way.
    confidence = float(((prob <= negative) | (prob >= positive)).mean())
    item = LabelledMicrograph(image_item.name, image_item.image, xy, image_item.scale, d, background)
    return PseudoLabels(item, confidence)


def _ensemble_probabilities(network: torch.nn.Module, members: Sequence[Path],
                            unlabelled: Sequence[LabelledMicrograph], cfg: CryoUNetConfig,
                            device: torch.device) -> list[np.ndarray]:
    """Mean probability map of each unlabelled micrograph over the checkpoints ``members``."""
    probs = [np.zeros(item.image.shape, dtype=np.float32) for item in unlabelled]
    for weights in members:
        load_weights(network, weights)
        network.eval()
        for i, item in enumerate(unlabelled):
            probs[i] += predict_probability(network, item.image, cfg.pick.tile_size, cfg.pick.tile_overlap,
                                            cfg.pick.batch_size, cfg.refine.tta, device,
                                            cfg.pick.tta_symmetries) / len(members)
    return probs


def _round_micrographs(labels: list[PseudoLabels], rc: RefineConfig, round_index: int
                       ) -> tuple[list[LabelledMicrograph], list[str]]:
    """The pseudo-labelled micrographs a round trains on (the most confident first, as many as the
    curriculum allows, without those lacking pseudo-picks when ``skip_empty``), and the names of
    the used ones that had no pseudo-pick."""
    labels = sorted(labels, key=lambda pl: -pl.confidence)
    n_use = len(labels) if not rc.curriculum else max(1, int(np.ceil((round_index + 1) / rc.rounds * len(labels))))
    used = [pl.item for pl in labels[:n_use]]
    empty = [it.name for it in used if len(it.xy) == 0]
    if rc.skip_empty and empty:
        used = [it for it in used if len(it.xy)]
        logger.info("round %d: %d micrograph(s) without pseudo-picks left out: %s", round_index + 1,
                    len(empty), ", ".join(empty))
    return used, empty


def _copy_model_files(source: Path, output: Path) -> None:
    """Copy the model files of the chosen round into ``output``, each atomically; one the round
    lacks is removed from ``output`` (nothing of another network may stay beside its weights)."""
    for name in (WEIGHTS_NAME, ONNX_NAME, CONFIG_NAME, CURVE_NAME, HISTORY_NAME):
        if (source / name).is_file():
            shutil.copyfile(source / name, output / f".{name}.tmp")
            (output / f".{name}.tmp").replace(output / name)
        else:
            (output / name).unlink(missing_ok=True)


def refine(
    model: LoadedModel,
    labelled_train: Sequence[LabelledMicrograph],
    valid: Sequence[LabelledMicrograph],
    unlabelled: Sequence[LabelledMicrograph],
    cfg: CryoUNetConfig,
    output: Path,
    device: torch.device,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run the self-training rounds and write the best model (and ``refine_history.json``).

    Returns:
        One record per round (round 0 = the input model).
    """
    rc = cfg.refine
    cfg.validate("config")  # command-line overrides (e.g. --rounds) are applied after loading
    if not unlabelled:
        raise CryoUNetError("no unlabelled micrographs to pseudo-label")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    network = preferred_layout(model.network.to(device), device)
    base = validate(network, valid, cfg, device)
    history: list[dict[str, Any]] = [{
        "round": 0, "positive_threshold": None, "negative_threshold": None, "pseudo_positives": 0,
        "micrographs_used": 0, "micrographs_without_picks": 0, "valid_precision": base.precision,
        "valid_recall": base.recall, "valid_f1": base.f1, "valid_best_f1": base.best_f1,
        "threshold": base.threshold,
    }]
    logger.info("round 0 (input model): validation F1 %.3f (best over thresholds %.3f)", base.f1,
                base.best_f1)
    best_f1, best_dir = base.best_f1, None
    base_tta = validate(network, valid, cfg, device, tta=True)
    save_model(output / "round_0", network, ModelInfo(cfg, model.info.diameter_px, base.threshold,
                                                      base.metrics(), base_tta.threshold,
                                                      base_tta.metrics()))
    export_onnx(network, output / "round_0")
    write_json(output / "round_0" / CURVE_NAME, base.curve.as_dict())
    checkpoints = [output / "round_0" / WEIGHTS_NAME]
    for r in range(rc.rounds):
        positive, negative = round_thresholds(rc, r)
        probs = _ensemble_probabilities(network, checkpoints[-rc.checkpoint_ensemble:], unlabelled, cfg,
                                        device)
        labels = [pseudo_label(item, prob, cfg, positive, negative)
                  for item, prob in zip(unlabelled, probs)]
        used, empty = _round_micrographs(labels, rc, r)
        n_pseudo = sum(len(it.xy) for it in used)
        logger.info("round %d: thresholds %.3f / %.3f, %d pseudo-picks on %d of %d unlabelled "
                    "micrograph(s)", r + 1, positive, negative, n_pseudo, len(used), len(labels))
        round_cfg = cfg.updated({"train": {"epochs": rc.epochs_per_round, "warmup_epochs": 1,
                                           "patience": 0}})
        round_dir = output / f"round_{r + 1}"
        result = train(list(labelled_train) + used, valid, round_cfg, model.info.diameter_px,
                       round_dir, device, init_weights=checkpoints[-1], progress=progress)
        v = result.validation
        history.append({
            "round": r + 1, "positive_threshold": positive, "negative_threshold": negative,
            "pseudo_positives": n_pseudo, "micrographs_used": len(used),
            "micrographs_without_picks": len(empty),
            "valid_precision": v.precision, "valid_recall": v.recall, "valid_f1": v.f1,
            "valid_best_f1": v.best_f1, "threshold": v.threshold,
        })
        write_json(output / REFINE_HISTORY_NAME, history)
        checkpoints.append(round_dir / WEIGHTS_NAME)
        if v.best_f1 > best_f1 + 1e-4:
            best_f1, best_dir = v.best_f1, round_dir
    chosen = best_dir or output / "round_0"
    logger.info("best: %s (best validation F1 %.3f)", chosen.name, best_f1)
    _copy_model_files(chosen, output)
    write_json(output / REFINE_HISTORY_NAME, history)
    return history
