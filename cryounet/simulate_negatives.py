"""Negatives for synthetic micrographs: a carbon-film edge and contamination blobs.

Both are darker than the ice (thicker material), are never labelled, and keep particles off
them (:meth:`Negatives.allows`). Their geometry is drawn first, so that the particles can be placed
around it; their image is drawn last, in units of the micrograph's noise level.

- Carbon edge: the micrograph shows the rim of a circular hole in the carbon film. The hole's
  circle has a radius of several micrograph sizes, so the edge is nearly straight to gently
  curved; everything outside the circle is carbon. The carbon is darker by a constant absorption
  (``carbon_darkness`` noise standard deviations) over a ramp of a few pixels and carries a fine
  amorphous texture that, like the edge itself, goes through the micrograph's CTF (fringes at the
  edge, Thon rings in the texture).
- Contamination: compact irregular blobs (ice crystals, ethane contamination) 1 to 6 particle
  diameters across, some rounded, some faceted, much darker than a particle
  (``contamination_darkness`` noise standard deviations, varied per blob), with a CTF fringe.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

#: Hole radius, in micrograph sizes (a 1-2 um hole seen at 1-2 A/px is several micrographs wide).
HOLE_RADIUS = (3.0, 8.0)
#: The carbon edge's distance from the micrograph centre, in micrograph sizes (either side).
EDGE_OFFSET = 0.35
#: Width of the carbon edge's ramp in pixels.
EDGE_RAMP_PX = (2.0, 5.0)
#: Mean contaminant radius, in particle diameters (so 1 to 6 diameters across).
CONTAMINANT_RADIUS = (0.5, 3.0)
#: Relative thickness of the carbon's fine texture.
CARBON_TEXTURE = 0.6
#: RMS of the CTF-filtered carbon and contaminant structure where they lie, in noise sigmas.
PHASE_RMS = 0.5
#: Weight of a contaminant in the CTF-filtered (phase) image relative to the carbon film.
CONTAMINANT_PHASE = 2.0


@dataclass
class CarbonEdge:
    """Carbon outside a circle (the hole): ``centre`` (x, y) and ``radius`` in pixels, with an
    edge ramp of ``ramp`` pixels."""

    centre: np.ndarray
    radius: float
    ramp: float

    def signed_distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance outside the hole (> 0 on the carbon, < 0 in the hole), in pixels."""
        return np.hypot(x - self.centre[0], y - self.centre[1]) - self.radius

    def coverage(self, shape: tuple[int, int]) -> np.ndarray:
        """Fraction of carbon per pixel (0 in the hole, 1 on the film, a ramp between)."""
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
        return np.clip(0.5 + self.signed_distance(xx, yy) / self.ramp, 0.0, 1.0)


@dataclass
class Contaminant:
    """A compact dark blob: its outline is ``radius * (1 + sum a_k cos(k phi + p_k))`` around
    ``centre`` (x, y), or a rounded polygon of ``sides`` sides (0 for none) under that modulation."""

    centre: np.ndarray
    radius: float
    amplitudes: np.ndarray
    phases: np.ndarray
    sides: int
    rotation: float
    darkness: float

    @property
    def reach(self) -> float:
        """An upper bound of the outline's distance from the centre, in pixels."""
        polygon = 1.0 / math.cos(math.pi / self.sides) if self.sides else 1.0
        return self.radius * polygon * (1.0 + float(np.abs(self.amplitudes).sum())) + 1.0

    def outline(self, phi: np.ndarray) -> np.ndarray:
        """The outline's distance from the centre at angles ``phi``."""
        k = np.arange(2, 2 + len(self.amplitudes))
        modulation = 1.0 + (self.amplitudes * np.cos(k * phi[..., None] + self.phases)).sum(-1)
        r = self.radius * np.maximum(modulation, 0.3)
        if self.sides:
            wedge = 2 * math.pi / self.sides
            r = r / np.cos(np.mod(phi - self.rotation, wedge) - wedge / 2)
        return r

    def paint(self, canvas: np.ndarray, weight: float) -> None:
        """Add ``weight`` times the blob's coverage (1 inside, a 1.5 px ramp at the outline)."""
        ny, nx = canvas.shape
        reach = self.reach + 2
        r0, r1 = max(int(self.centre[1] - reach), 0), min(int(self.centre[1] + reach) + 1, ny)
        c0, c1 = max(int(self.centre[0] - reach), 0), min(int(self.centre[0] + reach) + 1, nx)
        if r0 >= r1 or c0 >= c1:
            return
        yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
        dx, dy = xx - self.centre[0], yy - self.centre[1]
        inside = self.outline(np.arctan2(dy, dx)) - np.hypot(dx, dy)
        canvas[r0:r1, c0:c1] += weight * np.clip(0.5 + inside / 1.5, 0.0, 1.0)


@dataclass
class Negatives:
    """The carbon edge (or None) and the contaminants of one micrograph."""

    carbon: CarbonEdge | None = None
    contaminants: list[Contaminant] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.carbon is not None or bool(self.contaminants)

    def allows(self, xy: np.ndarray, clearance: float) -> np.ndarray:
        """Which ``(N, 2)`` centres keep ``clearance`` pixels off the carbon and every contaminant."""
        ok = np.ones(len(xy), dtype=bool)
        if self.carbon is not None:
            ok &= self.carbon.signed_distance(xy[:, 0], xy[:, 1]) < -(clearance + self.carbon.ramp)
        for blob in self.contaminants:
            ok &= np.hypot(xy[:, 0] - blob.centre[0], xy[:, 1] - blob.centre[1]) > blob.reach + clearance
        return ok

    def coverage(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The carbon's coverage and the contaminants' summed (darkness-weighted) coverage."""
        carbon = self.carbon.coverage(shape) if self.carbon is not None else np.zeros(shape)
        blobs = np.zeros(shape)
        for blob in self.contaminants:
            blob.paint(blobs, blob.darkness)
        return carbon, blobs

    def covered(self, shape: tuple[int, int]) -> np.ndarray:
        """Where the carbon or a contaminant lies (bool)."""
        carbon, blobs = self.coverage(shape)
        return (carbon > 0) | (blobs > 0)

    def render(self, shape: tuple[int, int], ctf: np.ndarray, noise_sigma: float, carbon_darkness: float,
               contamination_darkness: float, rng: np.random.Generator) -> np.ndarray:
        """The negatives' image (float64, <= 0 on average where they lie): absorption plus the
        CTF-filtered film texture and edges, scaled to ``noise_sigma``."""
        carbon, blobs = self.coverage(shape)
        covered = (carbon > 0) | (blobs > 0)
        if not covered.any():
            return np.zeros(shape)
        phase = np.zeros(shape)
        if self.carbon is not None:
            texture = _fine_texture(shape, rng)
            phase += carbon * (1.0 + CARBON_TEXTURE * texture)
        phase += CONTAMINANT_PHASE * np.minimum(blobs, 1.0)
        filtered = np.fft.irfft2(np.fft.rfft2(-phase) * ctf, s=shape)
        filtered -= filtered[~covered].mean() if (~covered).any() else filtered.mean()
        rms = math.sqrt(float(np.mean(filtered[covered] ** 2))) or 1.0
        absorption = carbon_darkness * carbon + contamination_darkness * blobs
        return noise_sigma * (PHASE_RMS * filtered / rms - absorption)


def _fine_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance grainy texture: white noise smoothed over about a pixel."""
    white = rng.normal(size=shape)
    ky = np.fft.fftfreq(shape[0])
    kx = np.fft.rfftfreq(shape[1])
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    texture = np.fft.irfft2(np.fft.rfft2(white) * np.exp(-2 * (math.pi * 1.0) ** 2 * k2), s=shape)
    texture -= texture.mean()
    return texture / (texture.std() or 1.0)


def check_negative_settings(cfg: Any, bad: Callable[[str, str], Exception]) -> None:
    """Check a :class:`~cryounet.simulate.SimulationConfig`'s negatives fields; ``bad(field,
    problem)`` makes the error raised for the first invalid one."""
    if not _finite(cfg.carbon_probability) or not 0 <= cfg.carbon_probability <= 1:
        raise bad("carbon_probability", "must be between 0 and 1")
    for name in ("carbon_darkness", "contamination_darkness"):
        if not _finite(getattr(cfg, name)) or getattr(cfg, name) < 0:
            raise bad(name, "must be a number >= 0 (noise standard deviations)")
    try:
        low, high = cfg.contamination_range
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (low, high))
    except (TypeError, ValueError):
        ok = False
    if not ok or not 0 <= low <= high:
        raise bad("contamination_range", "must be two integers (min, max) with 0 <= min <= max")


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def draw_negatives(size: int, diameter_px: float, carbon_probability: float,
                   contamination_range: tuple[int, int], rng: np.random.Generator) -> Negatives:
    """The negatives' geometry for one micrograph.

    Nothing is drawn from ``rng`` when ``carbon_probability`` is 0 and the contamination range is
    ``(0, 0)``, so micrographs without negatives are those of a simulator without them.

    Args:
        size: micrograph side in pixels.
        diameter_px: particle diameter (sets the contaminants' sizes).
        carbon_probability: chance that the micrograph shows a carbon edge.
        contamination_range: ``(min, max)`` contaminants, the count drawn uniformly.
        rng: this micrograph's random numbers.
    """
    negatives = Negatives()
    if carbon_probability > 0 and rng.uniform() < carbon_probability:
        radius = float(rng.uniform(*HOLE_RADIUS)) * size
        angle = rng.uniform(0, 2 * math.pi)
        offset = float(rng.uniform(-EDGE_OFFSET, EDGE_OFFSET)) * size
        direction = np.array([math.cos(angle), math.sin(angle)])
        centre = np.full(2, (size - 1) / 2.0) + (radius + offset) * direction
        negatives.carbon = CarbonEdge(centre, radius, float(rng.uniform(*EDGE_RAMP_PX)))
    low, high = (int(v) for v in contamination_range)
    if high > 0:
        for _ in range(int(rng.integers(low, high + 1))):
            negatives.contaminants.append(_draw_contaminant(size, diameter_px, rng))
    return negatives


def _draw_contaminant(size: int, diameter_px: float, rng: np.random.Generator) -> Contaminant:
    harmonics = 11  # k = 2 .. 12: a lumpy outline with a rough edge
    amplitudes = np.abs(rng.normal(0.0, 0.35, harmonics)) / np.arange(2, 2 + harmonics) ** 1.3
    sides = int(rng.choice([0, 0, 0, 5, 6, 6]))  # mostly rounded, some faceted (ice crystals)
    low, high = CONTAMINANT_RADIUS  # log-uniform: small blobs more often than large ones
    radius = math.exp(rng.uniform(math.log(low), math.log(high))) * diameter_px
    return Contaminant(
        centre=rng.uniform(0, size - 1, 2),
        radius=radius,
        amplitudes=amplitudes * (0.3 if sides else 1.0),
        phases=rng.uniform(0, 2 * math.pi, harmonics),
        sides=sides,
        rotation=float(rng.uniform(0, 2 * math.pi)),
        darkness=float(rng.uniform(0.7, 1.3)),
    )
