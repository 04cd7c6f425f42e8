"""Tiled full-micrograph inference, test-time augmentation, ensembles, and picking.

Memory is bounded by the tile size: a micrograph is downsampled to the working scale, then cut into
overlapping tiles whose starts are multiples of the network's pooling factor (so every tile sees
the same pooling grid as the whole image); each tile contributes only its centre, away from the
zero-padded tile borders.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from cryounet.config import PickConfig
from cryounet.errors import CryoUNetError
from cryounet.io.coordinates import Picks
from cryounet.modelio import LoadedModel, calibrated_threshold
from cryounet.postprocess import clean_probability, find_peaks
from cryounet.preprocess import Scale, preprocess

logger = logging.getLogger(__name__)


def _multiple(network: nn.Module) -> int:
    return int(getattr(network, "multiple", 1))


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Tile starts covering ``length`` (a multiple of the pooling factor, as are ``tile`` and
    ``step``): every ``step``, the last one ending exactly at ``length``."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Pad bottom/right to a multiple of ``multiple`` exactly as the U-Net pads its input."""
    ny, nx = image.shape
    pad_y, pad_x = (-ny) % multiple, (-nx) % multiple
    if not (pad_y or pad_x):
        return image
    mode = "reflect" if min(ny, nx) > max(pad_y, pad_x) else "edge"
    return np.pad(image, ((0, pad_y), (0, pad_x)), mode=mode)


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 symmetries of the square (k in 0..7) on the last two dims."""
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def _dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.rot90(x, -(k % 4), dims=(-2, -1))
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return x


@torch.no_grad()
def _forward_probability(network: nn.Module, batch: torch.Tensor, tta: bool) -> torch.Tensor:
    if not tta:
        return torch.sigmoid(network(batch))
    total = torch.zeros_like(batch)
    for k in range(8):
        total += _dihedral_inverse(torch.sigmoid(network(_dihedral(batch, k))), k)
    return total / 8


@torch.no_grad()
def predict_probability(
    network: nn.Module,
    image: np.ndarray,
    tile_size: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    tta: bool = False,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Particle-centre probability for every pixel of a working-scale image.

    Args:
        network: model in eval mode, on ``device``.
        image: normalised ``(ny, nx)`` float32 image.
        tile_size: tile side (rounded up to the pooling multiple); images that fit are done whole.
        overlap: pixels shared by neighbouring tiles; half is discarded on each side.
        batch_size: tiles per forward pass.
        tta: average the 8 flips/rotations.

    Returns:
        ``(ny, nx)`` float32 probabilities.
    """
    image = np.asarray(image, dtype=np.float32)
    ny, nx = image.shape
    m = _multiple(network)
    tile = int(np.ceil(tile_size / m) * m)
    overlap = min(int(overlap), tile - m)
    step = max(m, ((tile - overlap) // m) * m)
    if ny <= tile and nx <= tile:
        batch = torch.from_numpy(image)[None, None].to(device)
        return _forward_probability(network, batch, tta)[0, 0].float().cpu().numpy()

    # Pad once to the pooling multiple, as the network would pad the whole image; tiles then
    # never leave the padded image and see exactly the same values as a whole-image pass.
    padded = _pad_to_multiple(image, m)
    py, px = padded.shape
    ys, xs = _tile_starts(py, tile, step), _tile_starts(px, tile, step)
    th, tw = min(tile, py), min(tile, px)
    out = np.zeros((ny, nx), dtype=np.float32)
    half = overlap // 2

    def keep_range(starts: list[int], i: int, size: int, length: int) -> tuple[int, int]:
        lo = 0 if i == 0 else starts[i] + half
        hi = length if i == len(starts) - 1 else starts[i] + size - (overlap - half)
        return lo, min(hi, length)

    positions = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    for b in range(0, len(positions), batch_size):
        chunk = positions[b : b + batch_size]
        tiles = np.stack([padded[ys[iy] : ys[iy] + th, xs[ix] : xs[ix] + tw] for iy, ix in chunk])
        prob = _forward_probability(network, torch.from_numpy(tiles)[:, None].to(device), tta)
        prob = prob[:, 0].float().cpu().numpy()
        for (iy, ix), p in zip(chunk, prob):
            y0, y1 = keep_range(ys, iy, th, ny)
            x0, x1 = keep_range(xs, ix, tw, nx)
            out[y0:y1, x0:x1] = p[y0 - ys[iy] : y1 - ys[iy], x0 - xs[ix] : x1 - xs[ix]]
    return out


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
    probability maps are on the same grid.
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
        self.pick = pick
        self.device = device
        self.diameter = first.info.diameter_px
        self.preprocess_cfg = first.info.config.preprocess

    @property
    def calibrated_threshold(self) -> float:
        """Mean of the models' thresholds calibrated on validation data (those calibrated with
        test-time augmentation when it is on)."""
        if self.pick.tta:
            missing = [str(m.path) for m in self.models if m.info.threshold_tta is None]
            if missing:
                logger.warning("no threshold calibrated with test-time augmentation for %s; using "
                               "the plain one (retrain, or give --threshold)", ", ".join(missing))
        return calibrated_threshold([m.info for m in self.models], self.pick.tta)

    def probability(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean probability over the ensemble (and its standard deviation when > 1 model)."""
        maps = [
            predict_probability(m.network, image, self.pick.tile_size, self.pick.tile_overlap,
                                self.pick.batch_size, self.pick.tta, self.device)
            for m in self.models
        ]
        if len(maps) == 1:
            return maps[0], None
        stack = np.stack(maps)
        return stack.mean(axis=0), stack.std(axis=0)

    def pick_image(self, micrograph: np.ndarray, threshold: float | None) -> PickResult:
        """Pick one micrograph (input pixels); ``threshold`` None keeps every candidate above
        ``min_score`` (for calibration and curves)."""
        image, scale = preprocess(micrograph, self.diameter, self.preprocess_cfg)
        prob, spread = self.probability(image)
        picks = peaks_to_picks(prob, spread, scale, self.diameter, self.pick, threshold)
        return PickResult(picks, scale, prob, spread)


def candidate_peaks(prob: np.ndarray, diameter: float, pick: PickConfig, min_score: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of a working-scale map after map clean-up, NMS and edge exclusion.

    Args:
        prob: probability map.
        diameter: particle diameter in the map's pixels.
        pick: post-processing settings.
        min_score: lowest peak value kept.
    """
    if pick.opening_radius > 0 or pick.min_component_area > 0 or pick.max_component_area > 0:
        prob = clean_probability(prob, diameter, pick.opening_radius, pick.min_component_area,
                                 pick.max_component_area, pick.component_level)
    xy, scores = find_peaks(prob, pick.nms_radius * diameter, min_score)
    if pick.edge_exclusion > 0 and len(xy):
        d = pick.edge_exclusion * diameter
        ny, nx = prob.shape
        inside = (xy[:, 0] >= d - 0.5) & (xy[:, 0] <= nx - 0.5 - d) & \
                 (xy[:, 1] >= d - 0.5) & (xy[:, 1] <= ny - 0.5 - d)
        xy, scores = xy[inside], scores[inside]
    return xy, scores


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
