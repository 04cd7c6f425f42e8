"""Training loop: patches, augmentation, AdamW, warm-up + cosine, validation F1, early stopping.

Every epoch ends with a validation pass that picks the validation micrographs and matches them to
their picks (:mod:`cryounet.training.validation`); the best epoch by validation F1 is kept, with the score
threshold that gave it (threshold calibration). ``checkpoint.pt`` (tensors and plain values only,
loaded with ``weights_only=True``) lets an interrupted run resume where it stopped; random streams
are re-seeded from ``(seed, epoch)`` so a resumed run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cryounet.config import CryoUNetConfig, check_batch_shared
from cryounet.device import preferred_layout
from cryounet.errors import CryoUNetError
from cryounet.io.atomic import atomic_path, write_json
from cryounet.io.model_folder import (CHECKPOINT_NAME, CURVE_NAME, HISTORY_NAME, WEIGHTS_NAME, ModelInfo,
                                      read_json_list)
from cryounet.models.onnx_export import export_onnx
from cryounet.models.registry import build_model
from cryounet.models.weights import load_weights, save_model
from cryounet.training.augment import build_augmenter
from cryounet.training.data import LabelledMicrograph, PatchSampler
from cryounet.training.distributed import Distributed
from cryounet.training.losses import build_loss
from cryounet.training.targets import decide_separation, describe_negatives
from cryounet.training.validation import Validation, mine_hard_negatives, validate

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class _Plan:
    """How many epochs a run trains and which of them it keeps (``best`` or ``last``)."""

    selection: str
    epochs: int


@dataclass
class _Progress:
    """Where a run stands after an epoch (restored from ``checkpoint.pt`` when resuming)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_f1: float = -1.0
    best_epoch: int = -1
    stale: int = 0
    start_epoch: int = 0
    best_validation: Validation | None = None


@dataclass
class _Run:
    """The network, optimiser and schedule one training run works with."""

    network: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: Any
    patch: int
    average: WeightAverage | None = None
    #: What the optimiser steps through: DistributedDataParallel around ``network`` in a run of
    #: several processes, else ``network`` itself (None: the same).
    trained: nn.Module | None = None
    world: Distributed = field(default_factory=Distributed)

    @property
    def evaluated(self) -> nn.Module:
        """The network validated and saved: the weight average when kept, else the network."""
        return self.average.network if self.average is not None else self.network


def _build_run(cfg: CryoUNetConfig, device: torch.device, init_weights: Path | None) -> _Run:
    """A freshly initialised (or ``init_weights``) network with its AdamW optimiser and schedule."""
    tc = cfg.train
    torch.manual_seed(tc.seed)
    network = preferred_layout(build_model(cfg.model).to(device), device)
    if init_weights is not None:
        load_weights(network, init_weights)
        logger.info("initialised weights from %s", init_weights)
    optimizer = torch.optim.AdamW(network.parameters(), lr=tc.learning_rate, weight_decay=tc.weight_decay)
    total_steps = tc.epochs * tc.steps_per_epoch
    warmup_steps = tc.warmup_epochs * tc.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup_steps, total_steps, tc.schedule))
    patch = int(math.ceil(tc.patch_size / network.multiple) * network.multiple)
    return _Run(network, optimizer, scheduler, build_loss(cfg.loss), patch)


def _resume(run: _Run, output: Path, device: torch.device) -> tuple[_Progress, dict | None]:
    """Restore network, optimiser and schedule from ``output/checkpoint.pt``.

    Returns:
        The progress so far and the weight average's state (None when not kept).
    """
    checkpoint_path = output / CHECKPOINT_NAME
    if not checkpoint_path.is_file():
        raise CryoUNetError(f"{checkpoint_path}: no checkpoint to resume from")
    try:
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        run.network.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        best_f1, best_epoch, stale = float(state["best_f1"]), int(state["best_epoch"]), int(state["stale"])
        written_by = int(state.get("world_size", 1))
    except (RuntimeError, EOFError, KeyError, TypeError, ValueError, AttributeError, OSError,
            pickle.UnpicklingError) as exc:
        # torch.load: RuntimeError or UnpicklingError for a truncated, foreign or unsafe file (never
        # executed: weights_only); load_state_dict: RuntimeError for another network or config.
        detail = " ".join(str(exc).splitlines()[:2])[:200]
        raise CryoUNetError(f"{checkpoint_path}: not a checkpoint of this training run (truncated, "
                            f"foreign, or of another network or config: {type(exc).__name__}: {detail}); "
                            "train again with --overwrite") from None
    if written_by != run.world.world_size:
        raise CryoUNetError(f"{checkpoint_path}: written by a run of {written_by} training process(es), "
                            f"resumed with {run.world.world_size}: resume with the same --devices (the "
                            "global batch is shared out by the number of processes)")
    progress = _Progress(read_json_list(output / HISTORY_NAME)[:start_epoch], best_f1, best_epoch, stale,
                         start_epoch)
    logger.info("resuming after epoch %d (best validation F1 %.3f at epoch %d)",
                start_epoch, progress.best_f1, progress.best_epoch + 1)
    return progress, state.get("average")


def _train_epoch(run: _Run, train_items: Sequence[LabelledMicrograph], cfg: CryoUNetConfig, epoch: int,
                 device: torch.device, progress: bool) -> list[float]:
    """One epoch of optimiser steps on freshly sampled, augmented patches; the step losses."""
    from tqdm import tqdm

    tc = cfg.train
    rng = _seed_everything(tc.seed, epoch)
    hard = None
    if tc.hard_negative_fraction > 0 and epoch + 1 >= tc.hard_negative_start:
        hard = mine_hard_negatives(run.network, train_items, cfg, device)
        logger.debug("epoch %d: %d hard negatives mined", epoch + 1, sum(len(h) for h in hard))
    sampler = PatchSampler(list(train_items), cfg, run.patch, rng, hard)
    augment = build_augmenter(cfg.augment, seed=int(rng.integers(2**31)))
    trained = run.trained if run.trained is not None else run.network
    trained.train()
    losses: list[float] = []
    bar = tqdm(range(tc.steps_per_epoch), desc=f"epoch {epoch + 1}/{tc.epochs}", leave=False,
               disable=not progress, unit="step")
    for _ in bar:
        # Every process draws the whole global batch from the same streams and trains on its share.
        batch = run.world.shard([augment(*sampler.sample()) for _ in range(tc.batch_size)])
        images, targets, weights = (torch.from_numpy(np.stack(a))[:, None].to(device) for a in zip(*batch))
        loss = run.loss_fn(trained(images), targets, weights)
        if not torch.isfinite(loss):
            raise CryoUNetError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                                "lower train.learning_rate")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        if run.average is not None:
            run.average.update(run.network)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
    return losses


def _epoch_record(epoch: int, train_loss: float, validation: Validation, run: _Run,
                  seconds: float) -> dict[str, Any]:
    """The ``history.json`` entry of one epoch (``train_loss``: the mean step loss, over all
    processes of a data-parallel run)."""
    return {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "valid_loss": validation.loss,
        "valid_precision": validation.precision,
        "valid_recall": validation.recall,
        "valid_f1": validation.f1,
        "valid_best_f1": validation.best_f1,
        "valid_ap": validation.ap,
        "threshold": validation.threshold,
        "learning_rate": float(run.optimizer.param_groups[0]["lr"]),
        "seconds": seconds,
    }


def _select(progress: _Progress, validation: Validation, plan: _Plan, epoch: int, out_of_time: bool) -> bool:
    """Update the best/stale counters with this epoch's validation; True when its weights are kept
    (``best``: a better best F1; ``last``: the final epoch)."""
    improved = validation.best_f1 > progress.best_f1 + 1e-4
    keep = improved if plan.selection == "best" else (epoch == plan.epochs - 1 or out_of_time)
    if improved:
        progress.best_f1 = validation.best_f1
    if keep:
        progress.best_epoch, progress.stale = epoch, 0
        progress.best_validation = validation
    else:
        progress.stale += 1
    return keep


def _finish(run: _Run, progress: _Progress, valid_items: Sequence[LabelledMicrograph], cfg: CryoUNetConfig,
            diameter_px: float, output: Path, device: torch.device) -> Validation:
    """Reload the kept weights, re-validate them when resumed after the last improvement, and
    calibrate the threshold for test-time augmented picking (smoother maps, other threshold)."""
    evaluated = run.evaluated
    load_weights(evaluated, output / WEIGHTS_NAME)
    best = progress.best_validation
    if best is None:
        best = validate(evaluated, valid_items, cfg, device)
    with_tta = validate(evaluated, valid_items, cfg, device, tta=True)
    save_model(output, evaluated, ModelInfo(cfg, diameter_px, best.threshold, best.metrics(),
                                            with_tta.threshold, with_tta.metrics()))
    export_onnx(evaluated, output)  # picking on the CPU without PyTorch (pick.backend)
    logger.info("with test-time augmentation: validation F1 %.3f at threshold %.3f",
                with_tta.f1, with_tta.threshold)
    return best


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
    world: Distributed | None = None,
    stop_after: int | None = None,
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
        world: this process's place in a data-parallel run (:mod:`cryounet.training.distributed`);
            only its rank 0 validates and writes, and its result alone carries the validation.
        stop_after: train exactly this many epochs (at most ``train.epochs``) on the configured
            schedule and keep the last weights, whatever ``train.selection`` says: validation then
            only reports and calibrates (the fold models of ``train.fold_epochs = "main"``).
    """
    tc = cfg.train
    if stop_after is not None and not 1 <= stop_after <= tc.epochs:
        raise CryoUNetError(f"stop_after must be between 1 and train.epochs = {tc.epochs}, got {stop_after}")
    plan = _Plan(tc.selection, tc.epochs) if stop_after is None else _Plan("last", stop_after)
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    output = Path(output)
    world = world or Distributed()
    check_batch_shared(tc.batch_size, world.world_size)
    labelled = [(item.xy, item.diameter) for item in [*train_items, *valid_items]]
    target, separation = decide_separation(cfg.target, labelled)
    cfg = dataclasses.replace(cfg, target=target)
    if world.is_main:
        output.mkdir(parents=True, exist_ok=True)
    run = _build_run(cfg, device, init_weights)
    run.world = world
    run.trained = world.wrap(run.network, device)
    state, resumed_average = _resume(run, output, device) if resume else (_Progress(), None)
    if tc.ema_decay > 0:
        run.average = WeightAverage(run.network, tc.ema_decay)
        if resumed_average is not None:
            run.average.network.load_state_dict(resumed_average)
    logger.info("training %s on %d micrograph(s) (%d picks), validating on %d (%d picks); %s",
                cfg.model.architecture, len(train_items), sum(len(i.xy) for i in train_items),
                len(valid_items), sum(len(i.xy) for i in valid_items), describe_negatives(cfg.target))
    logger.info("%s", separation)
    if world.enabled:
        logger.info("data-parallel over %d processes: %d of the %d patches of each step per process",
                    world.world_size, tc.batch_size // world.world_size, tc.batch_size)
    t_start = time.monotonic()
    stopped_early = False
    for epoch in range(state.start_epoch, plan.epochs):
        t_epoch = time.monotonic()
        losses = _train_epoch(run, train_items, cfg, epoch, device, progress)
        train_loss = world.mean(float(np.mean(losses)), device)
        world.sync_buffers(run.network)
        if run.average is not None:
            world.sync_buffers(run.average.network)
        early, out_of_time = False, False
        if world.is_main:
            early, out_of_time = _end_epoch(run, state, plan, epoch, train_loss, valid_items, cfg,
                                            diameter_px, output, device, time.monotonic() - t_epoch,
                                            tc.time_limit_minutes > 0
                                            and time.monotonic() - t_start > 60 * tc.time_limit_minutes)
        if world.decision(early, device):
            logger.info("early stopping: no better validation F1 for %d epochs", state.stale)
            stopped_early = True
            break
        if world.decision(out_of_time, device):
            logger.info("stopping: time limit of %g minutes reached", tc.time_limit_minutes)
            stopped_early = True
            break
    if not world.is_main:
        return TrainResult(state.best_epoch + 1, None, state.history, stopped_early)
    best = _finish(run, state, valid_items, cfg, diameter_px, output, device)
    return TrainResult(state.best_epoch + 1, best, state.history, stopped_early)


def _end_epoch(run: _Run, state: _Progress, plan: _Plan, epoch: int, train_loss: float,
               valid_items: Sequence[LabelledMicrograph], cfg: CryoUNetConfig, diameter_px: float,
               output: Path, device: torch.device, seconds: float, out_of_time: bool) -> tuple[bool, bool]:
    """Validate an epoch, keep its weights when chosen, write history and checkpoint (the writing
    process only); returns (stop early, out of time)."""
    tc = cfg.train
    validation = validate(run.evaluated, valid_items, cfg, device, run.loss_fn)
    record = _epoch_record(epoch, train_loss, validation, run, seconds)
    state.history.append(record)
    keep = _select(state, validation, plan, epoch, out_of_time)
    if keep:
        save_model(output, run.evaluated, ModelInfo(cfg, diameter_px, validation.threshold,
                                                    validation.metrics()))
        write_json(output / CURVE_NAME, validation.curve.as_dict())
    logger.info("epoch %d/%d: loss %.4f, validation P %.3f R %.3f F1 %.3f AP %.3f at threshold "
                "%.3f%s (%.0f s)", epoch + 1, plan.epochs, record["train_loss"],
                validation.precision, validation.recall, validation.f1, validation.ap,
                validation.threshold, " *kept*" if keep else "", record["seconds"])
    write_json(output / HISTORY_NAME, state.history)
    _save_checkpoint(output / CHECKPOINT_NAME, run.network, run.optimizer, run.scheduler, epoch,
                     state.best_f1, state.best_epoch, state.stale,
                     None if run.average is None else run.average.network, run.world.world_size)
    early = plan.selection == "best" and tc.patience > 0 and state.stale >= tc.patience
    return early, out_of_time


def _save_checkpoint(path: Path, network: nn.Module, optimizer, scheduler, epoch: int,
                     best_f1: float, best_epoch: int, stale: int, average: nn.Module | None,
                     world_size: int = 1) -> None:
    state = {
        "world_size": world_size,
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
