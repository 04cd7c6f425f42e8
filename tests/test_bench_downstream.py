"""bench/downstream.py's pure parts: the group split, background positions, the good-class rule,
the estimate and the reading of RELION's class assignments (no RELION, no data needed)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from cryounet.evaluation.metrics import count_matches

BENCH = Path(__file__).resolve().parents[1] / "bench" / "downstream.py"


@pytest.fixture(scope="module")
def ds():
    spec = importlib.util.spec_from_file_location("bench_downstream", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_downstream"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_downstream", None)


def test_split_follows_the_maximum_matching_not_a_greedy_one(ds):
    truth = np.array([[0.0, 0.0], [8.0, 0.0], [300.0, 300.0]])
    # Pick 0 is near both annotations; matching it to the first would leave pick 1 unmatched.
    picks = np.array([[4.0, 0.0], [-4.0, 0.0], [100.0, 100.0]])
    pick_ok, truth_ok = ds.split_matches(picks, np.array([0.9, 0.8, 0.99]), truth, radius=5.0)
    assert pick_ok.tolist() == [True, True, False]
    assert truth_ok.tolist() == [True, True, False]


def test_split_calls_the_lower_scored_duplicate_the_false_positive(ds):
    truth = np.array([[50.0, 50.0]])
    picks = np.array([[52.0, 50.0], [48.0, 50.0]])
    pick_ok, truth_ok = ds.split_matches(picks, np.array([0.3, 0.9]), truth, radius=5.0)
    assert pick_ok.tolist() == [False, True] and truth_ok.tolist() == [True]


def test_split_agrees_with_the_engine_count_on_random_points(ds):
    rng = np.random.default_rng(3)
    for _ in range(5):
        truth, picks = rng.uniform(0, 200, (40, 2)), rng.uniform(0, 200, (45, 2))
        pick_ok, truth_ok = ds.split_matches(picks, rng.uniform(size=45), truth, radius=12.0)
        n = count_matches(picks, truth, 12.0)
        assert pick_ok.sum() == truth_ok.sum() == n
        assert count_matches(picks[pick_ok], truth[truth_ok], 12.0) == n


def test_split_of_empty_lists(ds):
    pick_ok, truth_ok = ds.split_matches(np.zeros((0, 2)), np.zeros(0), np.array([[1.0, 1.0]]), 5.0)
    assert pick_ok.shape == (0,) and truth_ok.tolist() == [False]


def test_background_positions_keep_their_distances_and_are_seeded(ds):
    avoid = np.array([[100.0, 100.0], [300.0, 250.0]])
    kwargs = dict(shape=(400, 500), clearance=60.0, margin=40.0, spacing=30.0)
    a = ds.background_positions(avoid, 20, rng=np.random.default_rng(0), **kwargs)
    b = ds.background_positions(avoid, 20, rng=np.random.default_rng(0), **kwargs)
    assert a.shape == (20, 2) and np.array_equal(a, b)
    assert (np.hypot(*(a[:, None] - avoid[None]).transpose(2, 0, 1)) > 60).all()
    assert (a >= 40).all() and (a[:, 0] <= 460).all() and (a[:, 1] <= 360).all()
    gaps = np.hypot(*(a[:, None] - a[None]).transpose(2, 0, 1)) + np.eye(len(a)) * 1e9
    assert gaps.min() >= 30


def test_background_positions_are_fewer_where_there_is_no_room(ds):
    got = ds.background_positions(np.array([[50.0, 50.0]]), 10, (100, 100), 45.0, 10.0, 200.0,
                                  np.random.default_rng(0))
    assert len(got) == 1


def classes(ds, counts: list[dict[str, int]]):
    return [ds.ClassStats(i + 1, 1 / len(counts), 20.0 + 10 * i, c) for i, c in enumerate(counts)]


def test_good_class_rule(ds):
    table = classes(ds, [{"truth": 50, "control": 0},    # particles, background avoids it: good
                         {"truth": 45, "control": 9},    # 45 % of truth vs 45 % of control: bad
                         {"truth": 1, "control": 0},     # 1 % of the annotations: too few, bad
                         {"truth": 4, "control": 11}])   # background: bad
    totals = {"truth": 100, "control": 20}
    assert ds.good_classes(table, totals, enrichment=2.0, min_truth_share=0.02) == [1]
    assert ds.good_classes(table, totals, enrichment=0.9, min_truth_share=0.02) == [1, 2]
    assert ds.good_classes(table, totals, enrichment=2.0, min_truth_share=0.0) == [1, 3]
    assert ds.good_classes(table, totals, enrichment=0.9, min_truth_share=0.02, max_resolution=25) == [1]


def test_group_summary_and_estimate(ds):
    table = classes(ds, [{"truth": 90, "false_pos": 30, "control": 5},
                         {"truth": 10, "false_pos": 30, "control": 45}])
    table[0].good = True
    totals = {"truth": 100, "false_pos": 60, "control": 50}
    summary = {g: ds.group_summary(table, g, n) for g, n in totals.items()}
    assert summary["truth"]["good_share"] == pytest.approx(0.9)
    assert summary["truth"]["best_good_resolution"] == 20.0
    assert summary["control"]["main_class"] == {"number": 2, "share": 0.9, "resolution": 30.0, "good": False}
    assert ds.group_summary(table, "missed", 0)["good_share"] is None
    estimate = ds.real_particle_estimate(summary, tp=140, n_picks=200)
    # s_fp 0.5, s_truth 0.9, s_control 0.1: half the false positives behave like particles.
    assert estimate["mixture_fraction"] == pytest.approx(0.5)
    assert estimate["mixture"] == pytest.approx(30.0)
    assert estimate["excess"] == pytest.approx(24.0)
    assert estimate["precision"] == pytest.approx(0.7)
    assert estimate["precision_mixture"] == pytest.approx(0.85)


STAR_MODEL = """
data_model_classes

loop_
_rlnReferenceImage #1
_rlnClassDistribution #2
_rlnEstimatedResolution #3
000001@Class2D/run_it002_classes.mrcs 0.6 25.0
000002@Class2D/run_it002_classes.mrcs 0.4 60.0
"""

STAR_DATA = """
data_particles

loop_
_rlnCoordinateX #1
_rlnCoordinateY #2
_rlnImageName #3
_rlnMicrographName #4
_rlnClassNumber #5
10.000000 20.000000 000001@Particles/truth/Micrographs/m1.mrcs Micrographs/m1.mrc 1
30.000000 40.000000 000002@Particles/truth/Micrographs/m1.mrcs Micrographs/m1.mrc 1
11.250000 20.500000 000001@Particles/picks/Micrographs/m1.mrcs Micrographs/m1.mrc 1
70.000000 80.000000 000002@Particles/picks/Micrographs/m1.mrcs Micrographs/m1.mrc 1
500.000000 500.000000 000001@Particles/control/Micrographs/m1.mrcs Micrographs/m1.mrc 2
"""


def test_class_table_counts_every_group_and_subset(ds, tmp_path):
    (tmp_path / "Class2D").mkdir()
    (tmp_path / "Class2D" / "run_it002_model.star").write_text(STAR_MODEL)
    (tmp_path / "Class2D" / "run_it002_data.star").write_text(STAR_DATA)
    groups = {"truth": np.array([[10.0, 20.0], [30.0, 40.0]]), "picks": np.array([[11.25, 20.5], [70.0, 80.0]]),
              "false_pos": np.array([[70.0, 80.0]]), "missed": np.array([[30.0, 40.0]]),
              "control": np.array([[500.0, 500.0]])}
    table = ds.class_table(tmp_path, 2, [ds.Micrograph(Path("m1.mrc"), groups, 1)])
    assert [c.distribution for c in table] == [0.6, 0.4]
    assert table[0].counts == {"truth": 2, "picks": 2, "false_pos": 1, "missed": 1, "control": 0}
    assert table[1].counts == {"truth": 0, "picks": 0, "false_pos": 0, "missed": 0, "control": 1}


def test_without_relion_it_says_so_and_measures_nothing(ds, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ds.shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "argv", ["downstream.py", "--data", str(tmp_path), "--output", str(tmp_path / "out")])
    assert ds.main() == 0
    assert "RELION" in capsys.readouterr().out and not (tmp_path / "out").exists()


def test_composition_fit_and_json_safety(ds):
    table = classes(ds, [{"truth": 80, "false_pos": 50, "control": 20},
                         {"truth": 20, "false_pos": 50, "control": 80}])
    # false positives' spread (0.5, 0.5) is the midpoint of truth's (0.8, 0.2) and control's (0.2, 0.8).
    assert ds.composition_fit(table, {"truth": 100, "false_pos": 100, "control": 100}) == pytest.approx(0.5)
    assert ds.composition_fit(table, {"truth": 100, "false_pos": 0, "control": 100}) is None
    assert ds.finite_or_none({"a": [float("inf"), 1.5], "b": "x"}) == {"a": [None, 1.5], "b": "x"}
