"""Scoring pick folders against ground truth (cryounet.evaluation.folders)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from cryounet.errors import CryoUNetError
from cryounet.evaluation.folders import evaluate_folders
from cryounet.io.coordinates import Picks, write_star_index, write_star_picks, write_text_picks


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


def test_threshold_filters_precision_recall_only(tmp_path: Path) -> None:
    picks, truth = _folders(tmp_path)
    result = evaluate_folders(picks, truth, diameter=20.0, threshold=0.75)
    assert result.n_picks == 2  # 0.9 and 0.8
    assert result.precision == pytest.approx(0.5) and result.recall == pytest.approx(0.25)
    assert result.best_f1 == pytest.approx(0.75)  # best F1 and AP always use all picks


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
