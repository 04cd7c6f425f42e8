"""Particle-diameter evidence (cryounet.analysis): each method on simulated data, the combination,
the rule ``train`` applies, and the file side (box sizes, missing picks)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryounet.analysis.diameter import (DiameterEstimate, MethodEstimate, box_estimate, combine,
                                        diameter_problem, nearest_neighbour_distances, spacing_estimate)
from cryounet.analysis.diameter_inputs import (estimate_diameter, read_evidence, recorded_box_sizes,
                                               training_diameter_problem)
from cryounet.analysis.image_size import blob_estimate, edge_radius, profile_estimate
from cryounet.errors import CryoUNetError
from cryounet.io.coordinates import BOX_FACTOR
from cryounet.io.mrc import read_micrograph


def _simulated(root: Path, diameter: float, size: int, particles: int, seed: int,
               pixel_size: float = 2.0) -> list[Path]:
    from cryounet.simulate import SimulationConfig, simulate_dataset

    cfg = SimulationConfig(n_micrographs=2, size=size, diameter_px=diameter,
                           particles_per_micrograph=particles, seed=seed, pixel_size=pixel_size)
    return [p for p in simulate_dataset(cfg, root) if p.suffix == ".mrc"]


@pytest.fixture(scope="module")
def sim_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[float, list[Path]]:
    """Two simulated sets: 20 px particles on 384 px micrographs, 40 px on 512 px ones."""
    root = tmp_path_factory.mktemp("diameter")
    return {20.0: _simulated(root / "d20", 20.0, 384, 70, 5),
            40.0: _simulated(root / "d40", 40.0, 512, 40, 6)}


def _within(value: float | None, truth: float, tolerance: float = 0.25) -> bool:
    return value is not None and abs(value / truth - 1) <= tolerance


@pytest.mark.parametrize("truth", [20.0, 40.0])
def test_each_method_and_the_combination_within_25_percent(sim_sets, truth: float) -> None:
    mics = sim_sets[truth]
    evidence = read_evidence(mics, mics[0].parent)
    images = [np.asarray(read_micrograph(p), dtype=np.float32) for p in mics]
    spacing = spacing_estimate(evidence.xy, evidence.shapes)
    profile = profile_estimate(images, evidence.xy, 3 * truth)
    blobs = blob_estimate(images)
    for method in (spacing, profile, blobs):
        assert _within(method.diameter_px, truth), method
    both = estimate_diameter(mics, mics[0].parent)
    alone = estimate_diameter(mics)
    assert _within(both.diameter_px, truth) and _within(alone.diameter_px, truth)
    assert [m.method for m in both.methods] == ["box", "spacing", "profile", "blobs"]
    assert [m.method for m in alone.methods] == ["blobs"]


def test_spacing_of_overlapping_or_few_picks_says_nothing() -> None:
    rng = np.random.default_rng(0)
    uniform = [rng.uniform(0, 500, (200, 2))]  # random points: no hole at any size
    estimate = spacing_estimate(uniform, [(500, 500)])
    assert estimate.diameter_px is None and "overlap" in estimate.note
    few = spacing_estimate([rng.uniform(0, 500, (5, 2))], [(500, 500)])
    assert few.diameter_px is None and "too few picks" in few.note


def test_spacing_of_a_hard_core_lattice() -> None:
    """Picks on a square lattice 30 px apart: the hole ends at 30 px."""
    grid = np.stack(np.meshgrid(np.arange(15, 600, 30.0), np.arange(15, 600, 30.0)), -1).reshape(-1, 2)
    estimate = spacing_estimate([grid], [(600, 600)])
    assert _within(estimate.diameter_px, 30.0, 0.1)


def test_profile_edge_of_a_dark_disk_with_a_bright_halo() -> None:
    radii = np.arange(40.0)
    profile = np.where(radii < 10, -1.0, np.where(radii < 14, 0.4, 0.0))
    zero, halo = edge_radius(radii, profile)
    assert 9 <= zero <= 10 and halo == 10
    assert edge_radius(radii, np.zeros(40)) is None


def test_box_sizes_from_box_and_star_files(tmp_path: Path) -> None:
    box = tmp_path / "m.box"
    box.write_text("10 20 96 96\n200 40 96 96\n")
    assert recorded_box_sizes(box) == [96.0] * 4
    star = tmp_path / "m.star"
    star.write_text("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_Width\n_Height\n1 2 60 60\n3 4 60 60\n")
    assert recorded_box_sizes(star) == [60.0] * 4
    plain = tmp_path / "p.star"
    plain.write_text("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 2\n")
    assert recorded_box_sizes(plain) == []
    estimate = box_estimate([96.0] * 4, BOX_FACTOR)
    assert estimate.diameter_px == 64.0
    assert box_estimate([], BOX_FACTOR).diameter_px is None


def test_combine_median_range_and_confidence() -> None:
    agree = combine([MethodEstimate("a", 50.0), MethodEstimate("b", 55.0), MethodEstimate("c", None)])
    assert agree.confidence == "high" and (agree.low, agree.high) == (50.0, 55.0)
    assert 50 < agree.diameter_px < 55
    spread = combine([MethodEstimate("a", 30.0), MethodEstimate("b", 90.0), MethodEstimate("c", 40.0)])
    assert spread.confidence == "low" and spread.diameter_px == pytest.approx(40.0)
    assert combine([MethodEstimate("a", 40.0)]).confidence == "medium"
    none = combine([MethodEstimate("a", None, note="why")])
    assert none.diameter_px is None and none.confidence == "none" and "why" in none.describe()
    assert "a" in agree.report() and agree.as_dict()["methods"][2]["diameter_px"] is None


def test_diameter_problem_rules() -> None:
    estimate = DiameterEstimate(56.0, 50.0, 60.0, "high")
    spread = np.full(100, 70.0)  # every pick 70 px from its neighbour
    assert diameter_problem(56.0, estimate, spread) is None
    assert "100 % of the 100 picks" in diameter_problem(300.0, estimate, spread)
    assert "x the estimated diameter" in diameter_problem(100.0, estimate, np.zeros(0))  # > 1.6 x 60
    assert "x the estimated diameter" in diameter_problem(25.0, estimate, np.zeros(0))   # < 0.6 x 50
    loose = DiameterEstimate(56.0, 50.0, 60.0, "medium")
    assert diameter_problem(100.0, loose, np.zeros(0)) is None  # within 2.5 x
    assert diameter_problem(300.0, DiameterEstimate(None, None, None, "none"), np.zeros(0)) is None


def test_training_diameter_problem_names_the_estimate_and_the_override(sim_sets) -> None:
    mics = sim_sets[40.0]
    assert training_diameter_problem(40.0, mics, mics[0].parent) is None
    message = training_diameter_problem(200.0, mics, mics[0].parent)
    assert message.startswith("--diameter 200 px does not fit")
    assert "suggest" in message and "--diameter-check off" in message and "cryounet diameter" in message
    assert training_diameter_problem(600.0, mics, mics[0].parent) is None  # preprocessing's own error


def test_particle_free_micrographs_leave_the_diameter_unchecked(tmp_path: Path) -> None:
    from cryounet.simulate import SimulationConfig, simulate_dataset

    # Contamination blobs are far larger than the particles; without picks they are no evidence.
    cfg = SimulationConfig(n_micrographs=2, size=192, diameter_px=12.0, particles_per_micrograph=0,
                           contamination_range=(2, 3), seed=5)
    mics = simulate_dataset(cfg, tmp_path / "negatives")
    assert training_diameter_problem(12.0, mics, tmp_path / "negatives") is None


def test_a_diameter_in_angstrom_is_named_as_such(tmp_path: Path) -> None:
    """40 px particles at 5 A/px: 200 (Angstrom) is refused, and the message converts it."""
    mics = _simulated(tmp_path, 40.0, 512, 40, 7, pixel_size=5.0)
    message = training_diameter_problem(200.0, mics, mics[0].parent)
    assert "200 looks like Angstrom: at the header's 5 A/px it is 40 px" in message


def test_missing_coordinates_are_named(sim_sets, tmp_path: Path) -> None:
    mics = sim_sets[20.0]
    with pytest.raises(CryoUNetError, match="coordinates folder does not exist"):
        read_evidence(mics, tmp_path / "nowhere")
    with pytest.raises(CryoUNetError, match="no coordinate file matches"):
        read_evidence(mics, tmp_path)
    # train's check leaves bad inputs to the training loaders, which name them in their own words
    assert training_diameter_problem(20.0, mics, tmp_path / "nowhere") is None


def test_estimate_from_picks_in_memory(sim_sets) -> None:
    from cryounet.analysis.diameter_inputs import estimate_from, evidence_from_picks

    mics = sim_sets[40.0]
    xy = read_evidence(mics, mics[0].parent).xy
    estimate = estimate_from(evidence_from_picks(mics, xy, [60.0]))
    assert _within(estimate.diameter_px, 40.0) and estimate.methods[0].diameter_px == 40.0
    with pytest.raises(CryoUNetError, match="1 pick lists for 2 micrographs"):
        evidence_from_picks(mics, xy[:1])


def test_nearest_neighbour_distances() -> None:
    xy = np.array([[0.0, 0.0], [3.0, 4.0], [100.0, 0.0]])
    assert nearest_neighbour_distances([xy, xy[:1]]) == pytest.approx([5.0, 5.0, np.hypot(97, 4)])
