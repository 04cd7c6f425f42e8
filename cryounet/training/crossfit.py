"""Cross-fitted threshold calibration (``train.calibration_folds``): the picking threshold from
every labelled micrograph, each picked by a model that did not train on it.

Calibrating on the validation micrographs alone rests on few picks (one micrograph of 87 on
cryoppp-10028), and the threshold it gives moves with them. With ``K`` folds the labelled
micrographs are shared out: the validation micrographs are fold 0 and the training micrographs go
round-robin into folds 1 .. K-1. For each of those a fold model is trained with the same recipe on
every other labelled micrograph into ``OUTPUT/fold_J``, early-stopped on its own fold
(``train.fold_epochs = "own"``) or for exactly the main model's best epoch count (``"main"``: the
held-out fold then chooses nothing, and no fold pays for a patience tail); the main model is
trained as before. Each fold is then picked by the model that did not see it (fold 0 by
the main model) and the thresholds, plain and with test-time augmentation, are calibrated on all
folds' candidates pooled. They replace the main model's validation-only thresholds (kept in its
``calibration`` record), and its ``validation`` metrics become the cross-fitted ones.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from cryounet.config import CryoUNetConfig, check_calibration_folds
from cryounet.device import preferred_layout
from cryounet.errors import CryoUNetError
from cryounet.io.atomic import write_json
from cryounet.io.model_folder import (CHECKPOINT_NAME, CONFIG_NAME, FOLD_PREFIX, MODEL_PATTERNS, WEIGHTS_NAME,
                                      read_model_info)
from cryounet.io.outputs import claim_output_folder, is_incomplete, read_marker
from cryounet.models.registry import build_model
from cryounet.models.weights import load_weights
from cryounet.training.data import LabelledMicrograph
from cryounet.training.distributed import Distributed
from cryounet.training.validation import Candidates, Validation, calibrate, pick_candidates

logger = logging.getLogger(__name__)


@dataclass
class Fold:
    """One cross-fitting fold: the micrographs its model trains and stops on, and those it holds out."""

    index: int
    train: list[LabelledMicrograph]
    held_out: list[LabelledMicrograph]

    def folder(self, output: Path) -> Path:
        return output / f"{FOLD_PREFIX}{self.index}"


def make_folds(train_items: Sequence[LabelledMicrograph], valid_items: Sequence[LabelledMicrograph],
               k: int, train_only: Sequence[LabelledMicrograph] = ()) -> list[Fold]:
    """Folds 1 .. k-1 (fold 0, the validation micrographs, is the main model's): the training
    micrographs round-robin; each fold model trains on all other labelled micrographs, the
    ``train_only`` ones (never held out) included."""
    if k < 2:
        raise CryoUNetError(f"train.calibration_folds must be at least 2 to cross-fit, got {k}")
    check_calibration_folds(k, len(train_items))
    folds = []
    for j in range(1, k):
        held = [item for i, item in enumerate(train_items) if i % (k - 1) == j - 1]
        rest = [item for i, item in enumerate(train_items) if i % (k - 1) != j - 1]
        folds.append(Fold(j, rest + list(valid_items) + list(train_only), held))
    return folds


def _fold_done(folder: Path) -> bool:
    marker = read_marker(folder)
    return marker is not None and not is_incomplete(folder) and (folder / WEIGHTS_NAME).is_file()


def train_folds(folds: Sequence[Fold], cfg: CryoUNetConfig, diameter_px: float, output: Path,
                device: torch.device, resume: bool = False, init_weights: Path | None = None,
                progress: bool = True, world: Distributed | None = None, stop_after: int | None = None) -> None:
    """Train every fold's model into ``OUTPUT/fold_J`` (each a model folder with its own marker),
    early-stopped on its held-out fold, or for exactly ``stop_after`` epochs keeping the last.
    With ``resume``, finished folds are kept and an interrupted one continues from its checkpoint."""
    from cryounet.training.loop import train

    world = world or Distributed()
    fold_cfg = cfg.updated({"train": {"calibration_folds": 0}})
    # Every process decides the same plan before any of them writes.
    plan = [(fold, resume and _fold_done(fold.folder(output)),
             resume and (fold.folder(output) / CHECKPOINT_NAME).is_file()) for fold in folds]
    for fold, done, has_checkpoint in plan:
        where = fold.folder(output)
        label = f"calibration fold {fold.index}/{len(folds)}"
        if done:
            logger.info("%s: kept from the interrupted run (%s)", label, where)
            continue
        logger.info("%s: training on %d micrograph(s)%s, holding out %s", label, len(fold.train),
                    "" if stop_after is None else f" for {stop_after} epoch(s) (the main model's best)",
                    ", ".join(item.name for item in fold.held_out))
        claimed = claim_output_folder(where, "train", resume=has_checkpoint, overwrite=not has_checkpoint,
                                      patterns=MODEL_PATTERNS) if world.is_main else None
        world.decision(False, device)  # the folder exists before any process trains into it
        train(fold.train, fold.held_out, fold_cfg, diameter_px, where, device, resume=has_checkpoint,
              init_weights=init_weights, progress=progress, world=world, stop_after=stop_after)
        if claimed is not None:
            claimed.complete()


def _network(folder: Path, cfg: CryoUNetConfig, device: torch.device) -> torch.nn.Module:
    network = preferred_layout(build_model(cfg.model).to(device), device)
    load_weights(network, folder / WEIGHTS_NAME)
    return network.eval()


def cross_fitted(output: Path, folds: Sequence[Fold], valid_items: Sequence[LabelledMicrograph],
                 cfg: CryoUNetConfig, device: torch.device) -> tuple[Validation, Validation]:
    """Calibrate on every fold picked by the model that did not train on it (fold 0, the validation
    micrographs, by the main model in ``output``); returns (plain, with test-time augmentation)."""
    pairs = [(output, list(valid_items))] + [(fold.folder(output), fold.held_out) for fold in folds]
    plain, tta = Candidates(), Candidates()
    for folder, items in pairs:
        network = _network(folder, cfg, device)
        plain.extend(pick_candidates(network, items, cfg, device))
        tta.extend(pick_candidates(network, items, cfg, device, tta=True))
    tolerance = cfg.train.calibration_tolerance
    return calibrate(plain, tolerance), calibrate(tta, tolerance)


def apply_cross_fitted(output: Path, folds: Sequence[Fold], valid_items: Sequence[LabelledMicrograph],
                       cfg: CryoUNetConfig, device: torch.device) -> Validation:
    """Replace the main model's thresholds and validation metrics in ``OUTPUT/config.json`` by the
    cross-fitted ones; returns the plain cross-fitted validation."""
    plain, tta = cross_fitted(output, folds, valid_items, cfg, device)
    info = read_model_info(output, allow_incomplete=True)
    # A resumed run may find the cross-fitted values already written: keep the validation-only ones.
    before = info.calibration or {}
    validation_only = before.get("validation_only_threshold", info.threshold)
    validation_only_tta = before.get("validation_only_threshold_tta", info.threshold_tta)
    n_micrographs = len(valid_items) + sum(len(f.held_out) for f in folds)
    n_picks = sum(len(i.xy) for i in valid_items) + sum(len(i.xy) for f in folds for i in f.held_out)
    info.calibration = {
        "folds": float(len(folds) + 1),
        "micrographs": float(n_micrographs),
        "picks": float(n_picks),
        "validation_only_threshold": validation_only,
    }
    if validation_only_tta is not None:
        info.calibration["validation_only_threshold_tta"] = validation_only_tta
    info.threshold, info.validation = plain.threshold, plain.metrics()
    info.threshold_tta, info.validation_tta = tta.threshold, tta.metrics()
    write_json(output / CONFIG_NAME, info.to_json())
    logger.info("cross-fitted calibration over %d folds (%d micrographs, %d picks): threshold %.3f "
                "(validation alone: %.3f), with test-time augmentation %.3f (%s); F1 %.3f, AP %.3f",
                len(folds) + 1, n_micrographs, n_picks, plain.threshold,
                info.calibration["validation_only_threshold"], tta.threshold,
                f"{info.calibration['validation_only_threshold_tta']:.3f}"
                if "validation_only_threshold_tta" in info.calibration else "none before",
                tta.f1, tta.ap)
    return plain
