"""Micrographs drawn for people (cryounet.render): the display image and the picks on it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import to_rgb

from cryounet.errors import CryoUNetError
from cryounet.render import (MATCH_COLOURS, SCORE_CMAP, display_image, draw_picks, new_figure, save_png,
                             score_limits)


def _noisy_blobs(size: int = 256, diameter: float = 24.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    xy = np.array([[64.0, 64.0], [180.0, 100.0], [120.0, 200.0]])
    yy, xx = np.mgrid[:size, :size]
    image = rng.normal(0, 3.0, (size, size))
    for x, y in xy:
        image -= ((xx - x) ** 2 + (yy - y) ** 2 < (diameter / 2) ** 2)
    return image.astype(np.float32), xy


def rgb_near(figure, ax, x: float, y: float) -> np.ndarray:
    """RGB (0-1) of every rendered pixel within 2 px of data point (x, y)."""
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3] / 255.0
    col, row = ax.transData.transform((x, y))
    row = pixels.shape[0] - row
    r0, c0 = int(round(row)), int(round(col))
    return pixels[r0 - 2:r0 + 3, c0 - 2:c0 + 3].reshape(-1, 3)


def has_colour(pixels: np.ndarray, colour, tol: float = 0.12) -> bool:
    return bool((np.abs(pixels - np.asarray(colour)[:3]).max(axis=1) < tol).any())


def test_display_image_is_low_pass_filtered_and_stretched() -> None:
    image, xy = _noisy_blobs()
    shown, factor = display_image(image, diameter=24)
    assert factor == 1 and shown.shape == image.shape and shown.dtype == np.float32
    assert shown.min() == 0.0 and shown.max() == 1.0
    # The noise (sd 3, blobs only 1 deep) is filtered away: the particles are clearly darker.
    x, y = xy[0].astype(int)
    background = np.delete(shown.ravel(), np.ravel_multi_index((y, x), shown.shape))
    assert shown[y, x] < np.percentile(background, 5)
    raw = (image - np.percentile(image, 1)) / np.ptp(np.percentile(image, [1, 99]))
    assert raw[y, x] > np.percentile(raw, 5)  # without the filter the particle hides in the noise


def test_display_image_bins_large_micrographs() -> None:
    shown, factor = display_image(np.random.default_rng(1).normal(size=(1000, 2100)), diameter=80, max_size=1024)
    assert factor == 3 and shown.shape == (333, 700)


def test_display_image_of_a_flat_or_bad_image() -> None:
    shown, _ = display_image(np.full((64, 64), 7.0), diameter=10)
    assert np.isfinite(shown).all() and shown.max() == 0.0
    bad = np.ones((32, 32))
    bad[3, 4] = np.nan
    assert np.isfinite(display_image(bad, 8)[0]).all()
    with pytest.raises(CryoUNetError, match="expected a 2D micrograph"):
        display_image(np.zeros((2, 3, 4)), 8)


def test_draw_picks_circles_coloured_by_score(tmp_path: Path) -> None:
    image, xy = _noisy_blobs()
    scores = np.array([0.2, 0.6, 0.95])
    figure = new_figure(5, 4)
    ax = draw_picks(figure, image, xy, diameter=24, scores=scores, title="m.mrc")
    assert "3 picks, diameter 24 px" in ax.get_title()
    cmap = colormaps[SCORE_CMAP]
    lo, hi = score_limits(scores)
    for (x, y), s in zip(xy, scores):
        on_circle = rgb_near(figure, ax, x + 12, y)  # the rightmost point of the circle
        assert has_colour(on_circle, cmap((s - lo) / (hi - lo))), (s, on_circle)
    assert len(figure.axes) == 2  # the micrograph and the colour bar
    save_png(figure, tmp_path / "p.png")
    from PIL import Image

    with Image.open(tmp_path / "p.png") as png:
        assert png.size == (500, 400)


def test_draw_picks_without_scores_in_one_colour() -> None:
    image, xy = _noisy_blobs()
    figure = new_figure(4, 4)
    ax = draw_picks(figure, image, xy, diameter=24)
    assert has_colour(rgb_near(figure, ax, xy[1, 0], xy[1, 1] - 12), to_rgb(MATCH_COLOURS["true"]))
    assert not has_colour(rgb_near(figure, ax, 20, 230), to_rgb(MATCH_COLOURS["true"]))  # no pick there
    assert len(figure.axes) == 1


def test_picks_with_scores_that_are_not_numbers_are_still_drawn() -> None:
    image, xy = _noisy_blobs()
    figure = new_figure(4, 4)
    ax = draw_picks(figure, image, xy, diameter=24, scores=np.array([0.2, np.nan, 0.9]))
    assert len(ax.collections[0].get_paths()) == 3 and len(figure.axes) == 2
    assert has_colour(rgb_near(figure, ax, xy[1, 0] + 12, xy[1, 1]), (0.0, 1.0, 1.0))  # cyan: no score
    assert score_limits([np.nan, np.nan]) == (0.0, 1.0)


def test_draw_picks_with_equal_scores_in_one_colour_without_a_bar() -> None:
    """Annotations read with one score for all (e.g. 1) get no colour bar spanning nothing."""
    import matplotlib.pyplot as plt

    figure = plt.figure()
    draw_picks(figure, np.zeros((64, 64)), np.array([[20.0, 20.0], [40.0, 40.0]]), diameter=12,
               scores=np.array([1.0, 1.0]))
    assert len(figure.axes) == 1  # the micrograph, no colour bar
    plt.close(figure)
