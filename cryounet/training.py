"""Training loop: patches, augmentation, AdamW, warm-up + cosine, validation F1, early stopping.

Every epoch ends with a validation pass that picks the validation micrographs and matches them to
their picks (:mod:`cryounet.metrics`); the best epoch by validation F1 is kept, with the score
threshold that gave it (threshold calibration). ``checkpoint.pt`` (tensors and plain values only,
loaded with ``weights_only=True``) lets an interrupted run resume where it stopped; random streams
are re-seeded from ``(seed, epoch)`` so a resumed run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cryounet.augment import build_augmenter
from cryounet.config import CryoUNetConfig
from cryounet.data import LabelledMicrograph, PatchSampler
from cryounet.errors import CryoUNetError
from cryounet.inference import candidate_peaks, predict_probability
from cryounet.losses import build_loss
from cryounet.metrics import ThresholdCurve, average_precision, evaluate, threshold_curve
from cryounet.modelio import (CURVE_NAME, HISTORY_NAME, ModelInfo, load_weights, read_json_list,
                              save_model, write_json)
from cryounet.models import build_model
from cryounet.targets import describe_negatives, make_targets

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
#: Matching radius as a fraction of the particle diameter (CryoPPP convention).
MATCH_RADIUS = 0.5


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


@torch.no_grad()
def validate(network: nn.Module, items: Sequence[LabelledMicrograph], cfg: CryoUNetConfig,
             device: torch.device, loss_fn=None, tta: bool = False) -> Validation:
    """Pick every validation micrograph and calibrate the threshold on the pooled F1 curve
    (middle of the near-best plateau, ``train.calibration_tolerance``), with test-time
    augmentation when ``tta``."""
    network.eval()
    preds, scores, truths, losses = [], [], [], []
    for item in items:
        prob = predict_probability(network, item.image, cfg.pick.tile_size, cfg.pick.tile_overlap,
                                   cfg.pick.batch_size, tta, device)
        xy, s = candidate_peaks(prob, item.diameter, cfg.pick, cfg.pick.min_score)
        preds.append(xy)
        scores.append(s)
        truths.append(item.xy)
        if loss_fn is not None:
            target, weight = make_targets(item.image.shape, item.xy, item.diameter, cfg.target)
            logit = torch.logit(torch.from_numpy(prob).clamp(1e-6, 1 - 1e-6))[None, None]
            losses.append(float(loss_fn(logit, torch.from_numpy(target)[None, None],
                                        torch.from_numpy(weight)[None, None])))
    radius = MATCH_RADIUS * float(np.mean([it.diameter for it in items]))
    curve = threshold_curve(preds, scores, truths, radius)
    if len(curve.thresholds) == 0:
        result = evaluate([np.zeros((0, 2))] * len(truths), truths, radius)
        threshold, best = 0.5, result.f1
    else:
        threshold = float(curve.thresholds[curve.calibrated_index(cfg.train.calibration_tolerance)])
        result = evaluate([p[s >= threshold] for p, s in zip(preds, scores)], truths, radius)
        best = float(curve.f1.max())
    ap = average_precision(preds, scores, truths, radius)
    return Validation(curve, threshold, result.precision, result.recall, result.f1, ap,
                      float(np.mean(losses)) if losses else float("nan"), best)


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


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate: linear warm-up, then cosine decay (or constant)."""
    if schedule not in ("cosine", "constant"):
        raise CryoUNetError(f"unknown schedule '{schedule}' (cosine or constant)")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    best_epoch: int
    validation: Validation | None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


class WeightAverage:
    """Exponential moving average of a network's weights (buffers such as BatchNorm statistics are
    copied), used for validation and the saved model when ``train.ema_decay`` > 0."""

    def __init__(self, network: nn.Module, decay: float) -> None:
        import copy

        self.decay = decay
        self.network = copy.deepcopy(network).eval()
        for p in self.network.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        for avg, p in zip(self.network.parameters(), network.parameters()):
            avg.lerp_(p, 1.0 - self.decay)
        for avg, b in zip(self.network.buffers(), network.buffers()):
            avg.copy_(b)


def _seed_everything(seed: int, epoch: int) -> np.random.Generator:
    torch.manual_seed(seed * 100_003 + epoch)
    return np.random.default_rng([seed, epoch])


def train(
    train_items: Sequence[LabelledMicrograph],
    valid_items: Sequence[LabelledMicrograph],
    cfg: CryoUNetConfig,
    diameter_px: float,
    output: Path,
    device: torch.device,
    resume: bool = False,
    init_weights: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a model and write its folder (best weights, config with threshold, history, curve).

    Args:
        train_items: labelled micrographs to sample patches from.
        valid_items: labelled micrographs for validation F1 and threshold calibration.
        cfg: full configuration.
        diameter_px: particle diameter in input pixels (stored with the model).
        output: model folder.
        device: where to train.
        resume: continue from ``output/checkpoint.pt``.
        init_weights: safetensors weights to start from (same architecture).
        progress: show a tqdm progress bar.
    """
    from tqdm import tqdm

    tc = cfg.train
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tc.seed)
    network = build_model(cfg.model).to(device)
    if init_weights is not None:
        load_weights(network, init_weights)
        logger.info("initialised weights from %s", init_weights)
    optimizer = torch.optim.AdamW(network.parameters(), lr=tc.learning_rate, weight_decay=tc.weight_decay)
    total_steps = tc.epochs * tc.steps_per_epoch
    warmup_steps = tc.warmup_epochs * tc.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup_steps, total_steps, tc.schedule))
    loss_fn = build_loss(cfg.loss)
    patch = int(math.ceil(tc.patch_size / network.multiple) * network.multiple)

    history: list[dict[str, Any]] = []
    best_f1, best_epoch, stale, start_epoch = -1.0, -1, 0, 0
    best_validation: Validation | None = None
    checkpoint_path = output / CHECKPOINT_NAME
    if resume:
        if not checkpoint_path.is_file():
            raise CryoUNetError(f"{checkpoint_path}: no checkpoint to resume from")
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        network.load_state_dict(state["model"])
        resumed_average = state.get("average")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        best_f1, best_epoch, stale = float(state["best_f1"]), int(state["best_epoch"]), int(state["stale"])
        history = read_json_list(output / HISTORY_NAME)[:start_epoch]
        logger.info("resuming after epoch %d (best validation F1 %.3f at epoch %d)",
                    start_epoch, best_f1, best_epoch + 1)

    average = WeightAverage(network, tc.ema_decay) if tc.ema_decay > 0 else None
    if average is not None and resume and resumed_average is not None:
        average.network.load_state_dict(resumed_average)
    evaluated = average.network if average is not None else network
    logger.info("training %s on %d micrograph(s) (%d picks), validating on %d (%d picks); %s",
                cfg.model.architecture, len(train_items), sum(len(i.xy) for i in train_items),
                len(valid_items), sum(len(i.xy) for i in valid_items), describe_negatives(cfg.target))
    t_start = time.monotonic()
    stopped_early = False
    for epoch in range(start_epoch, tc.epochs):
        t_epoch = time.monotonic()
        rng = _seed_everything(tc.seed, epoch)
        hard = None
        if tc.hard_negative_fraction > 0 and epoch + 1 >= tc.hard_negative_start:
            hard = mine_hard_negatives(network, train_items, cfg, device)
            logger.debug("epoch %d: %d hard negatives mined", epoch + 1, sum(len(h) for h in hard))
        sampler = PatchSampler(list(train_items), cfg, patch, rng, hard)
        augment = build_augmenter(cfg.augment, seed=int(rng.integers(2**31)))
        network.train()
        losses = []
        bar = tqdm(range(tc.steps_per_epoch), desc=f"epoch {epoch + 1}/{tc.epochs}", leave=False,
                   disable=not progress, unit="step")
        for _ in bar:
            batch = [augment(*sampler.sample()) for _ in range(tc.batch_size)]
            images, targets, weights = (torch.from_numpy(np.stack(a))[:, None].to(device)
                                        for a in zip(*batch))
            loss = loss_fn(network(images), targets, weights)
            if not torch.isfinite(loss):
                raise CryoUNetError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                                    "lower train.learning_rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if average is not None:
                average.update(network)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
        validation = validate(evaluated, valid_items, cfg, device, loss_fn)
        record = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "valid_loss": validation.loss,
            "valid_precision": validation.precision,
            "valid_recall": validation.recall,
            "valid_f1": validation.f1,
            "valid_best_f1": validation.best_f1,
            "valid_ap": validation.ap,
            "threshold": validation.threshold,
            "learning_rate": float(optimizer.param_groups[0]["lr"]),
            "seconds": time.monotonic() - t_epoch,
        }
        history.append(record)
        improved = validation.best_f1 > best_f1 + 1e-4
        out_of_time = (tc.time_limit_minutes > 0
                       and time.monotonic() - t_start > 60 * tc.time_limit_minutes)
        keep = improved if tc.selection == "best" else (epoch == tc.epochs - 1 or out_of_time)
        if improved:
            best_f1 = validation.best_f1
        if keep:
            best_epoch, stale = epoch, 0
            best_validation = validation
            save_model(output, evaluated, ModelInfo(cfg, diameter_px, validation.threshold,
                                                  validation.metrics()))
            write_json(output / CURVE_NAME, validation.curve.as_dict())
        else:
            stale += 1
        logger.info("epoch %d/%d: loss %.4f, validation P %.3f R %.3f F1 %.3f AP %.3f at threshold "
                    "%.3f%s (%.0f s)", epoch + 1, tc.epochs, record["train_loss"],
                    validation.precision, validation.recall, validation.f1, validation.ap,
                    validation.threshold, " *kept*" if keep else "", record["seconds"])
        write_json(output / HISTORY_NAME, history)
        _save_checkpoint(checkpoint_path, network, optimizer, scheduler, epoch, best_f1, best_epoch, stale,
                         None if average is None else average.network)
        if tc.selection == "best" and tc.patience > 0 and stale >= tc.patience:
            logger.info("early stopping: no better validation F1 for %d epochs", stale)
            stopped_early = True
            break
        if out_of_time:
            logger.info("stopping: time limit of %g minutes reached", tc.time_limit_minutes)
            stopped_early = True
            break
    # The stored best weights: re-validate them when resumed after the last improvement, and
    # calibrate the threshold for test-time augmented picking (smoother maps, other threshold).
    load_weights(evaluated, output / "model.safetensors")
    if best_validation is None:
        best_validation = validate(evaluated, valid_items, cfg, device)
    with_tta = validate(evaluated, valid_items, cfg, device, tta=True)
    save_model(output, evaluated, ModelInfo(cfg, diameter_px, best_validation.threshold,
                                            best_validation.metrics(), with_tta.threshold,
                                            with_tta.metrics()))
    logger.info("with test-time augmentation: validation F1 %.3f at threshold %.3f",
                with_tta.f1, with_tta.threshold)
    return TrainResult(best_epoch + 1, best_validation, history, stopped_early)


def _save_checkpoint(path: Path, network: nn.Module, optimizer, scheduler, epoch: int,
                     best_f1: float, best_epoch: int, stale: int, average: nn.Module | None) -> None:
    from cryounet.io.atomic import atomic_path

    state = {
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "best_f1": best_f1,
        "best_epoch": best_epoch,
        "stale": stale,
    }
    if average is not None:
        state["average"] = average.state_dict()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
