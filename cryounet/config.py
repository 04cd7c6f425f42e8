"""Configuration dataclasses for every stage, and their JSON form.

A configuration file (``--config FILE.json``) holds any subset of the sections below; keys it leaves
out keep their defaults, and an unknown section or key is an error that names it. The same JSON is
stored in every model folder, so a run can be reproduced from it.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from cryounet.errors import CryoUNetError
from cryounet.io.json_files import read_json

# ---------------------------------------------------------------------------- choice lists
# The one list of names of each enumerated setting. The model registry, the loss factory and the
# augmenter implement exactly these (tests check it), and the Scipion forms show them.
#: ``model.architecture``
ARCHITECTURES = ("unet", "attention_unet", "residual_unet", "efficient_unet")
#: ``loss.name``
LOSSES = ("bce", "focal", "dice", "bce_dice", "focal_dice")
#: ``augment.preset``
AUGMENT_PRESETS = ("none", "light", "strong")
#: ``preprocess.normalisation``
NORMALISATIONS = ("robust", "standard")
#: ``target.shape``
TARGET_SHAPES = ("disk", "gaussian")
#: ``target.positive_radius`` that goes with each ``target.shape`` (diameters): the disk's core
#: radius, and the Gaussian's sigma (docs/history: "Gaussian targets").
SHAPE_RADII = {"disk": 0.2, "gaussian": 0.1}
#: ``target.separation``
SEPARATION_MODES = ("auto", "on", "off")
#: ``target.separation = "auto"`` draws borders when at least this share of the labelled picks have
#: a neighbour closer than two ``target.ignore_radius`` (CryoPPP: 3 % on 10028, 77 % on 10947).
CROWDED_SHARE = 0.25
#: ``model.norm``
NORMS = ("batch", "group")
#: ``train.schedule``
SCHEDULES = ("cosine", "constant")
#: ``train.selection``
SELECTIONS = ("best", "last")
#: ``train.fold_epochs``
FOLD_EPOCHS = ("own", "main")
#: ``train.dataset_balance``
DATASET_BALANCES = ("none", "equal")


@dataclass
class PreprocessConfig:
    """How micrographs are brought to the working scale.

    Attributes:
        working_diameter: particle diameter in pixels after downsampling. Micrographs are resized by
            ``diameter / working_diameter`` (never upsampled).
        normalisation: ``robust`` (median and MAD, clipped) or ``standard`` (mean and std), both
            over the informative part of the micrograph: blank and flat regions (zero padding, a
            grid bar, denoised vacuum) are left out and filled with quiet noise
            (:func:`cryounet.preprocess.flat_mask`).
        clip: values are clipped to +-``clip`` after normalisation (0 disables).
        lowpass_sigma: Gaussian low-pass filter of the working image, sigma as a fraction of the
            particle diameter (0 disables; 0.05 = 0.8 working pixels at the default working
            diameter). Off by default: it did not help on the shared sets (docs/history:
            "Spread over seeds and threads, low-pass").
    """

    working_diameter: float = 16.0
    normalisation: str = "robust"
    clip: float = 5.0
    lowpass_sigma: float = 0.0


@dataclass
class TargetConfig:
    """How picks become training targets (positive-unlabelled aware).

    Attributes:
        shape: ``disk`` (1 inside ``positive_radius``) or ``gaussian`` (sigma = ``positive_radius``,
            see :data:`SHAPE_RADII`). Gaussian targets rank crowded particles better, most with
            calibration folds, at a lower F1 at the calibrated threshold.
        positive_radius: radius of the positive core, as a fraction of the particle diameter.
        ignore_radius: pixels between the core and this radius (fraction of diameter) are ignored.
        unlabelled_weight: loss weight of pixels far from every pick. They are treated as negatives
            with this weight; lower it (e.g. 0.3) when picks are sparse, because unpicked particles
            exist in the data (positive-unlabelled learning).
        separation: borders between touching picks, for crowded micrographs: ``on``, ``off`` or
            ``auto`` (on when at least :data:`CROWDED_SHARE` of the labelled picks have a
            neighbour closer than two ``ignore_radius``; training logs and stores the choice).
            On a border, ignored pixels (within ``ignore_radius`` of two picks, outside every
            core) whose distances to their two nearest picks differ by at most
            ``separation_width`` become negatives, so the network learns a valley between touching
            particles (the border weights of the original U-Net paper).
        separation_weight: loss weight of those border pixels.
        separation_width: width of the border, as a fraction of the particle diameter.
    """

    shape: str = "disk"
    positive_radius: float = SHAPE_RADII["disk"]
    ignore_radius: float = 0.4
    unlabelled_weight: float = 1.0
    separation: str = "auto"
    separation_weight: float = 1.0
    separation_width: float = 0.1

    @property
    def crowded_distance(self) -> float:
        """Picks closer than this (diameters) count as crowded for ``separation`` ``auto``: two
        ``ignore_radius``, the only pairs a separation border can lie between."""
        return 2 * self.ignore_radius


@dataclass
class ModelConfig:
    """Network architecture.

    Attributes:
        architecture: registry name (``unet``, ``attention_unet``, ``residual_unet``,
            ``efficient_unet``; see ``cryounet.models.registry``).
        base_channels: channels of the first level; each level down doubles them.
        depth: number of down-sampling steps.
        norm: ``batch`` or ``group`` normalisation.
        dropout: dropout probability at the bottleneck.
        blocks_per_level: blocks in each encoder level and the bottleneck.
        attention_gates: attention gates on the skip connections (any architecture).
        se: squeeze-excitation channel attention after every block.
        bottleneck_attention: multi-head spatial self-attention at the bottleneck.
    """

    architecture: str = "unet"
    base_channels: int = 16
    depth: int = 3
    norm: str = "batch"
    dropout: float = 0.0
    blocks_per_level: int = 1
    attention_gates: bool = False
    se: bool = False
    bottleneck_attention: bool = False


@dataclass
class LossConfig:
    """Training loss; every loss honours the ignore mask (weight 0).

    Attributes:
        name: ``bce``, ``focal``, ``dice``, ``bce_dice`` or ``focal_dice``.
        pos_weight: weight of positive pixels in BCE/focal terms.
        focal_gamma: focusing parameter of the focal loss.
        focal_alpha: class balance of the focal loss (weight of positives), or -1 for none.
        dice_weight: weight of the Dice term in the combined losses.
        label_smoothing: targets are squeezed into [s/2, 1 - s/2].
    """

    name: str = "bce"
    pos_weight: float = 1.0
    focal_gamma: float = 2.0
    focal_alpha: float = -1.0
    dice_weight: float = 1.0
    label_smoothing: float = 0.0


@dataclass
class AugmentConfig:
    """Augmentation of training patches.

    Attributes:
        preset: ``none``, ``light`` (flips, 90-degree rotations) or ``strong``.
        scale_jitter: on top of the preset, rescale most patches (and their targets) by a factor
            drawn log-uniformly from ``[1 / (1 + j), 1 + j]`` (0: off). Teaches particles a little
            smaller or larger than the given diameter: for a general model, whose training sets
            measure their diameters by different conventions, and users' diameters are estimates.
    """

    preset: str = "light"
    scale_jitter: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation, sampling, validation and stopping.

    Attributes:
        epochs: maximum number of epochs.
        steps_per_epoch: optimiser steps per epoch.
        batch_size: patches per step.
        patch_size: side of a training patch in working pixels (rounded up to a multiple of
            ``2 ** depth``).
        positive_fraction: fraction of patches centred near a pick (balanced sampling); the rest
            are drawn uniformly.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_epochs: linear warm-up length before the cosine decay.
        schedule: ``cosine`` or ``constant`` after warm-up.
        patience: stop after this many epochs without a better validation F1 (0 disables;
            ignored with ``selection = "last"``).
        selection: which weights are kept: ``best`` (the epoch with the highest validation F1)
            or ``last`` (the final epoch, after the schedule has decayed; validation then only
            calibrates the threshold and reports). ``last`` avoids choosing an epoch by the
            noise of a small validation set.
        calibration_tolerance: the picking threshold is calibrated on validation as the middle of
            the thresholds whose F1 is within this of the best (0 = the threshold of the best F1
            itself). Model selection still uses the best F1.
        calibration_folds: 0 calibrates the threshold on the validation micrographs alone. K >= 2
            cross-fits it over every labelled micrograph (:mod:`cryounet.training.crossfit`): the
            validation micrographs are one fold, the training micrographs are shared out into the
            other K - 1, a fold model is trained for each of those (K - 1 more trainings, kept in
            ``fold_J``), and the threshold comes from all folds' picks, each fold picked by the
            model that did not train on it. K = 1 + the number of training micrographs is
            leave-one-micrograph-out.
        fold_epochs: how long each fold model trains: ``own`` (each early-stops on its own
            held-out fold, like the main model on validation) or ``main`` (the main model is
            trained first and each fold model trains exactly its best epoch count on the same
            schedule, keeping the last weights: its held-out fold then chooses nothing, and there
            is no patience tail to pay for).
        valid_fraction: fraction of training micrographs held out for validation when no
            validation set is given (at least one; with a single micrograph, its bottom strip).
        seed: random seed (sampling, augmentation, initialisation).
        ema_decay: keep an exponential moving average of the weights with this decay per step
            and validate/save the averaged network (0 disables; e.g. 0.99).
        hard_negative_fraction: fraction of patches centred on the current model's false positives
            on the training micrographs (hard-negative mining; 0 disables).
        hard_negative_start: first epoch (1-based) that mines hard negatives.
        dataset_balance: with several datasets (``--datasets``): ``none`` draws patches over all
            micrographs pooled (picks and area decide, so the largest dataset dominates);
            ``equal`` gives each dataset an equal share of the patches, the training-only ones
            (``"validate": false``) together one share.
        time_limit_minutes: stop training after this wall time (0 = no limit).
        num_threads: CPU threads for torch (0 = torch's default).
    """

    epochs: int = 40
    steps_per_epoch: int = 40
    batch_size: int = 8
    patch_size: int = 96
    positive_fraction: float = 0.5
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    schedule: str = "cosine"
    patience: int = 10
    selection: str = "best"
    calibration_tolerance: float = 0.02
    calibration_folds: int = 0
    fold_epochs: str = "own"
    valid_fraction: float = 0.2
    seed: int = 0
    ema_decay: float = 0.0
    hard_negative_fraction: float = 0.0
    hard_negative_start: int = 3
    dataset_balance: str = "none"
    time_limit_minutes: float = 0.0
    num_threads: int = 0


@dataclass
class PickConfig:
    """Inference and post-processing.

    Attributes:
        threshold: probability threshold; None = the threshold calibrated at training.
        nms_radius: minimum distance between picks, as a fraction of the particle diameter.
            0.15, with the saddle test below up to 0.4, keeps touching and overlapping neighbours
            in crowded micrographs.
        edge_exclusion: picks closer than this (fraction of diameter) to an edge are dropped; 0.5
            keeps only particles lying wholly inside the micrograph (extractable boxes).
        tile_size: largest side of one forward pass, in working pixels: a working image that fits
            is predicted whole (the fastest), a larger one in the fewest equal tiles that fit.
            Peak memory grows with tile_size**2 x batch_size (1152, batch 1: about 1.3 GB on the
            CPU with test-time augmentation); on a CUDA GPU with 16 GiB or more ``cryounet pick``
            uses 2048. A setting of the machine that picks: ``cryounet pick`` does not take it (nor
            batch_size) from the model folder.
        tile_overlap: overlap between tiles in working pixels (half is discarded on each side).
        batch_size: tiles per forward pass.
        tta: average over symmetries of the square (test-time augmentation).
        tta_symmetries: how many symmetries test-time augmentation averages over: 4, the four
            rotations, or 8, also their mirror images (twice the forward passes). A setting of
            the model: its TTA threshold is calibrated with it, and a model folder that does not
            record it reads as 8.
        min_score: lowest probability ever reported as a candidate (for calibration/curves).
        opening_radius: grey-level morphological opening of the probability map with a disk of
            this radius (fraction of diameter) before peak finding; removes thin/small responses
            (0 disables).
        min_component_area / max_component_area: connected regions of the map above
            ``component_level`` whose area (in units of the particle's disk area) is outside this
            range are removed before peak finding (0 disables each bound).
        component_level: probability level defining the connected regions.
        saddle_ratio / saddle_radius: separation of touching particles. With ``saddle_ratio`` > 0,
            a peak closer than ``saddle_radius`` (fraction of diameter) to a better pick, but not
            closer than ``nms_radius``, is kept only if the map between the two drops below
            ``saddle_ratio`` times the lower peak: a second maximum on the same blob is dropped, a
            neighbour behind a saddle is kept. It acts only when ``saddle_radius`` > ``nms_radius``
            (``saddle_ratio`` 0: plain NMS at ``nms_radius``).
        precision: arithmetic of the network's forward passes when picking: ``float32`` (the
            default; what thresholds are calibrated with), ``bfloat16`` (autocast on the CPU or a
            GPU: faster where the processor has bfloat16 instructions, probabilities within a few
            thousandths) or ``float16`` (autocast, CUDA GPUs only). Probabilities are always
            accumulated in float32. A setting of the machine that picks, like ``tile_size``.
        workers: threads that read and preprocess the next micrographs while the network runs,
            and as many that find the peaks and write the STAR files of the last ones (0: each
            step in turn). The picks are the same. ``cryounet pick`` uses 4 on a GPU, where the
            network waits for this CPU work, and 0 on the CPU. A setting of the machine that
            picks, like ``tile_size``.
        backend: what runs the networks when picking: ``onnxruntime`` (the CPU only; the model
            folder's ``model.onnx``, written by training, ``cryounet export`` for older models),
            ``torch``, or ``auto`` (the default): ONNX Runtime on the CPU when every network has a
            matching ``model.onnx`` and ``precision`` is float32, else PyTorch, the reason logged.
            The same picks, faster to start. A setting of the machine that picks, like
            ``tile_size``.
        folds: a model trained with ``train.calibration_folds`` also holds its fold networks
            (``fold_J``); pick with all of them as one ensemble (mean probability, the threshold
            the mean of theirs), at K times the picking time. No effect on a model without folds.
    """

    threshold: float | None = None
    nms_radius: float = 0.15
    edge_exclusion: float = 0.5
    tile_size: int = 1152
    tile_overlap: int = 64
    batch_size: int = 1
    tta: bool = True
    tta_symmetries: int = 4
    min_score: float = 0.05
    opening_radius: float = 0.0
    min_component_area: float = 0.0
    max_component_area: float = 0.0
    component_level: float = 0.5
    saddle_ratio: float = 0.8
    saddle_radius: float = 0.4
    precision: str = "float32"
    workers: int = 0
    backend: str = "auto"
    folds: bool = True


#: Settings of the machine that picks, not of the model: a model folder's values are not used;
#: ``cryounet pick`` starts from the defaults of its device (``cryounet.device.machine_pick_settings``).
PICK_MACHINE_SETTINGS = ("tile_size", "batch_size", "precision", "workers", "backend")
#: The machine settings that differ on a CUDA GPU: more worker threads (the GPU waited for the CPU
#: work), and, with at least GPU_LARGE_MEMORY_GIB of memory, working images up to 2048 px in one
#: pass (docs/history: "GPU"). Only such GPUs also pass the symmetries of test-time augmentation as
#: one batch: one map of 2048 px took 12.1 GiB that way.
GPU_PICK_WORKERS = 4
GPU_TILE_SIZE = 2048
GPU_LARGE_MEMORY_GIB = 16
#: Values of ``pick.precision``.
PRECISIONS = ("float32", "bfloat16", "float16")


#: Largest random seed (2^32 - 1): every generator the seed reaches (torch's, numpy's, derived
#: per-epoch seeds) takes it without overflow.
MAX_SEED = 2 ** 32 - 1


def cpu_pick_settings() -> dict[str, Any]:
    """The defaults of the picking machine's settings (``PICK_MACHINE_SETTINGS``) on the CPU
    (:func:`cryounet.device.machine_pick_settings` for any device)."""
    return {name: getattr(PickConfig(), name) for name in PICK_MACHINE_SETTINGS}


#: Values of ``pick.backend``.
BACKENDS = ("auto", "torch", "onnxruntime")
#: Values of ``pick.tta_symmetries``; a model folder that does not record it used 8.
TTA_SYMMETRY_COUNTS = (4, 8)
LEGACY_TTA_SYMMETRIES = 8


@dataclass
class RefineConfig:
    """Pseudo-labelled refinement (self-training on unlabelled micrographs).

    Attributes:
        rounds: self-training rounds.
        epochs_per_round: training epochs in each round (starting from the previous weights).
        positive_start / positive_end: probability a peak needs to become a pseudo-pick, relaxed
            linearly from the first to the last round.
        negative_start / negative_end: pixels below this probability become pseudo-negatives;
            pixels between the two thresholds are ignored.
        max_entropy: a pseudo-pick also needs a binary predictive entropy (bits, TTA-averaged
            probability) at most this.
        curriculum: micrographs are ranked by confidence and round r uses the most confident
            r/rounds of them (else all from the first round).
        tta: predict pseudo-labels with test-time augmentation (over ``pick.tta_symmetries``).
        checkpoint_ensemble: pseudo-labels come from the mean probability of the last this-many
            round checkpoints (the input model counts as round 0); 1 = the current model only.
        skip_empty: leave out micrographs on which a round found no pseudo-pick. Their
            pseudo-labels would be background only and teach the model that they hold no
            particles (seen on CryoPPP-10947, whose maps rarely reach 0.98).
    """

    rounds: int = 3
    epochs_per_round: int = 10
    positive_start: float = 0.98
    positive_end: float = 0.90
    negative_start: float = 0.02
    negative_end: float = 0.10
    max_entropy: float = 0.5
    curriculum: bool = True
    tta: bool = True
    checkpoint_ensemble: int = 2
    skip_empty: bool = True


@dataclass
class CryoUNetConfig:
    """All settings of a training run (and the picking defaults stored with the model)."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pick: PickConfig = field(default_factory=PickConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "CryoUNetConfig":
        """Build a config from (a subset of) its dict form; unknown keys and values out of range
        are errors."""
        cfg = _from_dict(cls, data, source)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        """Check choices and ranges, raising :class:`CryoUNetError` naming the key (``source`` names
        where the values came from)."""
        for check in (self._check_choices, self._check_sizes, self._check_ranges, self._check_relations):
            check(source)

    def _check_choices(self, source: str) -> None:
        """Every enumerated setting is one of its choices."""
        choices = {
            "preprocess.normalisation": (self.preprocess.normalisation, NORMALISATIONS),
            "target.shape": (self.target.shape, TARGET_SHAPES),
            "target.separation": (self.target.separation, SEPARATION_MODES),
            "model.architecture": (self.model.architecture, ARCHITECTURES),
            "model.norm": (self.model.norm, NORMS),
            "loss.name": (self.loss.name, LOSSES),
            "augment.preset": (self.augment.preset, AUGMENT_PRESETS),
            "train.schedule": (self.train.schedule, SCHEDULES),
            "train.selection": (self.train.selection, SELECTIONS),
            "train.fold_epochs": (self.train.fold_epochs, FOLD_EPOCHS),
            "train.dataset_balance": (self.train.dataset_balance, DATASET_BALANCES),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise CryoUNetError(f"{source}: {key} = {value!r} is not one of {', '.join(allowed)}")

    def _check_sizes(self, source: str) -> None:
        """Every float is finite, every size bounded, the network not too large."""
        for section in dataclasses.fields(self):
            for item in dataclasses.fields(getattr(self, section.name)):
                value = getattr(getattr(self, section.name), item.name)
                if isinstance(value, float) and not math.isfinite(value):
                    raise CryoUNetError(f"{source}: {section.name}.{item.name} must be a finite number, got {value}")
        for key, (value, limit) in self._upper_bounds().items():
            if value > limit:
                raise CryoUNetError(f"{source}: {key} = {value} is above the largest value CryoUNet accepts "
                                    f"({limit})")
        parameters = estimated_parameters(self.model)
        if parameters > MAX_PARAMETERS:
            raise CryoUNetError(f"{source}: a network with model.base_channels = {self.model.base_channels}, "
                                f"model.depth = {self.model.depth} and model.blocks_per_level = "
                                f"{self.model.blocks_per_level} would have about {parameters / 1e6:.0f} million "
                                f"parameters, more than the {MAX_PARAMETERS / 1e6:.0f} million CryoUNet builds")

    def _check_ranges(self, source: str) -> None:
        """Positive sizes and fractions between 0 and 1."""
        positive = {
            "preprocess.working_diameter": self.preprocess.working_diameter,
            "target.positive_radius": self.target.positive_radius,
            "model.base_channels": self.model.base_channels,
            "model.depth": self.model.depth,
            "model.blocks_per_level": self.model.blocks_per_level,
            "train.epochs": self.train.epochs,
            "train.steps_per_epoch": self.train.steps_per_epoch,
            "train.batch_size": self.train.batch_size,
            "train.patch_size": self.train.patch_size,
            "pick.tile_size": self.pick.tile_size,
            "pick.batch_size": self.pick.batch_size,
            "pick.min_score": self.pick.min_score,
            "refine.rounds": self.refine.rounds,
            "refine.epochs_per_round": self.refine.epochs_per_round,
            "refine.checkpoint_ensemble": self.refine.checkpoint_ensemble,
        }
        for key, value in positive.items():
            if not value > 0:
                raise CryoUNetError(f"{source}: {key} must be positive, got {value}")
        fractions = {
            "target.unlabelled_weight": self.target.unlabelled_weight,
            "model.dropout": self.model.dropout,
            "train.positive_fraction": self.train.positive_fraction,
            "train.hard_negative_fraction": self.train.hard_negative_fraction,
            "train.ema_decay": self.train.ema_decay,
            "train.calibration_tolerance": self.train.calibration_tolerance,
            "pick.component_level": self.pick.component_level,
            "pick.saddle_ratio": self.pick.saddle_ratio,
            "augment.scale_jitter": self.augment.scale_jitter,
        }
        for key, value in fractions.items():
            if not 0 <= value <= 1:
                raise CryoUNetError(f"{source}: {key} must be between 0 and 1, got {value}")

    def _check_relations(self, source: str) -> None:
        """Signs, relations between keys, thresholds, folds, seeds and the pick settings."""
        if not (self.train.learning_rate >= 0 and self.train.weight_decay >= 0):
            raise CryoUNetError(f"{source}: train.learning_rate and train.weight_decay must not be negative")
        if self.train.positive_fraction + self.train.hard_negative_fraction > 1:
            raise CryoUNetError(f"{source}: train.positive_fraction + train.hard_negative_fraction "
                                "must not exceed 1")
        for key in ("separation_weight", "separation_width"):
            if not getattr(self.target, key) >= 0:  # also refuses NaN
                raise CryoUNetError(f"{source}: target.{key} must not be negative")
        if self.target.ignore_radius < self.target.positive_radius:
            raise CryoUNetError(f"{source}: target.ignore_radius must be >= target.positive_radius")
        if self.pick.threshold is not None and not 0 <= self.pick.threshold <= 1:
            raise CryoUNetError(f"{source}: pick.threshold must be between 0 and 1 (or null)")
        for key in ("nms_radius", "edge_exclusion", "tile_overlap", "opening_radius",
                    "min_component_area", "max_component_area", "saddle_radius", "workers"):
            if not getattr(self.pick, key) >= 0:  # also refuses NaN
                raise CryoUNetError(f"{source}: pick.{key} must not be negative")
        try:  # the count alone here; whether the micrographs fill the folds is checked at training
            check_calibration_folds(self.train.calibration_folds, max(0, self.train.calibration_folds - 1))
        except CryoUNetError as exc:
            raise CryoUNetError(f"{source}: {exc}") from None
        if not 0 <= self.train.seed <= MAX_SEED:
            raise CryoUNetError(f"{source}: train.seed must be a whole number from 0 to {MAX_SEED}, got "
                                f"{self.train.seed}")
        if not 0 <= self.preprocess.lowpass_sigma <= 1:
            raise CryoUNetError(f"{source}: preprocess.lowpass_sigma must be between 0 and 1 (a fraction "
                                f"of the particle diameter), got {self.preprocess.lowpass_sigma}")
        for key in ("positive_start", "positive_end", "negative_start", "negative_end"):
            if not 0 < getattr(self.refine, key) < 1:
                raise CryoUNetError(f"{source}: refine.{key} must be between 0 and 1 (exclusive)")
        if not self.refine.max_entropy >= 0:
            raise CryoUNetError(f"{source}: refine.max_entropy must not be negative")
        if self.pick.backend not in BACKENDS:
            raise CryoUNetError(f"{source}: pick.backend must be one of {', '.join(BACKENDS)}, "
                                f"got {self.pick.backend!r}")
        if self.pick.precision not in PRECISIONS:
            raise CryoUNetError(f"{source}: pick.precision must be one of {', '.join(PRECISIONS)}, "
                                f"got {self.pick.precision!r}")
        try:
            check_tta_symmetries(self.pick.tta_symmetries)
        except CryoUNetError as exc:
            raise CryoUNetError(f"{source}: {exc}") from None
        if self.pick.tile_overlap >= self.pick.tile_size:
            raise CryoUNetError(f"{source}: pick.tile_overlap must be smaller than pick.tile_size")

    def _upper_bounds(self) -> dict[str, tuple[float, float]]:
        """``key: (value, largest accepted)``: every size is bounded before anything is built, so a
        hostile or mistyped config fails at once instead of exhausting memory."""
        return {
            "preprocess.working_diameter": (self.preprocess.working_diameter, 256),
            "target.separation_weight": (self.target.separation_weight, 100),
            "target.separation_width": (self.target.separation_width, 1),
            "model.base_channels": (self.model.base_channels, 128),
            "model.depth": (self.model.depth, 6),
            "model.blocks_per_level": (self.model.blocks_per_level, 8),
            "train.epochs": (self.train.epochs, 100_000),
            "train.steps_per_epoch": (self.train.steps_per_epoch, 1_000_000),
            "train.batch_size": (self.train.batch_size, 4096),
            "train.patch_size": (self.train.patch_size, 2048),
            "train.learning_rate": (self.train.learning_rate, 1.0),
            "train.weight_decay": (self.train.weight_decay, 1.0),
            "train.warmup_epochs": (self.train.warmup_epochs, 100_000),
            "train.num_threads": (self.train.num_threads, 4096),
            "train.calibration_folds": (self.train.calibration_folds, 1000),
            "pick.tile_size": (self.pick.tile_size, 8192),
            "pick.batch_size": (self.pick.batch_size, 4096),
            "pick.workers": (self.pick.workers, 256),
            "pick.min_score": (self.pick.min_score, 1.0),
            "refine.rounds": (self.refine.rounds, 1000),
            "refine.epochs_per_round": (self.refine.epochs_per_round, 100_000),
            "refine.checkpoint_ensemble": (self.refine.checkpoint_ensemble, 1000),
            "loss.pos_weight": (self.loss.pos_weight, 1e4),
            "loss.focal_gamma": (self.loss.focal_gamma, 100.0),
            "loss.dice_weight": (self.loss.dice_weight, 1e4),
        }

    def updated(self, data: dict[str, Any], source: str = "config") -> "CryoUNetConfig":
        """A copy with the sections/keys of ``data`` overriding this config's values."""
        if not isinstance(data, dict):
            raise CryoUNetError(f"{source}: expected a JSON object with config sections, got "
                                f"{type(data).__name__}")
        merged = self.to_dict()
        for section, values in data.items():
            if isinstance(values, dict) and isinstance(merged.get(section), dict):
                merged[section].update(values)
            else:
                merged[section] = values
        return type(self).from_dict(merged, source)


#: Largest network CryoUNet builds (parameters); the default U-Net has about 0.5 million.
MAX_PARAMETERS = 200_000_000


def check_batch_shared(batch_size: int, processes: int, what: str = "training processes") -> None:
    """Refuse a global batch that ``processes`` data-parallel processes cannot share out equally
    (each trains on ``batch_size / processes`` patches of every step)."""
    if processes > 1 and batch_size % processes:
        raise CryoUNetError(f"train.batch_size {batch_size} cannot be shared out equally by {processes} "
                            f"{what}: make it a multiple of {processes}")


def held_out_count(micrographs: int, fraction: float) -> int:
    """How many of ``micrographs`` labelled micrographs are held out for validation when no
    validation set is given: ``fraction`` of them, at least one, and never all (a single
    micrograph gives a validation strip of itself instead: 0 here)."""
    if micrographs < 2:
        return 0
    return min(micrographs - 1, max(1, int(round(fraction * micrographs))))


def check_tta_symmetries(count: int) -> None:
    """Refuse a ``pick.tta_symmetries`` other than those of :data:`TTA_SYMMETRY_COUNTS`."""
    if count not in TTA_SYMMETRY_COUNTS:
        raise CryoUNetError(f"pick.tta_symmetries must be one of {', '.join(map(str, TTA_SYMMETRY_COUNTS))}, "
                            f"got {count!r}")


def check_calibration_folds(folds: int, training_micrographs: int) -> None:
    """Refuse ``train.calibration_folds`` that the training micrographs cannot fill: each fold
    besides the validation fold holds out at least one of them."""
    if folds == 0:
        return
    if folds < 2:  # also refuses negative counts
        raise CryoUNetError(f"train.calibration_folds must be 0 (calibrate on validation alone) or at least "
                            f"2 folds, got {folds}")
    if training_micrographs < folds - 1:
        raise CryoUNetError(f"train.calibration_folds = {folds} needs at least {folds - 1} training "
                            f"micrographs (one per fold besides the validation fold), there are "
                            f"{training_micrographs}: use at most {training_micrographs + 1} folds")


def estimated_parameters(model: ModelConfig) -> int:
    """An upper estimate of the U-Net's parameter count, from its sizes alone (nothing is built):
    two 3 x 3 convolutions per block, ``blocks_per_level`` blocks per level, channels doubling per
    level, encoder and decoder."""
    per_level = sum(4 ** level for level in range(model.depth + 1))
    return int(2 * 2 * 9 * model.base_channels ** 2 * max(1, model.blocks_per_level) * per_level * 2)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin is Union or str(origin) == "types.UnionType":
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            if type(None) in get_args(hint):
                return None
            raise CryoUNetError(f"{where}: null is not allowed")
        return _coerce(value, options[0], where)
    if hint is bool:
        if not isinstance(value, bool):
            raise CryoUNetError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise CryoUNetError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CryoUNetError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise CryoUNetError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise CryoUNetError(f"{where}: expected an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    if any(not isinstance(key, str) for key in data):
        raise CryoUNetError(f"{where}: keys must be strings")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CryoUNetError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _from_dict(hint, value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, hint, f"{where}.{name}")
    return cls(**kwargs)


def load_config(path: str | os.PathLike[str] | None, base: CryoUNetConfig | None = None) -> CryoUNetConfig:
    """Read a JSON config file on top of ``base`` (defaults when None)."""
    base = base or CryoUNetConfig()
    if path is None:
        return base
    path = Path(path)
    data = read_json(path, "config file")
    return base.updated(data, source=str(path))
