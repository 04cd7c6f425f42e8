"""Filters on picked coordinates, as ``cryounet postprocess`` applies them: score threshold, NMS
distance, distance to the edges, count per micrograph."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryounet.io.coordinates import Picks
from cryounet.postprocess.peaks import nms


@dataclass
class FilterConfig:
    """Filters applied to picks (all distances in pixels of the micrograph).

    Attributes:
        threshold: keep picks with score >= threshold (None keeps all).
        nms_distance: re-apply non-maximum suppression at this distance (None: no).
        edge_distance: drop picks closer than this to any edge of the micrograph.
        max_particles: keep at most this many picks per micrograph, best first (0: no limit).
    """

    threshold: float | None = None
    nms_distance: float | None = None
    edge_distance: float = 0.0
    max_particles: int = 0


def filter_picks(picks: Picks, shape_yx: tuple[int, int] | None, cfg: FilterConfig) -> Picks:
    """Apply :class:`FilterConfig` to one micrograph's picks (best scores first in the result).

    ``shape_yx`` (the micrograph's ``(ny, nx)``) is needed only for the edge filter.
    """
    scores = picks.scores if picks.scores is not None else np.ones(len(picks))
    keep = np.ones(len(picks), dtype=bool)
    if cfg.threshold is not None:
        keep &= scores >= cfg.threshold
    if cfg.edge_distance > 0:
        if shape_yx is None:
            raise ValueError("the edge filter needs the micrograph shape")
        ny, nx = shape_yx
        x, y = picks.xy[:, 0], picks.xy[:, 1]
        d = cfg.edge_distance
        keep &= (x >= d - 0.5) & (x <= nx - 0.5 - d) & (y >= d - 0.5) & (y <= ny - 0.5 - d)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    if cfg.nms_distance:
        idx = idx[nms(picks.xy[idx], scores[idx], cfg.nms_distance)]
    if cfg.max_particles > 0:
        idx = idx[: cfg.max_particles]
    return picks.subset(idx)
