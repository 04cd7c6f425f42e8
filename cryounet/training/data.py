"""Labelled micrographs: pairing micrographs with coordinate files, validation split, patch sampling."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cryounet.config import CryoUNetConfig, PreprocessConfig, held_out_count
from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.coordinates import find_coordinate_file, is_folder_index, read_coordinates
from cryounet.io.folders import input_folder
from cryounet.io.mrc import read_micrograph
from cryounet.preprocess import Scale, preprocess
from cryounet.training.targets import make_targets

logger = logging.getLogger(__name__)


@dataclass
class LabelledMicrograph:
    """A micrograph at the working scale with its picks.

    Attributes:
        name: micrograph stem.
        image: normalised float32 ``(ny, nx)`` working image.
        xy: ``(N, 2)`` picks in working pixels.
        scale: geometry (input <-> working).
        diameter: particle diameter in working pixels.
        background: optional per-pixel weight of pixels away from picks (pseudo-labels); None uses
            ``target.unlabelled_weight``.
        group: the dataset it belongs to (``train.dataset_balance``); training-only datasets
            share :data:`TRAIN_ONLY_GROUP`.
    """

    name: str
    image: np.ndarray
    xy: np.ndarray
    scale: Scale
    diameter: float
    background: np.ndarray | None = None
    group: int = 0

    def rows(self, start: int, stop: int) -> "LabelledMicrograph":
        """The horizontal strip ``start:stop`` (working rows) with the picks inside it."""
        keep = (self.xy[:, 1] >= start - 0.5) & (self.xy[:, 1] < stop - 0.5)
        xy = self.xy[keep] - np.array([0.0, start])
        background = None if self.background is None else self.background[start:stop]
        return LabelledMicrograph(f"{self.name}[rows {start}:{stop}]", self.image[start:stop], xy,
                                  self.scale, self.diameter, background, self.group)


def load_micrograph(path: Path, diameter: float, cfg: PreprocessConfig) -> LabelledMicrograph:
    """Read and preprocess one micrograph, as yet without picks."""
    image, scale = preprocess(read_micrograph(path), diameter, cfg)
    return LabelledMicrograph(path.stem, image, np.zeros((0, 2)), scale, diameter / scale.factors[0])


def load_labelled(
    micrographs: Sequence[Path], coordinates: Path, diameter: float, cfg: PreprocessConfig
) -> tuple[list[LabelledMicrograph], list[Path]]:
    """Read micrographs that have a coordinate file in ``coordinates`` (matched by name: ``mic.star``,
    ``mic_autopick.star``, ``mic.cbox``, ... belong to ``mic.mrc``; see :func:`find_coordinate_file`).

    Returns:
        The labelled micrographs and the paths of micrographs without a coordinate file.

    Raises:
        CryoUNetError: the coordinate folder is missing or no micrograph has coordinates.
    """
    coordinates = input_folder(coordinates, "coordinate folder", is_folder_index)
    labelled: list[LabelledMicrograph] = []
    unlabelled: list[Path] = []
    skipped: list[str] = []
    stems = {path.stem for path in micrographs}
    for path in micrographs:
        coord_file = find_coordinate_file(path.stem, coordinates, stems)
        if coord_file is None:
            unlabelled.append(path)
            continue
        picks = read_coordinates(coord_file)
        try:
            item = load_micrograph(path, diameter, cfg)
        except InputFileError as exc:
            logger.warning("skipping %s", exc)
            skipped.append(path.name)
            continue
        ny, nx = item.scale.input_shape
        inside = (
            (picks.xy[:, 0] >= -0.5) & (picks.xy[:, 0] < nx - 0.5)
            & (picks.xy[:, 1] >= -0.5) & (picks.xy[:, 1] < ny - 0.5)
        )
        if not inside.all():
            logger.warning("%s: %d of %d picks lie outside the %d x %d micrograph; ignored",
                           coord_file, int((~inside).sum()), len(inside), nx, ny)
        item.xy = item.scale.to_working(picks.xy[inside])
        labelled.append(item)
    if not labelled and skipped:
        raise CryoUNetError(f"none of the labelled micrographs could be read ({', '.join(skipped[:3])}; "
                            "see the warnings above)")
    if not labelled:
        raise CryoUNetError(
            f"{coordinates}: no coordinate file matches any of the {len(micrographs)} micrographs "
            "(files are matched by name, e.g. mic_001.mrc <-> mic_001.star, mic_001_autopick.star, "
            "mic_001.cbox, mic_001.box or mic_001.csv)"
        )
    empty = [item.name for item in labelled if len(item.xy) == 0]
    if empty:
        logger.warning("%d labelled micrograph(s) have a coordinate file without any particle (%s): they "
                       "are trained as background only; remove their files unless they really hold no "
                       "particles", len(empty), ", ".join(empty[:5]))
    if unlabelled:
        logger.info("%d micrograph(s) have no coordinate file and are not used for training: %s",
                    len(unlabelled), ", ".join(p.name for p in unlabelled[:5]))
    return labelled, unlabelled


def split_validation(
    items: list[LabelledMicrograph], fraction: float, rng: np.random.Generator
) -> tuple[list[LabelledMicrograph], list[LabelledMicrograph]]:
    """Hold out ``fraction`` of the micrographs (at least one) for validation.

    With a single micrograph its bottom strip (``fraction`` of the rows, at least 2 diameters) is
    held out instead, so there is always something independent to calibrate on.
    """
    if not 0 < fraction < 1:
        raise CryoUNetError(f"train.valid_fraction must be between 0 and 1, got {fraction}")
    if len(items) >= 2:
        n_valid = held_out_count(len(items), fraction)
        order = rng.permutation(len(items))
        valid = [items[i] for i in sorted(order[:n_valid])]
        train = [items[i] for i in sorted(order[n_valid:])]
        return train, valid
    item = items[0]
    ny = item.image.shape[0]
    strip = max(int(round(fraction * ny)), int(np.ceil(2 * item.diameter)))
    if ny - strip < 2 * item.diameter:
        raise CryoUNetError(
            f"{item.name}: a single micrograph of {ny} working rows is too small to hold out a "
            "validation strip; give --valid-micrographs/--valid-coordinates"
        )
    logger.warning("only one labelled micrograph: its bottom %d working rows are held out for "
                   "validation", strip)
    return [item.rows(0, ny - strip)], [item.rows(ny - strip, ny)]


#: ``LabelledMicrograph.group`` of the training-only datasets (one share together).
TRAIN_ONLY_GROUP = -1


def balanced(weights: np.ndarray, items: Sequence[LabelledMicrograph]) -> np.ndarray:
    """Drawing probabilities that give each group (dataset) with any weight an equal share,
    shared within the group in proportion to ``weights``."""
    groups = np.array([it.group for it in items])
    probability = np.zeros(len(items))
    present = [g for g in np.unique(groups) if weights[groups == g].sum() > 0]
    for g in present:
        inside = groups == g
        probability[inside] = weights[inside] / weights[inside].sum() / len(present)
    return probability


class PatchSampler:
    """Random training patches with their target and weight maps.

    A ``positive_fraction`` of the patches is centred near a randomly chosen pick (balanced
    sampling), a ``hard_negative_fraction`` near one of the model's false positives when
    ``hard_negatives`` are given (hard-negative mining), and the rest are drawn uniformly over the
    micrographs (area-weighted).
    """

    def __init__(self, items: list[LabelledMicrograph], cfg: CryoUNetConfig, patch_size: int,
                 rng: np.random.Generator, hard_negatives: list[np.ndarray] | None = None) -> None:
        self.items = items
        self.hard_fraction = cfg.train.hard_negative_fraction if hard_negatives else 0.0
        self.hard = [(i, xy) for i, arr in enumerate(hard_negatives or []) for xy in arr]
        if not self.hard:
            self.hard_fraction = 0.0
        self.patch = patch_size
        self.rng = rng
        self.positive_fraction = cfg.train.positive_fraction
        self.maps = [make_targets(it.image.shape, it.xy, it.diameter, cfg.target, it.background)
                     for it in items]
        balance = cfg.train.dataset_balance == "equal"

        def share(weights: np.ndarray) -> np.ndarray:
            """Drawing probabilities in proportion to ``weights`` (per dataset when balanced)."""
            return balanced(weights, items) if balance else weights / weights.sum()

        self.area_p = share(np.array([it.image.size for it in items], dtype=np.float64))
        counts = np.array([len(it.xy) for it in items], dtype=np.float64)
        self.pick_p = share(counts) if counts.sum() > 0 else None

    def _padded(self, array: np.ndarray, y0: int, x0: int, fill: float) -> np.ndarray:
        """``patch x patch`` crop at (y0, x0), padded with ``fill`` where it leaves the array."""
        p = self.patch
        out = np.full((p, p), fill, dtype=np.float32)
        ny, nx = array.shape
        ys, xs = max(0, y0), max(0, x0)
        ye, xe = min(ny, y0 + p), min(nx, x0 + p)
        if ys < ye and xs < xe:
            out[ys - y0 : ye - y0, xs - x0 : xe - x0] = array[ys:ye, xs:xe]
        return out

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One ``(image, target, weight)`` patch; padding outside the micrograph has weight 0."""
        p = self.patch
        draw = self.rng.random()
        centre = None
        if self.pick_p is not None and draw < self.positive_fraction:
            idx = int(self.rng.choice(len(self.items), p=self.pick_p))
            centre = self.items[idx].xy[self.rng.integers(len(self.items[idx].xy))]
        elif self.hard and self.positive_fraction <= draw < self.positive_fraction + self.hard_fraction:
            idx, centre = self.hard[int(self.rng.integers(len(self.hard)))]
        if centre is not None:
            item = self.items[idx]
            cx, cy = centre
            jitter = self.rng.uniform(-p / 2 + item.diameter, p / 2 - item.diameter, size=2) \
                if p > 2 * item.diameter else np.zeros(2)
            x0 = int(round(cx + jitter[0])) - p // 2
            y0 = int(round(cy + jitter[1])) - p // 2
        else:
            idx = int(self.rng.choice(len(self.items), p=self.area_p))
            item = self.items[idx]
            ny, nx = item.image.shape
            y0 = int(self.rng.integers(0, max(1, ny - p + 1)))
            x0 = int(self.rng.integers(0, max(1, nx - p + 1)))
        target, weight = self.maps[idx]
        return (
            self._padded(item.image, y0, x0, 0.0),
            self._padded(target, y0, x0, 0.0),
            self._padded(weight, y0, x0, 0.0),
        )
