"""Synthetic cryo-EM micrographs with known particle positions (for ``cryounet demo`` and tests).

The "protein" is a small random blob model: a sum of 3D Gaussians inside a sphere of the particle
diameter (or, with ``shape="shell"``, on a spherical shell, hollow as apoferritin is), fixed by the
seed. Each particle is an analytic projection of that model at a uniformly
random orientation (the Gaussian centres are rotated and 2D Gaussians summed, so sub-pixel
positions are exact and no voxel volume is rotated). The particles are pasted darker than the
background, the micrograph is filtered by a CTF, a structured low-frequency background
(ice-thickness gradient and smooth blobs) is added, then white Gaussian noise scaled to the
requested SNR. Optionally, a carbon-film edge and contamination blobs (never labelled, no particles
on them) are added as negatives (:mod:`cryounet.simulate_negatives`).

Conventions: ``x`` is the column and ``y`` the row of a particle centre, in pixels, origin at the
first pixel (as everywhere in CryoUNet).
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cryounet.errors import CryoUNetError
from cryounet.simulate_negatives import check_negative_settings, draw_negatives

logger = logging.getLogger(__name__)

#: Extra entropy mixed into the seed of the protein model, so it never shares a stream with the
#: per-micrograph random numbers.
_DENSITY_STREAM = 0x5EED
#: Random sequential addition tries at most this many candidates per requested particle.
_TRIES_PER_PARTICLE = 60
#: Minimum distance between particle centres, in diameters.
MIN_DISTANCE = 1.0
#: The protein models: a solid blob, or a hollow shell (its projection a ring, as apoferritin's).
SHAPES = ("blob", "shell")
#: Inner radius of a shell's Gaussian centres, as a fraction of their outer radius.
SHELL_INNER = 0.75


@dataclass
class SimulationConfig:
    """Parameters of a synthetic data set.

    Attributes:
        n_micrographs: number of micrographs.
        size: side of the square micrographs, in pixels.
        diameter_px: particle diameter in pixels.
        particles_per_micrograph: target particle count; fewer are placed (and a debug message
            logged) when they do not fit without overlapping; 0 gives particle-free micrographs
            (empty coordinate files).
        snr: signal variance / noise variance, the signal measured on the CTF-filtered particles
            inside their footprints (disks of the particle diameter).
        pixel_size: pixel size in Angstrom.
        defocus_range_um: each micrograph's defocus (underfocus, micrometres) is drawn uniformly
            from this range.
        voltage_kv: acceleration voltage in kV.
        cs_mm: spherical aberration in mm.
        amplitude_contrast: fraction of amplitude contrast (0 to 1).
        background_strength: standard deviation of the structured low-frequency background, as a
            fraction of the signal standard deviation (0 disables it).
        edge_margin: particle centres keep this fraction of the diameter away from the edges.
        carbon_probability: chance (0 to 1) that a micrograph shows the edge of a hole in the carbon
            film: the part outside a circle several micrographs wide is carbon, darker by
            ``carbon_darkness`` noise standard deviations, finely textured; no particles there.
        carbon_darkness: the carbon's extra darkness, in noise standard deviations.
        contamination_range: ``(min, max)`` contamination blobs (ice crystals, ethane) per
            micrograph, 1 to 6 particle diameters across, not labelled, no particles on them.
        contamination_darkness: the contamination's darkness, in noise standard deviations.
        shape: the protein model, one of :data:`SHAPES`: ``"blob"`` (solid) or ``"shell"``
            (hollow: projections are rings with a fainter centre).
        seed: seed of every random choice; the same seed gives identical data.
    """

    n_micrographs: int = 6
    size: int = 512
    diameter_px: float = 32.0
    particles_per_micrograph: int = 40
    snr: float = 0.05
    pixel_size: float = 2.0
    defocus_range_um: tuple[float, float] = (1.0, 2.5)
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    background_strength: float = 0.5
    edge_margin: float = 0.5
    carbon_probability: float = 0.0
    carbon_darkness: float = 0.8
    contamination_range: tuple[int, int] = (0, 0)
    contamination_darkness: float = 4.0
    shape: str = "blob"
    seed: int = 0

    def validate(self) -> None:
        """Check every field.

        Raises:
            CryoUNetError: naming the first field with an invalid value.
        """

        def bad(field: str, problem: str) -> CryoUNetError:
            return CryoUNetError(
                f"simulation setting '{field}' = {getattr(self, field)!r}: {problem}"
            )

        if not isinstance(self.n_micrographs, (int, np.integer)) or self.n_micrographs < 1:
            raise bad("n_micrographs", "must be an integer >= 1")
        if not isinstance(self.size, (int, np.integer)) or self.size <= 0:
            raise bad("size", "must be a positive integer (pixels)")
        if not _finite(self.diameter_px) or self.diameter_px <= 0:
            raise bad("diameter_px", "must be a positive number of pixels")
        if self.diameter_px >= self.size / 2:
            raise bad("diameter_px", f"must be less than half the size ({self.size / 2} px)")
        if (
            not isinstance(self.particles_per_micrograph, (int, np.integer))
            or self.particles_per_micrograph < 0
        ):
            raise bad("particles_per_micrograph", "must be an integer >= 0")
        if not _finite(self.snr) or self.snr <= 0:
            raise bad("snr", "must be a positive number")
        if not _finite(self.pixel_size) or self.pixel_size <= 0:
            raise bad("pixel_size", "must be a positive number of Angstrom")
        try:
            low, high = (float(v) for v in self.defocus_range_um)
        except (TypeError, ValueError):
            raise bad("defocus_range_um", "must be two numbers (min, max) in micrometres") from None
        if not (_finite(low) and _finite(high)) or low <= 0 or high < low:
            raise bad("defocus_range_um", "must satisfy 0 < min <= max (micrometres of underfocus)")
        if not _finite(self.voltage_kv) or self.voltage_kv <= 0:
            raise bad("voltage_kv", "must be a positive number of kV")
        if not _finite(self.cs_mm) or self.cs_mm < 0:
            raise bad("cs_mm", "must be a number >= 0 (mm)")
        if not _finite(self.amplitude_contrast) or not 0 <= self.amplitude_contrast < 1:
            raise bad("amplitude_contrast", "must be in [0, 1)")
        if not _finite(self.background_strength) or self.background_strength < 0:
            raise bad("background_strength", "must be a number >= 0")
        if not _finite(self.edge_margin) or self.edge_margin < 0:
            raise bad("edge_margin", "must be a number >= 0")
        if 2 * self.edge_margin * self.diameter_px >= self.size - 1:
            raise bad("edge_margin", "leaves no room for particles inside the micrograph")
        check_negative_settings(self, bad)
        if self.shape not in SHAPES:
            raise bad("shape", f"must be one of {', '.join(SHAPES)}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise bad("seed", "must be an integer >= 0")


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------ the protein
@dataclass
class BlobDensity:
    """A 3D density made of isotropic Gaussians, centred on the origin.

    Attributes:
        centres: ``(K, 3)`` Gaussian centres in pixels (x, y, z).
        sigmas: ``(K,)`` Gaussian widths in pixels.
        weights: ``(K,)`` peak densities.
        box_size: side of the cube (pixels) that holds the density and its projections.
    """

    centres: np.ndarray
    sigmas: np.ndarray
    weights: np.ndarray
    box_size: int

    def volume(self) -> np.ndarray:
        """The density sampled on its ``box_size`` cube (z, y, x), centre at ``box_size // 2``."""
        grid = np.arange(self.box_size, dtype=np.float64) - self.box_size // 2
        vol = np.zeros((self.box_size,) * 3)
        for (cx, cy, cz), s, w in zip(self.centres, self.sigmas, self.weights):
            gx, gy, gz = (np.exp(-((grid - c) ** 2) / (2 * s * s)) for c in (cx, cy, cz))
            vol += w * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
        return vol.astype(np.float32)

    def project(self, rotations: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Project the density along z after rotating it, analytically.

        Args:
            rotations: ``(P, 3, 3)`` rotation matrices.
            offsets: ``(P, 2)`` sub-pixel ``(x, y)`` position of each particle centre relative to
                the box pixel ``box_size // 2``, normally in [0, 1).

        Returns:
            ``(P, box_size, box_size)`` float64 projections (rows = y, columns = x).
        """
        rotated = np.einsum("pij,kj->pki", rotations, self.centres)  # (P, K, 3)
        grid = np.arange(self.box_size, dtype=np.float64) - self.box_size // 2
        inv = 1.0 / (2.0 * self.sigmas**2)  # (K,)
        # Line integral of a 3D Gaussian along z: a 2D Gaussian of peak w * sqrt(2 pi) * sigma.
        amp = self.weights * math.sqrt(2 * math.pi) * self.sigmas
        dx = grid[None, None, :] - offsets[:, 0, None, None] - rotated[:, :, 0, None]
        dy = grid[None, None, :] - offsets[:, 1, None, None] - rotated[:, :, 1, None]
        ex = np.exp(-(dx**2) * inv[None, :, None]) * amp[None, :, None]  # (P, K, B)
        ey = np.exp(-(dy**2) * inv[None, :, None])
        return np.einsum("pkr,pkc->prc", ey, ex)


def make_density(diameter_px: float, seed: int, shape: str = "blob") -> BlobDensity:
    """A deterministic random "protein" of the given diameter.

    A blob has 20 to 40 Gaussians placed so that their density (to two sigma) stays inside a
    sphere of radius ``diameter_px / 2``. A shell has 60 to 100 narrower ones whose centres lie
    between :data:`SHELL_INNER` and 1 of that reach from the centre, so it is hollow.

    Args:
        diameter_px: particle diameter in pixels.
        seed: the same seed gives the same density.
        shape: one of :data:`SHAPES`.
    """
    if shape not in SHAPES:
        raise CryoUNetError(f"unknown protein shape {shape!r}: use one of {', '.join(SHAPES)}")
    rng = np.random.default_rng([int(seed), _DENSITY_STREAM])
    radius = diameter_px / 2.0
    shell = shape == "shell"
    count = int(rng.integers(60, 101) if shell else rng.integers(20, 41))
    sigmas = rng.uniform(*((0.05, 0.08) if shell else (0.06, 0.11)), count) * diameter_px
    direction = rng.normal(size=(count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    reach = np.maximum(radius - 2.0 * sigmas, 0.0)
    if shell:
        distance = reach * rng.uniform(SHELL_INNER, 1.0, count)
    else:  # uniform in the ball of radius reach: distance ~ reach * u^(1/3)
        distance = reach * rng.uniform(0, 1, count) ** (1 / 3)
    centres = direction * distance[:, None]
    centres -= centres.mean(axis=0)  # centre of mass near the origin, so pick centres are true
    weights = rng.uniform(0.5, 1.0, count)
    box_size = int(math.ceil(diameter_px * 1.25))
    box_size += 1 - box_size % 2  # odd, so box_size // 2 is the exact centre pixel
    return BlobDensity(centres, sigmas, weights, box_size)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3, 3)`` uniform random rotation matrices (from normalised Gaussian quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


# ----------------------------------------------------------------------------------------- optics
def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Angstrom for an acceleration voltage in kV."""
    volts = voltage_kv * 1e3
    return 12.2642598 / math.sqrt(volts * (1 + 0.978466e-6 * volts))


def ctf_rfft(
    shape: tuple[int, int],
    pixel_size: float,
    defocus_um: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
) -> np.ndarray:
    """The CTF of an isotropic defocus, on the grid of ``np.fft.rfft2`` of an image of ``shape``.

    ``CTF(k) = sqrt(1 - A^2) sin(chi) + A cos(chi)`` with
    ``chi = pi lambda df k^2 - pi/2 Cs lambda^3 k^4`` and ``df > 0`` for underfocus. With this sign
    the CTF is positive at low frequency, so the (negated, dark) projections stay dark; it equals
    RELION's convention applied to positive density.
    """
    ny, nx = shape
    ky = np.fft.fftfreq(ny, d=pixel_size)
    kx = np.fft.rfftfreq(nx, d=pixel_size)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2  # 1/Angstrom^2
    lam = electron_wavelength(voltage_kv)
    defocus = defocus_um * 1e4  # Angstrom
    cs = cs_mm * 1e7  # Angstrom
    chi = math.pi * lam * defocus * k2 - 0.5 * math.pi * cs * lam**3 * k2 * k2
    amp = amplitude_contrast
    return math.sqrt(1 - amp * amp) * np.sin(chi) + amp * np.cos(chi)


# ------------------------------------------------------------------------------------- placement
def place_particles(
    n: int, size: int, diameter_px: float, edge_margin: float, rng: np.random.Generator,
    allowed: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Random sequential addition of up to ``n`` non-overlapping centres.

    Args:
        allowed: optional filter of the ``(K, 2)`` candidate centres (a boolean per candidate),
            e.g. to keep particles off carbon and contamination.

    Returns:
        ``(M, 2)`` float ``(x, y)`` centres, ``M <= n``, at least ``MIN_DISTANCE`` diameters apart
        and ``edge_margin`` diameters from the edges.
    """
    if n <= 0:
        return np.zeros((0, 2))
    low = edge_margin * diameter_px
    high = (size - 1) - low
    min_d2 = (MIN_DISTANCE * diameter_px) ** 2
    accepted = np.empty((n, 2))
    count = 0
    tries = _TRIES_PER_PARTICLE * n
    candidates = rng.uniform(low, high, size=(tries, 2))
    if allowed is not None:
        candidates = candidates[allowed(candidates)]
    for cand in candidates:
        if count and (((accepted[:count] - cand) ** 2).sum(axis=1) < min_d2).any():
            continue
        accepted[count] = cand
        count += 1
        if count == n:
            break
    if count < n:
        logger.debug(
            "placed %d of %d particles (diameter %.1f px) on a %d px micrograph: no room for more",
            count, n, diameter_px, size,
        )
    return accepted[:count].copy()


# ----------------------------------------------------------------------------------- micrographs
@dataclass
class SimulatedMicrograph:
    """One synthetic micrograph and its parts.

    Attributes:
        image: ``(size, size)`` float32 micrograph (signal + background + noise).
        xy: ``(N, 2)`` particle centres (x = column, y = row).
        signal: the CTF-filtered particles alone (float32).
        background: the structured background alone (float32).
        noise_sigma: standard deviation of the white noise.
        signal_power: signal variance used for the SNR.
        defocus_um: the micrograph's defocus.
        negatives: the carbon and contamination alone (float32, zeros without them).
        covered: where the carbon or a contaminant lies (bool; no particle overlaps it).
        carbon: whether the micrograph shows a carbon edge.
        contaminants: how many contamination blobs it has.
    """

    image: np.ndarray
    xy: np.ndarray
    signal: np.ndarray
    background: np.ndarray
    noise_sigma: float
    signal_power: float
    defocus_um: float
    negatives: np.ndarray | None = None
    covered: np.ndarray | None = None
    carbon: bool = False
    contaminants: int = 0


def _paste(canvas: np.ndarray, patches: np.ndarray, corners: np.ndarray) -> None:
    """Add each patch to the canvas at its top-left ``(row, col)`` corner, clipped to the canvas."""
    ny, nx = canvas.shape
    box = patches.shape[1]
    for patch, (r0, c0) in zip(patches, corners):
        ra, ca = max(r0, 0), max(c0, 0)
        rb, cb = min(r0 + box, ny), min(c0 + box, nx)
        if ra < rb and ca < cb:
            canvas[ra:rb, ca:cb] += patch[ra - r0 : rb - r0, ca - c0 : cb - c0]


def _footprint(shape: tuple[int, int], xy: np.ndarray, radius: float) -> np.ndarray:
    """Boolean mask of the pixels within ``radius`` of any centre."""
    mask = np.zeros(shape, dtype=bool)
    r = int(math.ceil(radius))
    offsets = np.arange(-r, r + 1)
    for x, y in xy:
        cx, cy = int(round(x)), int(round(y))
        rows = np.clip(cy + offsets, 0, shape[0] - 1)
        cols = np.clip(cx + offsets, 0, shape[1] - 1)
        inside = (rows[:, None] - y) ** 2 + (cols[None, :] - x) ** 2 <= radius * radius
        mask[np.ix_(rows, cols)] |= inside
    return mask


def _signal_image(
    shape: tuple[int, int],
    xy: np.ndarray,
    density: BlobDensity,
    ctf: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The negated projections at ``xy``, filtered by ``ctf`` (float64)."""
    canvas = np.zeros(shape)
    if len(xy):
        rotations = random_rotations(len(xy), rng)
        base = np.floor(xy)
        projections = density.project(rotations, xy - base)
        half = density.box_size // 2
        corners = base[:, ::-1].astype(int) - half  # (row, col) of each box's first pixel
        _paste(canvas, -projections, corners)
    return np.fft.irfft2(np.fft.rfft2(canvas) * ctf, s=shape)


def _background(size: int, diameter_px: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance low-frequency background: an ice-thickness gradient plus smooth blobs."""
    coords = (np.arange(size) - (size - 1) / 2) / size
    angle = rng.uniform(0, 2 * math.pi)
    plane = math.cos(angle) * coords[None, :] + math.sin(angle) * coords[:, None]
    plane /= plane.std() or 1.0
    # Blobs: white noise low-passed to features a few particle diameters wide.
    white = rng.normal(size=(size, size))
    ky = np.fft.fftfreq(size)
    kx = np.fft.rfftfreq(size)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    scale = 4.0 * diameter_px  # feature size in pixels
    blobs = np.fft.irfft2(np.fft.rfft2(white) * np.exp(-2 * (math.pi * scale) ** 2 * k2 / 4),
                          s=(size, size))
    blobs -= blobs.mean()
    blobs /= blobs.std() or 1.0
    total = plane + blobs
    total -= total.mean()
    return total / (total.std() or 1.0)


def simulate_micrograph_parts(
    cfg: SimulationConfig, rng: np.random.Generator, density: BlobDensity | None = None
) -> SimulatedMicrograph:
    """Simulate one micrograph and keep its parts (signal, background, noise level).

    Args:
        cfg: the simulation settings (validated here).
        rng: source of every random choice for this micrograph.
        density: the protein; by default ``make_density(cfg.diameter_px, cfg.seed, cfg.shape)``.
    """
    cfg.validate()
    if density is None:
        density = make_density(cfg.diameter_px, cfg.seed, cfg.shape)
    size = int(cfg.size)
    shape = (size, size)
    defocus = float(rng.uniform(*cfg.defocus_range_um))
    ctf = ctf_rfft(shape, cfg.pixel_size, defocus, cfg.voltage_kv, cfg.cs_mm,
                   cfg.amplitude_contrast)
    negatives = draw_negatives(size, cfg.diameter_px, cfg.carbon_probability,
                               cfg.contamination_range, rng)
    clearance = cfg.diameter_px / 2.0
    xy = place_particles(int(cfg.particles_per_micrograph), size, cfg.diameter_px,
                         cfg.edge_margin, rng,
                         (lambda c: negatives.allows(c, clearance)) if negatives else None)
    signal = _signal_image(shape, xy, density, ctf, rng)
    if len(xy):
        power = _signal_power(signal, xy, cfg.diameter_px)
    else:  # no particle fits: scale the noise as if one typical particle were there
        ref_xy = np.array([[size / 2.0, size / 2.0]])
        ref = _signal_image(shape, ref_xy, density, ctf, np.random.default_rng(cfg.seed))
        power = _signal_power(ref, ref_xy, cfg.diameter_px)
    power = max(power, 1e-30)
    signal_std = math.sqrt(power)
    background = _background(size, cfg.diameter_px, rng) * (cfg.background_strength * signal_std)
    noise_sigma = math.sqrt(power / cfg.snr)
    noise = rng.normal(0.0, noise_sigma, size=shape)
    dark = negatives.render(shape, ctf, noise_sigma, cfg.carbon_darkness, cfg.contamination_darkness,
                            rng) if negatives else np.zeros(shape)
    image = (signal + background + noise + dark).astype(np.float32)
    return SimulatedMicrograph(
        image=image,
        xy=xy,
        signal=signal.astype(np.float32),
        background=background.astype(np.float32),
        noise_sigma=noise_sigma,
        signal_power=power,
        defocus_um=defocus,
        negatives=dark.astype(np.float32),
        covered=negatives.covered(shape),
        carbon=negatives.carbon is not None,
        contaminants=len(negatives.contaminants),
    )


def _signal_power(signal: np.ndarray, xy: np.ndarray, diameter_px: float) -> float:
    """Mean square of the signal (relative to its image mean) inside the particle footprints."""
    mask = _footprint(signal.shape, xy, diameter_px / 2.0)
    values = signal[mask] - signal.mean()
    return float(np.mean(values * values))


def simulate_micrograph(
    cfg: SimulationConfig, rng: np.random.Generator, density: BlobDensity | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate one micrograph.

    Args:
        cfg: the simulation settings.
        rng: source of every random choice for this micrograph.
        density: the protein; by default ``make_density(cfg.diameter_px, cfg.seed, cfg.shape)``.

    Returns:
        ``(image, xy)``: the ``(size, size)`` float32 micrograph and the ``(N, 2)`` float particle
        centres (x = column, y = row, pixels, origin at the first pixel).

    Raises:
        CryoUNetError: invalid settings.
    """
    parts = simulate_micrograph_parts(cfg, rng, density)
    return parts.image, parts.xy


def micrograph_rngs(cfg: SimulationConfig) -> list[np.random.Generator]:
    """One independent generator per micrograph, derived from ``cfg.seed``.

    Micrograph ``i`` is the same whatever ``n_micrographs`` is.
    """
    children = np.random.SeedSequence(int(cfg.seed)).spawn(int(cfg.n_micrographs))
    return [np.random.default_rng(child) for child in children]


def simulated_names(cfg: SimulationConfig) -> list[str]:
    """The files :func:`simulate_dataset` writes for ``cfg`` (names in its output folder)."""
    return [f"mic_{i:03d}{suffix}" for i in range(int(cfg.n_micrographs)) for suffix in (".mrc", ".star")] \
        + ["meta.json"]


def simulate_dataset(cfg: SimulationConfig, output_dir: str | os.PathLike[str]) -> list[Path]:
    """Write a synthetic data set: micrographs, RELION coordinate files and ``meta.json``.

    Files: ``mic_000.mrc``, ``mic_000.star``, ... and ``meta.json`` with ``diameter_px``,
    ``pixel_size``, ``n_micrographs`` and ``seed`` (plus the other settings under ``config``).
    The same seed gives identical files.

    Args:
        cfg: the simulation settings.
        output_dir: folder to write into (created if missing).

    Returns:
        The MRC paths, in order.

    Raises:
        CryoUNetError: invalid settings.
    """
    from cryounet.io.atomic import write_text_atomic
    from cryounet.io.coordinates import Picks, write_star_picks
    from cryounet.io.mrc import write_mrc

    cfg.validate()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    density = make_density(cfg.diameter_px, cfg.seed, cfg.shape)
    paths: list[Path] = []
    counts: list[int] = []
    defoci: list[float] = []
    carbon: list[bool] = []
    contaminants: list[int] = []
    for i, rng in enumerate(micrograph_rngs(cfg)):
        parts = simulate_micrograph_parts(cfg, rng, density)
        mrc_path = out / f"mic_{i:03d}.mrc"
        write_mrc(mrc_path, parts.image, pixel_size=cfg.pixel_size)
        write_star_picks(out / f"mic_{i:03d}.star", Picks(parts.xy))
        paths.append(mrc_path)
        counts.append(len(parts.xy))
        defoci.append(round(parts.defocus_um, 4))
        carbon.append(parts.carbon)
        contaminants.append(parts.contaminants)
        logger.debug("%s: %d particles, defocus %.2f um", mrc_path.name, len(parts.xy),
                     parts.defocus_um)
    config = asdict(cfg)
    config["defocus_range_um"] = list(config["defocus_range_um"])
    config["contamination_range"] = [int(v) for v in config["contamination_range"]]
    meta = {
        "diameter_px": float(cfg.diameter_px),
        "pixel_size": float(cfg.pixel_size),
        "n_micrographs": int(cfg.n_micrographs),
        "seed": int(cfg.seed),
        "particles": counts,
        "defocus_um": defoci,
        "carbon": carbon,
        "contaminants": contaminants,
        "config": config,
    }
    write_text_atomic(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    return paths
