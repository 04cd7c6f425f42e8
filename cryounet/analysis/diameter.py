"""Particle-diameter evidence: what a user's picks and micrographs say about the particle size (px).

Four methods, each giving a diameter in pixels of the micrographs, or None with the reason:

- ``box``: the box size recorded in the coordinate files (BOX width/height, a STAR ``_Width``
  column), divided by the box rule's :data:`~cryounet.io.coordinates.BOX_FACTOR`.
- ``spacing``: the pair-correlation function g(r) of the picks. Particles do not overlap, so g is
  about 0 below one diameter (the hole) and has its first peak where neighbours touch; the estimate
  is the hole's edge (where g reaches 0.5), the range runs to that peak. Picks that overlap (a hole
  much smaller than the typical neighbour distance) say nothing about the size and give None.
- ``profile``: the rotational average of the micrograph around the picks. The particle's contrast
  (dark or bright) ends in a zero crossing followed by the opposite-signed halo of the CTF; the
  particle's edge lies between the two (``PROFILE_EDGE`` is the ratio measured on simulated sets).
- ``blobs`` (needs no picks): a Laplacian-of-Gaussian scale space of the downsampled micrograph;
  the scale whose response is most heavy-tailed (kurtosis) is the particles' scale, its strongest
  extrema are taken as picks and measured with ``profile``.

:func:`combine` takes the geometric median of the methods that gave a value and a range; the
numbers quoted in the docs come from ``bench/diameter.py``. The image methods live in
:mod:`cryounet.analysis.image_size`, the file reading in :mod:`cryounet.analysis.diameter_inputs`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree

logger = logging.getLogger(__name__)

#: Picks needed (all micrographs together) before their spacing is read as a size.
MIN_SPACING_PICKS = 20
#: A hole edge below this share of the median nearest-neighbour distance means overlapping picks.
OVERLAP_HOLE_RATIO = 0.4


@dataclass
class MethodEstimate:
    """One method's estimate: ``diameter_px`` (None when the method has nothing to say, ``note``
    says why), a ``low``-``high`` range and the number of picks or micrographs it used."""

    method: str
    diameter_px: float | None
    low: float | None = None
    high: float | None = None
    used: int = 0
    note: str = ""

    def as_dict(self) -> dict:
        return {"method": self.method, "diameter_px": _round(self.diameter_px), "low": _round(self.low),
                "high": _round(self.high), "used": self.used, "note": self.note}


@dataclass
class DiameterEstimate:
    """The combined estimate: ``diameter_px`` (None when no method gave a value), its range, how
    many methods agree (``confidence``: high, medium, low or none) and each method's figures."""

    diameter_px: float | None
    low: float | None
    high: float | None
    confidence: str
    methods: list[MethodEstimate] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"diameter_px": _round(self.diameter_px), "low": _round(self.low), "high": _round(self.high),
                "confidence": self.confidence, "methods": [m.as_dict() for m in self.methods]}

    def describe(self) -> str:
        """One line: the estimate and its range, or why there is none."""
        if self.diameter_px is None:
            return "no estimate (" + "; ".join(f"{m.method}: {m.note}" for m in self.methods) + ")"
        return (f"{self.diameter_px:.0f} px (range {self.low:.0f}-{self.high:.0f} px, {self.confidence} "
                f"confidence; " + ", ".join(f"{m.method} {m.diameter_px:.0f}" for m in self.methods
                                            if m.diameter_px is not None) + ")")


    def report(self) -> str:
        """Lines for a terminal: the estimate, then one line per method."""
        head = (f"particle diameter: {self.describe()}" if self.diameter_px is None else
                f"particle diameter: {self.diameter_px:.0f} px (range {self.low:.0f}-{self.high:.0f} px, "
                f"{self.confidence} confidence)")
        rows = [f"  {m.method:<8} " + (f"{m.diameter_px:6.0f} px  " if m.diameter_px is not None else
                                       "     -     ") + m.note for m in self.methods]
        return "\n".join([head, *rows])


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


# ------------------------------------------------------------------------------------ spacing
def nearest_neighbour_distances(xy_sets: Sequence[np.ndarray]) -> np.ndarray:
    """Distance from each pick to its nearest neighbour on the same micrograph (micrographs with a
    single pick add nothing)."""
    out = [cKDTree(xy).query(xy, k=2)[0][:, 1] for xy in xy_sets if len(xy) >= 2]
    return np.concatenate(out) if out else np.zeros(0)


def pair_correlation(xy_sets: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]],
                     edges: np.ndarray) -> np.ndarray:
    """g(r) of the picks in the rings ``edges`` (px): pair counts over those of uniform picks at the
    same density (no edge correction: g falls a little at large r)."""
    counts = np.zeros(len(edges) - 1)
    weight = 0.0
    for xy, (ny, nx) in zip(xy_sets, shapes):
        if len(xy) < 2:
            continue
        pairs = cKDTree(xy).query_pairs(float(edges[-1]), output_type="ndarray")
        if len(pairs):
            dist = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T)
            counts += 2 * np.histogram(dist, edges)[0]
        weight += len(xy) ** 2 / float(nx * ny)
    rings = np.pi * (edges[1:] ** 2 - edges[:-1] ** 2)
    return counts / max(weight, 1e-12) / rings


def spacing_estimate(xy_sets: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]]) -> MethodEstimate:
    """The ``spacing`` method (see the module docstring)."""
    xy_sets = [np.asarray(xy, dtype=np.float64).reshape(-1, 2) for xy in xy_sets]
    total = sum(len(xy) for xy in xy_sets)
    nn = nearest_neighbour_distances(xy_sets)
    if total < MIN_SPACING_PICKS or len(nn) < MIN_SPACING_PICKS:
        return MethodEstimate("spacing", None, used=total, note=f"too few picks ({total})")
    median = float(np.median(nn))
    edges = np.geomspace(1.0, 4.0 * median, 49)
    centres = np.sqrt(edges[1:] * edges[:-1])
    g = pair_correlation(xy_sets, shapes, edges)
    pair_mean = (g[:-1] + g[1:]) / 2
    reached = np.flatnonzero(pair_mean >= 0.5)
    if not len(reached):
        return MethodEstimate("spacing", None, used=total, note="no neighbour shell in the picks' spacing")
    hole = float(centres[reached[0]])
    if hole < OVERLAP_HOLE_RATIO * median:
        return MethodEstimate("spacing", None, used=total,
                              note=f"picks overlap (pairs down to {hole:.0f} px, median neighbour "
                                   f"{median:.0f} px): their spacing does not show the size")
    smooth = np.convolve(g, np.ones(3) / 3, mode="same")
    window = np.flatnonzero((centres >= hole) & (centres <= 1.5 * hole))
    peak = float(centres[window[np.argmax(smooth[window])]]) if len(window) else hole
    return MethodEstimate("spacing", hole, low=hole, high=max(hole, peak), used=total,
                          note=f"hole edge {hole:.0f} px, first neighbour peak {peak:.0f} px")


def box_estimate(box_sizes: Sequence[float], box_factor: float) -> MethodEstimate:
    """The ``box`` method: the median recorded box size divided by ``box_factor``."""
    sizes = np.asarray([b for b in box_sizes if b and b > 0], dtype=np.float64)
    if not len(sizes):
        return MethodEstimate("box", None, note="no box size recorded in the coordinate files")
    low, mid, high = np.percentile(sizes, [10, 50, 90]) / box_factor
    return MethodEstimate("box", float(mid), low=float(low), high=float(high), used=len(sizes),
                          note=f"median box {np.median(sizes):.0f} px / {box_factor:g}")


# ------------------------------------------------------------------------------------ combining
def combine(methods: Sequence[MethodEstimate]) -> DiameterEstimate:
    """The geometric median of the methods that gave a value; the range spans their values.
    Confidence: ``high`` when two or more agree within 25 %, ``medium`` for one method or a spread
    up to 1.6x, ``low`` beyond, ``none`` without any value."""
    values = [m.diameter_px for m in methods if m.diameter_px is not None]
    if not values:
        return DiameterEstimate(None, None, None, "none", list(methods))
    logs = np.log(values)
    diameter = float(np.exp(np.median(logs)))
    low, high = float(min(values)), float(max(values))
    spread = high / low
    confidence = ("high" if len(values) >= 2 and spread <= 1.25 else
                  "medium" if spread <= 1.6 else "low")
    return DiameterEstimate(diameter, low, high, confidence, list(methods))


#: A training diameter is refused when it lies outside these multiples of the estimate's range
#: (wider for an estimate from one method or methods that disagree).
AGREED_BOUNDS = (0.6, 1.6)
LOOSE_BOUNDS = (0.4, 2.5)
#: ... or when more than this share of the picks have a neighbour closer than CROWDED_DIAMETERS x d.
CROWDED_LIMIT = 0.9
CROWDED_DIAMETERS = 0.8


def diameter_problem(diameter: float, estimate: DiameterEstimate, nn_distances: np.ndarray) -> str | None:
    """Why ``diameter`` (px) contradicts the evidence, in one sentence, or None when it does not."""
    nn = np.asarray(nn_distances, dtype=np.float64)
    if len(nn) >= MIN_SPACING_PICKS:
        share = float((nn < CROWDED_DIAMETERS * diameter).mean())
        if share > CROWDED_LIMIT:
            return (f"{100 * share:.0f} % of the {len(nn)} picks have a neighbour closer than "
                    f"{CROWDED_DIAMETERS:g} x {diameter:g} px (particles that size would overlap)")
    if estimate.diameter_px is None:
        return None
    lo, hi = AGREED_BOUNDS if estimate.confidence == "high" else LOOSE_BOUNDS
    if diameter > hi * estimate.high or diameter < lo * estimate.low:
        ratio = diameter / estimate.diameter_px
        return f"{diameter:g} px is {ratio:.2g} x the estimated diameter"
    return None
