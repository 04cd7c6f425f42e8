"""Plotting functions of the viewers, on fabricated histories/curves, written as PNG files
with the non-interactive Agg canvas (no display)."""
import json

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cryounet_plugin.viewers.plotting import (PicksBrowser, displayImage, operatingPoint, plotPicks,
                                              plotPrecisionRecall, plotScoreHistogram,
                                              plotTrainingCurves)

HISTORY = [{"epoch": e, "train_loss": 1.0 / e, "valid_loss": 1.2 / e, "valid_precision": 0.5 + e / 20,
            "valid_recall": 0.4 + e / 25, "valid_f1": 0.45 + e / 22, "threshold": 0.5,
            "learning_rate": 1e-3, "seconds": 2.0} for e in range(1, 6)]
CURVE = {"thresholds": [0.1, 0.3, 0.5, 0.7, 0.9], "precision": [0.4, 0.6, 0.75, 0.85, 0.95],
         "recall": [0.98, 0.9, 0.8, 0.6, 0.3], "f1": [0.57, 0.72, 0.77, 0.7, 0.46]}


def save(fig, path):
    FigureCanvasAgg(fig)
    fig.savefig(str(path))
    assert path.stat().st_size > 5000
    return path


def test_training_curves(tmp_path):
    history = json.loads(json.dumps(HISTORY))  # as read from history.json
    fig = Figure(figsize=(10, 4))
    axLoss, axScore = plotTrainingCurves(fig, history)
    train, valid = axLoss.get_lines()
    np.testing.assert_allclose(train.get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(train.get_ydata(), [h["train_loss"] for h in HISTORY])
    np.testing.assert_allclose(valid.get_ydata(), [h["valid_loss"] for h in HISTORY])
    f1 = axScore.get_lines()[0]
    np.testing.assert_allclose(f1.get_ydata(), [h["valid_f1"] for h in HISTORY])
    assert "best F1 %.3f" % HISTORY[-1]["valid_f1"] in [t.get_text() for t in axScore.texts]
    save(fig, tmp_path / "curves.png")
    with pytest.raises(ValueError, match="empty"):
        plotTrainingCurves(Figure(), [])


def test_training_curves_mark_the_epoch_chosen_by_the_best_f1(tmp_path):
    # 0.2.1 histories: the epoch is chosen by valid_best_f1, which peaks at epoch 2 here while the
    # F1 at the calibrated threshold keeps rising.
    best = [0.6, 0.9, 0.8, 0.7, 0.85]
    history = [dict(h, valid_best_f1=b) for h, b in zip(HISTORY, best)]
    fig = Figure(figsize=(10, 4))
    _, axScore = plotTrainingCurves(fig, history)
    lines = axScore.get_lines()
    np.testing.assert_allclose(lines[3].get_ydata(), best)
    assert lines[3].get_label() == "best F1 over thresholds"
    assert [t.get_text() for t in axScore.texts] == ["best F1 0.900"]
    save(fig, tmp_path / "curves.png")


def test_missing_validation_values_are_gaps(tmp_path):
    history = [dict(HISTORY[0], valid_loss=None), HISTORY[1]]
    fig = Figure()
    axLoss, _ = plotTrainingCurves(fig, history)
    assert np.isnan(axLoss.get_lines()[1].get_ydata()[0])
    save(fig, tmp_path / "gaps.png")


def test_precision_recall(tmp_path):
    fig = Figure(figsize=(5, 5))
    ax = plotPrecisionRecall(fig, CURVE, threshold=0.52)
    curve, point = ax.get_lines()
    np.testing.assert_allclose(curve.get_xdata(), sorted(CURVE["recall"]))
    assert operatingPoint(CURVE, 0.52) == 2
    assert point.get_xdata()[0] == 0.8 and point.get_ydata()[0] == 0.75
    save(fig, tmp_path / "pr.png")
    with pytest.raises(ValueError, match="inconsistent"):
        plotPrecisionRecall(Figure(), {"thresholds": [0.5], "precision": [1, 2], "recall": [1]})


def test_picks_on_micrograph(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2100, 1500)).astype(np.float32)
    xy = np.array([[100, 200], [1400, 2000], [750, 1050]])
    fig = Figure(figsize=(6, 6))
    ax = plotPicks(fig, image, xy, diameter=60, scores=[0.9, 0.5, 0.7])
    circles = ax.collections[0]
    assert len(circles.get_paths()) == 3
    shown = ax.get_images()[0].get_array()
    assert max(shown.shape) <= 1024  # binned for display
    assert "(3 picks, diameter 60 px)" in ax.get_title()
    save(fig, tmp_path / "picks.png")
    small, factor = displayImage(np.arange(16, dtype=float).reshape(4, 4), diameter=4, maxSize=2)
    assert factor == 2 and small.shape == (2, 2)


def test_picks_drawn_as_the_engine_draws_them():
    """The viewer's micrograph is the engine's rendering (low-pass filtered, stretched), not raw
    binned noise."""
    from cryounet.render import display_image

    rng = np.random.default_rng(1)
    image = rng.normal(size=(300, 300)).astype(np.float32)
    image[140:160, 140:160] -= 1.0  # a faint particle under noise of the same strength
    fig = Figure(figsize=(5, 5))
    ax = plotPicks(fig, image, [[150, 150]], diameter=24, scores=[0.8])
    shown = np.asarray(ax.get_images()[0].get_array())
    np.testing.assert_array_equal(shown, display_image(image, 24)[0])
    assert shown[150, 150] < np.percentile(shown, 2)  # the particle is visible


class _Event:
    def __init__(self, key):
        self.key = key


def _click(fig, button):
    from matplotlib.backend_bases import MouseEvent

    fig.canvas.draw()
    x, y = button.ax.transAxes.transform((0.5, 0.5))
    for name in ("button_press_event", "button_release_event"):
        MouseEvent(name, fig.canvas, x, y, button=1)._process()


def test_picks_browser_goes_through_micrographs_in_one_figure(tmp_path):
    images = [np.full((64, 64), float(i)) + np.random.default_rng(i).normal(size=(64, 64)) for i in range(3)]
    loaded = []

    def load(index):
        loaded.append(index)
        if index == 2:
            raise ValueError("Cannot read c.mrc: truncated")
        return images[index], [[10 + 10 * index, 20], [40, 44]], 12, [0.5 + 0.1 * index, 0.95]

    fig = Figure(figsize=(6, 6))
    FigureCanvasAgg(fig)
    browser = PicksBrowser(fig, ["a.mrc", "b.mrc", "c.mrc"], load, start=1)
    titles = lambda: [ax.get_title() for ax in fig.axes if ax.get_title()]  # noqa: E731
    assert browser.index == 1 and titles() == ["b.mrc (2 picks, diameter 12 px)   [2 of 3]"]
    assert browser.ax.get_title() == titles()[0] and browser.ax.get_images()
    _click(fig, browser.buttons[1])  # Next: an unreadable micrograph says so in the window
    assert browser.index == 2 and titles() == ["c.mrc   [3 of 3]"]
    assert any("truncated" in t.get_text() for ax in fig.axes for t in ax.texts)
    browser.onKey(_Event("right"))  # wraps round to the first
    assert browser.index == 0 and titles()[0].startswith("a.mrc (2 picks")
    _click(fig, browser.buttons[0])  # Previous
    browser.onKey(_Event("home"))
    browser.onKey(_Event("left"))
    assert loaded == [1, 2, 0, 2, 0, 2]
    # One figure throughout: the picture, its colour bar and the two buttons, nothing left over.
    assert len(fig.axes) == 2 + 2 - 1  # c.mrc has no colour bar
    browser.onKey(_Event("end"))
    browser.show(1)
    assert len(fig.axes) == 4
    save(fig, tmp_path / "browser.png")
    with pytest.raises(ValueError, match="no micrographs"):
        PicksBrowser(Figure(), [], load)


def test_score_histogram(tmp_path):
    scores = np.concatenate([np.full(30, 0.2), np.full(10, 0.9), [np.nan]])
    fig = Figure()
    ax = plotScoreHistogram(fig, scores, threshold=0.5, bins=10)
    counts = [patch.get_height() for patch in ax.patches]
    assert sum(counts) == 40  # NaN ignored
    assert ax.get_lines()[0].get_xdata()[0] == 0.5
    save(fig, tmp_path / "hist.png")
    with pytest.raises(ValueError, match="no scores"):
        plotScoreHistogram(Figure(), [np.nan])


class _Mic:
    def __init__(self, name, fileName):
        self.name, self.fileName = name, fileName

    def getMicName(self):
        return self.name

    def getFileName(self):
        return self.fileName


def test_micrographs_are_chosen_by_name():
    from cryounet_plugin.viewers.viewer_cryounet import findMicrograph, micrographLabel

    mics = [_Mic("mic_a", "/data/Runs/1/extra/mic_a.mrc"), _Mic("", "/data/b_0012.mrc"),
            _Mic("mic_c.mrc", "/x/c.mrc")]
    assert [micrographLabel(m) for m in mics] == ["mic_a", "b_0012.mrc", "mic_c.mrc"]
    assert findMicrograph(mics, "") == 0 and findMicrograph(mics, None) == 0
    assert findMicrograph(mics, "mic_a.mrc") == 0 and findMicrograph(mics, " b_0012 ") == 1
    assert findMicrograph(mics, "mic_c") == 2 and findMicrograph(mics, "c.mrc") == 2
    assert findMicrograph(mics, "d") is None
