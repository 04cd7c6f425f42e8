"""Tests of the synthetic-data simulator (cryounet.simulate) and the ``simulate`` command."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cryounet.errors import CryoUNetError
from cryounet.simulate import (
    SimulationConfig,
    ctf_rfft,
    make_density,
    micrograph_rngs,
    simulate_dataset,
    simulate_micrograph,
    simulate_micrograph_parts,
)

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(size=256, diameter_px=24.0, particles_per_micrograph=20)


def _pairwise_min_distance(xy: np.ndarray) -> float:
    d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    d[np.diag_indices(len(xy))] = np.inf
    return float(d.min())


def _far_from(xy: np.ndarray, points: np.ndarray, distance: float) -> np.ndarray:
    d = np.sqrt(((points[:, None, :] - xy[None, :, :]) ** 2).sum(-1)).min(axis=1)
    return d > distance


# -------------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_micrographs() -> None:
    cfg = SimulationConfig(**SMALL)
    img1, xy1 = simulate_micrograph(cfg, np.random.default_rng(3))
    img2, xy2 = simulate_micrograph(cfg, np.random.default_rng(3))
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(xy1, xy2)


def test_different_seeds_differ() -> None:
    img1, xy1 = simulate_micrograph(SimulationConfig(**SMALL), np.random.default_rng(1))
    img2, xy2 = simulate_micrograph(SimulationConfig(**SMALL), np.random.default_rng(2))
    assert not np.array_equal(img1, img2)
    assert xy1.shape != xy2.shape or not np.allclose(xy1, xy2)
    # The protein depends on cfg.seed.
    d0, d1 = make_density(24.0, 0), make_density(24.0, 1)
    assert d0.centres.shape != d1.centres.shape or not np.allclose(d0.centres, d1.centres)
    np.testing.assert_array_equal(make_density(24.0, 0).centres, d0.centres)


def test_dataset_is_deterministic(tmp_path: Path) -> None:
    cfg = SimulationConfig(n_micrographs=2, seed=7, **SMALL)
    a = simulate_dataset(cfg, tmp_path / "a")
    b = simulate_dataset(cfg, tmp_path / "b")
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes()
        assert pa.with_suffix(".star").read_text() == pb.with_suffix(".star").read_text()
    other = simulate_dataset(SimulationConfig(n_micrographs=2, seed=8, **SMALL), tmp_path / "c")
    assert other[0].read_bytes() != a[0].read_bytes()


# ------------------------------------------------------------------------- shapes and placement
def test_shapes_and_dtypes() -> None:
    img, xy = simulate_micrograph(SimulationConfig(size=200, diameter_px=20.0),
                                  np.random.default_rng(0))
    assert img.shape == (200, 200) and img.dtype == np.float32
    assert xy.ndim == 2 and xy.shape[1] == 2 and np.issubdtype(xy.dtype, np.floating)
    assert np.isfinite(img).all()


def test_particle_count_spacing_and_margin() -> None:
    cfg = SimulationConfig()
    for rng in micrograph_rngs(SimulationConfig(n_micrographs=3)):
        _, xy = simulate_micrograph(cfg, rng)
        assert len(xy) == cfg.particles_per_micrograph
        assert _pairwise_min_distance(xy) >= cfg.diameter_px * 0.999
        margin = cfg.edge_margin * cfg.diameter_px
        assert xy.min() >= margin - 1e-9
        assert xy.max() <= cfg.size - 1 - margin + 1e-9


def test_crowded_micrograph_places_fewer_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    cfg = SimulationConfig(size=128, diameter_px=30.0, particles_per_micrograph=200)
    with caplog.at_level(logging.DEBUG, logger="cryounet.simulate"):
        img, xy = simulate_micrograph(cfg, np.random.default_rng(0))
    assert 0 < len(xy) < 200
    assert _pairwise_min_distance(xy) >= 30.0 * 0.999
    assert any("placed" in r.getMessage() for r in caplog.records)
    assert np.isfinite(img).all()


def test_no_particles_still_gives_noise() -> None:
    cfg = SimulationConfig(size=256, diameter_px=24.0, particles_per_micrograph=0)
    img, xy = simulate_micrograph(cfg, np.random.default_rng(0))
    assert xy.shape == (0, 2)
    assert img.std() > 0 and np.isfinite(img).all()


# ------------------------------------------------------------------------------------- content
def test_particles_are_dark_at_listed_coordinates() -> None:
    cfg = SimulationConfig()
    rng = np.random.default_rng(11)
    d = cfg.diameter_px
    particle_means, background_means = [], []
    for mic_rng in micrograph_rngs(SimulationConfig(n_micrographs=2)):
        img, xy = simulate_micrograph(cfg, mic_rng)
        low = ndimage.gaussian_filter(img.astype(np.float64), d / 6)
        r = int(np.ceil(d / 3))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disk = (yy**2 + xx**2 <= (d / 3) ** 2).astype(np.float64)
        disk_mean = ndimage.convolve(low, disk / disk.sum(), mode="reflect")
        rows, cols = np.round(xy[:, 1]).astype(int), np.round(xy[:, 0]).astype(int)
        particle_means.append(disk_mean[rows, cols])
        points = rng.uniform(d, cfg.size - 1 - d, size=(3000, 2))
        points = points[_far_from(xy, points, d)]
        background_means.append(disk_mean[np.round(points[:, 1]).astype(int),
                                          np.round(points[:, 0]).astype(int)])
    pm, bm = np.concatenate(particle_means), np.concatenate(background_means)
    # Darker (negative contrast), by many standard errors of the particle mean.
    margin = bm.mean() - pm.mean()
    assert margin > 5 * bm.std() / np.sqrt(len(pm))
    # Most particles, not just a few, are darker than a typical background spot.
    assert np.mean(pm < np.median(bm)) > 0.75


@pytest.mark.parametrize("snr", [0.05, 0.5])
def test_measured_snr_matches_request(snr: float) -> None:
    cfg = SimulationConfig(snr=snr, n_micrographs=3)
    excess, noise = [], []
    for rng in micrograph_rngs(cfg):
        parts = simulate_micrograph_parts(cfg, rng)
        # The simulator's own bookkeeping is exact.
        assert parts.signal_power / parts.noise_sigma**2 == pytest.approx(snr, rel=1e-9)
        # Independent estimate from the image: excess power inside particle footprints over the
        # variance far from particles.
        img = parts.image.astype(np.float64)
        yy, xx = np.mgrid[0 : cfg.size, 0 : cfg.size]
        dist = np.full(img.shape, np.inf)
        for x, y in parts.xy:
            np.minimum(dist, np.hypot(xx - x, yy - y), out=dist)
        inside, far = dist <= cfg.diameter_px / 2, dist > cfg.diameter_px
        noise_var = img[far].var()
        excess.append(np.mean((img[inside] - img[far].mean()) ** 2) - noise_var)
        noise.append(noise_var)
    measured = np.mean(excess) / np.mean(noise)
    assert snr / 2 < measured < snr * 2


def test_ctf_is_positive_at_low_frequency() -> None:
    ctf = ctf_rfft((64, 64), 2.0, 1.5, amplitude_contrast=0.1)
    assert ctf[0, 0] == pytest.approx(0.1)
    assert ctf[0, 1] > 0.1  # rises from the amplitude contrast before the first zero
    assert ctf.min() < -0.5 and ctf.max() > 0.5


# ------------------------------------------------------------------------------------- files
def test_dataset_files_are_readable(tmp_path: Path) -> None:
    from cryounet.io.coordinates import read_coordinates
    from cryounet.io.mrc import read_micrograph, read_pixel_size

    cfg = SimulationConfig(n_micrographs=2, pixel_size=1.5, seed=4, **SMALL)
    paths = simulate_dataset(cfg, tmp_path / "out")
    assert [p.name for p in paths] == ["mic_000.mrc", "mic_001.mrc"]
    rngs = micrograph_rngs(cfg)
    for path, rng in zip(paths, rngs):
        expected_img, expected_xy = simulate_micrograph(cfg, rng)
        img = read_micrograph(path)
        assert img.shape == (256, 256)
        np.testing.assert_array_equal(np.asarray(img), expected_img)
        assert read_pixel_size(path) == pytest.approx(1.5)
        picks = read_coordinates(path.with_suffix(".star"))
        np.testing.assert_allclose(picks.xy, expected_xy, atol=0.006)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["diameter_px"] == 24.0 and meta["pixel_size"] == 1.5
    assert meta["n_micrographs"] == 2 and meta["seed"] == 4


@pytest.mark.parametrize(
    "field, value",
    [
        ("size", 0),
        ("size", -5),
        ("diameter_px", 0.0),
        ("diameter_px", 300.0),  # not < size / 2
        ("n_micrographs", 0),
        ("snr", 0.0),
        ("snr", -1.0),
        ("pixel_size", 0.0),
        ("defocus_range_um", (2.0, 1.0)),
        ("amplitude_contrast", 1.5),
    ],
)
def test_invalid_config_raises(field: str, value: object, tmp_path: Path) -> None:
    cfg = SimulationConfig(**{field: value})
    with pytest.raises(CryoUNetError, match=field):
        simulate_micrograph(cfg, np.random.default_rng(0))
    with pytest.raises(CryoUNetError, match=field):
        simulate_dataset(cfg, tmp_path / "bad")


# ------------------------------------------------------------------------------------- command
def test_cli_simulate(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    argv = ["simulate", "--output", str(out), "--micrographs", "2", "--size", "256",
            "--diameter", "24"]
    proc = subprocess.run([sys.executable, "-m", "cryounet", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        ".cryounet-output.json", "meta.json", "mic_000.mrc", "mic_000.star", "mic_001.mrc", "mic_001.star"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["diameter_px"] == 24.0 and meta["n_micrographs"] == 2


def test_command_requires_output() -> None:
    module = importlib.import_module("cryounet.commands.simulate")
    parser = argparse.ArgumentParser(prog="cryounet simulate")
    module.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--micrographs", "2"])


# ------------------------------------------------------------------------------------- negatives
NEGATIVE_SMALL = dict(size=256, diameter_px=16.0, particles_per_micrograph=40)


def test_defaults_reproduce_the_micrographs_without_negatives() -> None:
    # Values written by the simulator before it had negatives: the defaults draw nothing more.
    cfg = SimulationConfig(size=128, diameter_px=16.0, particles_per_micrograph=12, seed=7, n_micrographs=2)
    expected = [
        ([[13.893421, 73.639974], [104.439591, 88.956703]], 2104.6737933683908, 16.536252975463867,
         12.091554, 25.081059),
        ([[14.609141, 32.718472], [22.823051, 18.487922]], -3954.8226158051402, 17.093360900878906,
         23.557913, -15.874577),
    ]
    for rng, (xy2, total, std, p1, p2) in zip(micrograph_rngs(cfg), expected):
        parts = simulate_micrograph_parts(cfg, rng)
        assert len(parts.xy) == 12
        np.testing.assert_allclose(parts.xy[:2], xy2, atol=1e-6)
        assert float(parts.image.astype(np.float64).sum()) == pytest.approx(total, rel=1e-5)
        assert float(parts.image.std()) == pytest.approx(std, rel=1e-6)
        assert parts.image[5, 7] == pytest.approx(p1, rel=1e-5)
        assert parts.image[100, 64] == pytest.approx(p2, rel=1e-5)
        assert not parts.carbon and parts.contaminants == 0 and not parts.covered.any()
        assert not parts.negatives.any()


def _footprints_touch(parts, radius: float) -> bool:
    from cryounet.simulate import _footprint

    return bool((_footprint(parts.covered.shape, parts.xy, radius) & parts.covered).any())


def test_carbon_edge_is_dark_curved_and_free_of_particles() -> None:
    cfg = SimulationConfig(carbon_probability=1.0, n_micrographs=4, seed=2, **NEGATIVE_SMALL)
    for rng in micrograph_rngs(cfg):
        parts = simulate_micrograph_parts(cfg, rng)
        assert parts.carbon and parts.contaminants == 0
        covered = parts.covered
        assert 0.05 < covered.mean() < 0.95  # part of the micrograph, bounded by an edge
        assert len(parts.xy) > 0 and not _footprints_touch(parts, cfg.diameter_px / 2)
        img = parts.image.astype(np.float64)
        # Darker by about carbon_darkness noise sigmas (noise sigma >> signal at this SNR).
        step = img[~covered].mean() - img[covered].mean()
        assert 0.5 * cfg.carbon_darkness * parts.noise_sigma < step < 2 * cfg.carbon_darkness * parts.noise_sigma
        # A sharp edge: the covered region is one connected piece whose border is a smooth curve.
        labels, count = ndimage.label(covered)
        assert count == 1


def test_carbon_probability_sets_the_share_of_micrographs() -> None:
    cfg = SimulationConfig(carbon_probability=0.5, n_micrographs=40, seed=1, size=64, diameter_px=8.0,
                           particles_per_micrograph=2)
    shown = [simulate_micrograph_parts(cfg, rng).carbon for rng in micrograph_rngs(cfg)]
    assert 8 < sum(shown) < 32


def test_contamination_is_dark_unlabelled_and_free_of_particles() -> None:
    cfg = SimulationConfig(contamination_range=(2, 4), n_micrographs=3, seed=5, **NEGATIVE_SMALL)
    for rng in micrograph_rngs(cfg):
        parts = simulate_micrograph_parts(cfg, rng)
        assert not parts.carbon and 2 <= parts.contaminants <= 4
        assert parts.covered.any() and not _footprints_touch(parts, cfg.diameter_px / 2)
        img = ndimage.gaussian_filter(parts.image.astype(np.float64), 2)
        core = ndimage.binary_erosion(parts.covered, iterations=3)
        particle_drop = img[~parts.covered].mean() - img[np.round(parts.xy[:, 1]).astype(int),
                                                             np.round(parts.xy[:, 0]).astype(int)].mean()
        blob_drop = img[~parts.covered].mean() - img[core].mean()
        assert blob_drop > 5 * max(particle_drop, 0.0) and blob_drop > 2 * parts.noise_sigma


def test_particle_free_dataset_trains_as_background(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from cryounet.config import PreprocessConfig
    from cryounet.io.coordinates import read_coordinates
    from cryounet.training.data import load_labelled

    cfg = SimulationConfig(particles_per_micrograph=0, carbon_probability=1.0, contamination_range=(1, 2),
                           n_micrographs=2, size=256, diameter_px=16.0)
    paths = simulate_dataset(cfg, tmp_path / "neg")
    assert all(len(read_coordinates(p.with_suffix(".star")).xy) == 0 for p in paths)
    meta = json.loads((tmp_path / "neg" / "meta.json").read_text())
    assert meta["particles"] == [0, 0] and meta["carbon"] == [True, True]
    assert all(1 <= n <= 2 for n in meta["contaminants"])
    assert meta["config"]["contamination_range"] == [1, 2]
    with caplog.at_level(logging.WARNING):
        items, unlabelled = load_labelled(paths, tmp_path / "neg", cfg.diameter_px, PreprocessConfig())
    assert len(items) == 2 and not unlabelled and all(len(i.xy) == 0 for i in items)
    assert "trained as background only" in caplog.text


@pytest.mark.parametrize("field, value", [
    ("carbon_probability", 1.5), ("carbon_probability", -0.1), ("carbon_darkness", -1.0),
    ("contamination_range", (3, 1)), ("contamination_range", (-1, 2)), ("contamination_range", (1.5, 2)),
    ("contamination_range", 3), ("contamination_darkness", float("nan")),
])
def test_invalid_negative_settings_raise(field: str, value: object) -> None:
    with pytest.raises(CryoUNetError, match=field):
        SimulationConfig(**{field: value}).validate()


def test_cli_simulate_negatives(tmp_path: Path) -> None:
    out = tmp_path / "neg"
    argv = ["simulate", "--output", str(out), "--micrographs", "2", "--size", "128", "--diameter", "12",
            "--particles", "0", "--carbon-probability", "1", "--contamination", "1", "3",
            "--carbon-darkness", "0.5", "--contamination-darkness", "3"]
    proc = subprocess.run([sys.executable, "-m", "cryounet", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["particles"] == [0, 0] and meta["carbon"] == [True, True]
    assert meta["config"]["carbon_darkness"] == 0.5 and meta["config"]["contamination_darkness"] == 3.0
    assert meta["config"]["contamination_range"] == [1, 3]
    bad = subprocess.run([sys.executable, "-m", "cryounet", "simulate", "--output", str(tmp_path / "bad"),
                          "--carbon-probability", "2"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--carbon-probability" in bad.stderr
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------- shells
def _mean_projection(shape: str) -> np.ndarray:
    from cryounet.simulate import random_rotations
    density = make_density(48.0, 4, shape)
    rotations = random_rotations(100, np.random.default_rng(0))
    return density.project(rotations, np.zeros((100, 2))).mean(axis=0)


def test_a_shell_projects_to_a_ring_and_a_blob_does_not() -> None:
    for shape, hollow in (("shell", True), ("blob", False)):
        mean = _mean_projection(shape)
        centre = mean.shape[0] // 2
        profile = mean[centre]
        rim = profile[: centre + 1].max()
        # a ring: the centre is clearly fainter than the rim; a solid blob is densest near it
        assert bool(profile[centre] < 0.85 * rim) is hollow, (shape, profile[centre], rim)
    # and its density stays inside the particle diameter (to two sigma)
    density = make_density(48.0, 4, "shell")
    reach = np.linalg.norm(density.centres, axis=1) + 2 * density.sigmas
    assert reach.max() <= 24.0 * 1.05


def test_shape_is_recorded_and_checked(tmp_path: Path) -> None:
    cfg = SimulationConfig(n_micrographs=1, shape="shell", **SMALL)
    simulate_dataset(cfg, tmp_path / "shell")
    assert json.loads((tmp_path / "shell" / "meta.json").read_text())["config"]["shape"] == "shell"
    with pytest.raises(CryoUNetError, match="shape.*blob, shell"):
        SimulationConfig(shape="ring").validate()
    with pytest.raises(CryoUNetError, match="unknown protein shape 'ring'"):
        make_density(24.0, 0, "ring")


def test_the_blob_is_the_one_drawn_before_shapes_existed() -> None:
    # the default shape draws exactly what make_density drew before it had a shape
    rng = np.random.default_rng([3, 0x5EED])
    count = int(rng.integers(20, 41))
    sigmas = rng.uniform(0.06, 0.11, count) * 30.0
    density = make_density(30.0, 3)
    assert len(density.centres) == count
    np.testing.assert_array_equal(density.sigmas, sigmas)
