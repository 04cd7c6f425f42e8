"""Pictures of an evaluation (cryounet.evaluation.pictures): PR curve and true/false/missed picks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgb

from cryounet.evaluation.folders import load_evaluation_input, score
from cryounet.evaluation.metrics import threshold_curve
from cryounet.evaluation.pictures import (draw_evaluated, draw_pr_curve, find_micrographs,
                                          write_evaluation_pictures)
from cryounet.io.coordinates import Picks, write_star_index, write_star_picks
from cryounet.io.mrc import write_mrc
from cryounet.render import MATCH_COLOURS, new_figure
from test_render import _noisy_blobs, has_colour, rgb_near


def test_true_false_and_missed_picks_in_their_colours() -> None:
    image, xy = _noisy_blobs()
    truth = xy  # three centres
    pred = np.array([xy[0] + [2, 0], xy[1] + [1, 1], [30.0, 220.0]])  # two hits, one false; xy[2] missed
    figure = new_figure(5, 5)
    ax = draw_evaluated(figure, image, pred, truth, diameter=24, radius=12)
    expect = {"true": pred[0], "false": pred[2], "missed": truth[2]}
    for kind, (x, y) in expect.items():
        pixels = rgb_near(figure, ax, x + 12, y)
        assert has_colour(pixels, to_rgb(MATCH_COLOURS[kind])), kind
        others = [k for k in MATCH_COLOURS if k != kind]
        assert not any(has_colour(pixels, to_rgb(MATCH_COLOURS[k]), 0.05) for k in others), kind
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["true positives: 2", "false positives: 1", "missed truth: 1"]


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    image, xy = _noisy_blobs()
    truth, picks = tmp_path / "truth", tmp_path / "picks"
    truth.mkdir()
    picks.mkdir()
    write_mrc(truth / "m.mrc", image)
    write_star_picks(truth / "m.star", Picks(xy))
    write_star_picks(picks / "m.star", Picks(np.vstack([xy[:2], [[30, 220]]]), [0.9, 0.5, 0.7]))
    return picks, truth


def test_pr_curve_marks_the_threshold_used(tmp_path: Path) -> None:
    picks, truth = _folders(tmp_path)
    data = load_evaluation_input(picks, truth)
    result = score(data, 24.0)
    figure = new_figure(5, 5)
    ax = draw_pr_curve(figure, threshold_curve(data.preds, data.scores, data.truths, 12.0), result)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == f"picks (AP {result.ap:.3f})"
    assert labels[1].startswith("threshold used 0.5: P 0.67, R 0.67, F1 0.667")
    assert "tuned on this truth" in labels[2]
    marker = [line for line in ax.get_lines() if line.get_label().startswith("threshold used")][0]
    assert marker.get_xydata().tolist() == [[result.recall, result.precision]]


def test_micrographs_found_from_the_index_or_beside_the_truth(tmp_path: Path) -> None:
    picks, truth = _folders(tmp_path)
    assert find_micrographs(["m", "z"], picks, truth, None) == {"m": truth / "m.mrc"}
    elsewhere = tmp_path / "mics" / "m.mrc"
    elsewhere.parent.mkdir()
    write_mrc(elsewhere, np.zeros((8, 8), np.float32))
    write_star_index(picks / "coordinates.star", [(str(elsewhere), str(picks / "m.star"))])
    assert find_micrographs(["m"], picks, truth, None) == {"m": elsewhere}
    assert find_micrographs(["m"], picks, truth, [str(truth)]) == {"m": truth / "m.mrc"}


def test_write_evaluation_pictures(tmp_path: Path) -> None:
    picks, truth = _folders(tmp_path)
    data = load_evaluation_input(picks, truth)
    written = write_evaluation_pictures(tmp_path / "plot", data, score(data, 24.0), picks, truth, None, 3)
    assert [p.name for p in written] == ["pr_curve.png", "m_evaluated.png"]
    assert all(p.stat().st_size > 5000 for p in written)
