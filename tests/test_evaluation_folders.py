"""Scoring pick folders against ground truth (cryounet.evaluation.folders)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from cryounet.errors import CryoUNetError
from cryounet.evaluation.folders import evaluate_folders
from cryounet.io.coordinates import Picks, write_star_index, write_star_picks, write_text_picks
from cryounet.io.picks_folder import PickRecord, write_pick_record


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    truth, picks = tmp_path / "truth", tmp_path / "picks"
    truth.mkdir()
    picks.mkdir()
    # Micrograph a: 3 truths, picks hit two (scores 0.9, 0.4) plus a miss (0.8).
    write_star_picks(truth / "a.star", Picks([[100, 100], [200, 200], [300, 300]]))
    write_star_picks(picks / "a.star", Picks([[101, 100], [500, 500], [200, 203]], [0.9, 0.8, 0.4]))
    # Micrograph b: 1 truth, hit (0.7), as a plain text file.
    write_text_picks(truth / "b.txt", Picks([[50, 50]]))
    write_text_picks(picks / "b.txt", Picks([[52, 50]], [0.7]))
    return picks, truth


def test_pooled_scores(tmp_path: Path) -> None:
    picks, truth = _folders(tmp_path)
    result = evaluate_folders(picks, truth, diameter=20.0)  # radius 10
    assert (result.n_micrographs, result.n_picks, result.n_truth) == (2, 4, 4)
    assert result.precision == pytest.approx(3 / 4) and result.recall == pytest.approx(3 / 4)
    assert result.f1 == pytest.approx(0.75)
    # F1 by threshold: 0.9 -> 2/5, 0.8 -> 2/6, 0.7 -> 4/7, 0.4 (all picks) -> 6/8, the best.
    assert result.best_f1 == pytest.approx(0.75) and result.best_threshold == pytest.approx(0.4)
    # AP by hand: ranked hit, miss, hit, hit: precision 1, 1/2, 2/3, 3/4 at recall 1/4, 1/4,
    # 2/4, 3/4 -> interpolated precision 1, 3/4, 3/4, 3/4 -> AP = 1/4 + 0 + 3/16 + 3/16 = 0.625.
    assert result.ap == pytest.approx(0.625)
    line = result.line()
    assert "precision=0.750" in line and "picks=4" in line and "truth=4" in line


def test_threshold_applies_to_every_figure(tmp_path: Path) -> None:
    picks, truth = _folders(tmp_path)
    result = evaluate_folders(picks, truth, diameter=20.0, threshold=0.75)
    assert result.n_picks == 2 and result.threshold == 0.75  # 0.9 and 0.8
    assert result.precision == pytest.approx(0.5) and result.recall == pytest.approx(0.25)
    # Best F1 and AP over the same two picks: 0.9 -> 2/5 (the best), 0.8 -> 2/6; AP: a hit at recall 1/4.
    assert result.best_f1 == pytest.approx(0.4) and result.best_threshold == pytest.approx(0.9)
    assert result.ap == pytest.approx(0.25)
    assert result.ap_cut_at == 0.75 and "not comparable" in result.ap_note
    assert "picks scoring >= 0.75 (--threshold; every figure)" in "\n".join(result.lines())


def test_report_states_radius_and_labels_best_f1(tmp_path: Path) -> None:
    picks, truth = _folders(tmp_path)
    result = evaluate_folders(picks, truth, diameter=20.0)
    assert result.matching_radius == 10.0 and result.diameter == 20.0
    assert result.truth_spacing == pytest.approx(np.hypot(100, 100))  # a's centres; b has one
    text = "\n".join(result.lines())
    assert "within 10.0 px of a truth centre (0.5 x --diameter 20)" in text
    assert "median neighbour distance 141.4 px" in text
    assert "best F1 0.750 at threshold 0.4" in text and "tuned on this truth" in text
    assert result.radius_warning is None


def _crowded(tmp_path: Path, scores: list[float]) -> tuple[Path, Path]:
    """Truth centres 30 px apart in a row, picked exactly."""
    truth, picks = tmp_path / "truth", tmp_path / "picks"
    truth.mkdir(parents=True)
    picks.mkdir()
    xy = [[100 + 30 * i, 100] for i in range(len(scores))]
    write_star_picks(truth / "m.star", Picks(xy))
    write_star_picks(picks / "m.star", Picks(xy, scores))
    return picks, truth


def test_radius_wide_against_the_truth_spacing_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    picks, truth = _crowded(tmp_path, [0.9, 0.8, 0.7, 0.06])
    assert evaluate_folders(picks, truth, diameter=30.0).radius_warning is None  # radius 15 = half spacing
    with caplog.at_level(logging.WARNING, logger="cryounet"):
        result = evaluate_folders(picks, truth, diameter=40.0)  # radius 20 > 15
    assert "more than half the median distance between neighbouring truth centres (30.0 px)" in \
        result.radius_warning
    assert any("scores may be inflated" in r.getMessage() for r in caplog.records)


def test_radius_wider_than_the_truth_spacing_is_refused(tmp_path: Path) -> None:
    picks, truth = _crowded(tmp_path, [0.9, 0.8, 0.7, 0.06])
    with pytest.raises(CryoUNetError, match=r"radius 35.0 px \(0.5 x --diameter 70\) is more than the median "
                                            r"distance .*30.0 px.*not in Å.*--allow-large-radius"):
        evaluate_folders(picks, truth, diameter=70.0)
    result = evaluate_folders(picks, truth, diameter=70.0, allow_large_radius=True)
    assert result.f1 == 1.0 and "more than the median distance" in result.radius_warning


def test_ap_over_picks_cut_at_a_threshold_is_said(tmp_path: Path) -> None:
    picks, truth = _folders(tmp_path)  # lowest score 0.4: far above the candidate floor
    result = evaluate_folders(picks, truth, diameter=20.0)
    assert result.ap_cut_at == pytest.approx(0.4) and result.lowest_score == pytest.approx(0.4)
    assert "over picks already cut at score 0.4" in result.ap_note
    assert "AP 0.625: over picks already cut" in result.lines()[-1]
    full_picks, full_truth = _crowded(tmp_path / "full", [0.9, 0.8, 0.7, 0.06])  # reaches the floor
    result = evaluate_folders(full_picks, full_truth, diameter=20.0)
    assert result.ap_cut_at is None and result.ap_note is None
    assert result.lines()[-1].endswith("over all candidates (comparable between runs)")
    # A threshold the pick folder records counts too.
    write_pick_record(full_picks, PickRecord("pick", [], 0.3, 20.0, 1))
    assert evaluate_folders(full_picks, full_truth, diameter=20.0).ap_cut_at == pytest.approx(0.3)


def test_nan_scores_are_refused(tmp_path: Path) -> None:
    picks, truth = _crowded(tmp_path, [0.9, float("nan"), 0.7, 0.06])
    with pytest.raises(CryoUNetError, match=r"m\.star: 1 of 4 picks have a score that is not a finite number"):
        evaluate_folders(picks, truth, diameter=20.0)


def test_missing_pick_file_counts_as_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    picks, truth = _folders(tmp_path)
    (picks / "b.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="cryounet"):
        result = evaluate_folders(picks, truth, diameter=20.0)
    assert result.n_truth == 4 and result.n_picks == 3 and result.recall == pytest.approx(2 / 4)
    assert any("no pick file" in r.getMessage() and "b" in r.getMessage() for r in caplog.records)


def test_index_file_in_truth_folder_is_not_a_micrograph(tmp_path: Path) -> None:
    picks, truth = _folders(tmp_path)
    write_star_index(truth / "coordinates.star", [("a.mrc", "a.star")])
    assert evaluate_folders(picks, truth, diameter=20.0).n_micrographs == 2


def test_picks_without_scores_count_as_score_one(tmp_path: Path) -> None:
    truth, picks = tmp_path / "t", tmp_path / "p"
    truth.mkdir()
    picks.mkdir()
    write_text_picks(truth / "m.txt", Picks([[10, 10], [40, 40]]))
    write_text_picks(picks / "m.txt", Picks([[10, 11], [40, 41]]))
    result = evaluate_folders(picks, truth, 10.0, threshold=1.0)
    assert result.f1 == 1.0 and result.ap == pytest.approx(1.0)


def test_errors(tmp_path: Path) -> None:
    picks, truth = _folders(tmp_path)
    with pytest.raises(CryoUNetError, match="picks folder does not exist"):
        evaluate_folders(tmp_path / "nope", truth, 20.0)
    with pytest.raises(CryoUNetError, match="ground-truth folder does not exist"):
        evaluate_folders(picks, tmp_path / "nope", 20.0)
    with pytest.raises(CryoUNetError, match="--diameter must be positive"):
        evaluate_folders(picks, truth, 0.0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CryoUNetError, match="no coordinate files"):
        evaluate_folders(picks, empty, 20.0)
    with pytest.raises(CryoUNetError, match="no pick file matches"):
        evaluate_folders(empty, truth, 20.0)
    np.testing.assert_equal(evaluate_folders(picks, truth, 20.0).n_micrographs, 2)


def test_relion_named_truth_matches_picks(tmp_path: Path) -> None:
    """Truth as RELION's manual picks (<mic>_manualpick.star), picks as CryoUNet writes them (<mic>.star)."""
    picks, truth = _folders(tmp_path)
    (truth / "a.star").rename(truth / "a_manualpick.star")
    (truth / "b.txt").rename(truth / "b_autopick.txt")
    result = evaluate_folders(picks, truth, diameter=20.0)
    assert (result.n_micrographs, result.n_picks, result.n_truth) == (2, 4, 4)
    assert result.f1 == pytest.approx(0.75)
