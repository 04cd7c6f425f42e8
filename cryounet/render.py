"""Micrographs drawn so that a person can judge picks by eye, with the picks on them.

A raw micrograph is noise at display scale; :func:`display_image` bins it to screen size, low-pass
filters it to the particle scale (a Gaussian of sigma = diameter / 8) and stretches its contrast
to the 1-99 percentile range, so particles show as blobs. :func:`draw_picks` draws circles of the
particle diameter on it, coloured by score with a colour bar. The CLI (``cryounet show``,
``evaluate --plot``) and the Scipion picks viewer draw with these functions.

Part of the engine's torch-free ground (numpy and scipy); matplotlib is imported only inside the
functions that draw, and never ``pyplot``: figures are plain ``matplotlib.figure.Figure`` objects
(a GUI passes its own).
"""
from __future__ import annotations

import io
import os
from typing import Any, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from cryounet.errors import CryoUNetError

#: Largest side (px) of a displayed micrograph (larger ones are binned).
DISPLAY_SIZE = 1024
#: Gaussian sigma of the display low-pass, as a fraction of the particle diameter.
LOWPASS_FRACTION = 1 / 8
#: Percentiles mapped to black and white.
STRETCH_PERCENTILES = (1.0, 99.0)
#: Colour map of the scores (bright at both ends, readable on grey).
SCORE_CMAP = "plasma"
#: Colours of evaluated picks: true positives, false positives, missed truth centres.
MATCH_COLOURS = {"true": "#00e000", "false": "#ff2020", "missed": "#ffd000"}


def display_image(image: np.ndarray, diameter: float, max_size: int = DISPLAY_SIZE) -> tuple[np.ndarray, int]:
    """A micrograph as shown: binned to at most ``max_size`` px, low-pass filtered to the particle
    scale and contrast-stretched to [0, 1].

    Returns:
        ``(shown, factor)``: the image, and the binning factor (displayed px = input px / factor).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or image.size == 0:
        raise CryoUNetError(f"cannot display an image of shape {image.shape}: expected a 2D micrograph")
    factor = max(1, int(np.ceil(max(image.shape) / float(max_size))))
    if factor > 1:
        ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
        image = image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean((1, 3))
    finite = np.isfinite(image)
    if not finite.all():
        image = np.where(finite, image, np.median(image[finite]) if finite.any() else 0.0)
    sigma = LOWPASS_FRACTION * float(diameter) / factor
    if sigma >= 0.5:
        image = gaussian_filter(image, sigma, mode="reflect")
    lo, hi = np.percentile(image, STRETCH_PERCENTILES)
    if not hi > lo:
        hi = lo + 1.0
    return np.clip((image - lo) / (hi - lo), 0, 1).astype(np.float32), factor


def require_matplotlib() -> None:
    """Raise a clear error when matplotlib (needed only to draw pictures) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CryoUNetError("drawing pictures needs matplotlib, which this Python lacks: "
                            "pip install matplotlib") from None


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure with an Agg canvas (no display, no pyplot)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def show_micrograph(ax: Any, shown: np.ndarray) -> None:
    """Draw a :func:`display_image` on ``ax`` (pixel centres at integer coordinates, no axes)."""
    ax.imshow(shown, cmap="gray", vmin=0, vmax=1, origin="upper", interpolation="antialiased",
              extent=(-0.5, shown.shape[1] - 0.5, shown.shape[0] - 0.5, -0.5))
    ax.set_xlim(-0.5, shown.shape[1] - 0.5)
    ax.set_ylim(shown.shape[0] - 0.5, -0.5)
    ax.set_axis_off()


def draw_circles(ax: Any, xy: np.ndarray, radius: float, colour: str | None = None,
                 scores: np.ndarray | None = None, clim: tuple[float, float] | None = None,
                 linewidth: float = 1.6, linestyle: str = "solid") -> Any:
    """Circles of ``radius`` (display px) at ``xy`` (display px): one ``colour``, or coloured by
    ``scores`` with :data:`SCORE_CMAP`. Returns the PatchCollection (for a colour bar)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    circles = PatchCollection([Circle((x, y), radius) for x, y in xy], facecolor="none",
                              linewidth=linewidth, linestyle=linestyle)
    if scores is not None and len(xy):
        circles.set_array(np.asarray(scores, dtype=float))
        from matplotlib import colormaps

        circles.set_cmap(colormaps[SCORE_CMAP].with_extremes(bad="cyan"))  # a score that is not a number
        circles.set_clim(*(clim or score_limits(scores)))
    else:
        circles.set_edgecolor(colour or MATCH_COLOURS["true"])
    ax.add_collection(circles)
    return circles


def score_limits(scores: Sequence[float]) -> tuple[float, float]:
    """Colour range of scores: their finite minimum and maximum (a span of at least 1e-6)."""
    scores = np.asarray(scores, dtype=float)
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return lo, max(hi, lo + 1e-6)


def draw_picks(figure: Any, image: np.ndarray, xy: np.ndarray, diameter: float,
               scores: np.ndarray | None = None, title: str = "") -> Any:
    """A micrograph (:func:`display_image`) with a circle of ``diameter`` around each pick, coloured
    by score with a colour bar (one colour without scores, or when they are all equal, as an
    annotation's are), on ``figure``. Returns the axes.

    Args:
        xy: ``(N, 2)`` pick positions in pixels of ``image`` (x = column, y = row).
        diameter: particle diameter in pixels of ``image``.
    """
    shown, factor = display_image(image, diameter)
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    ax = figure.add_subplot(1, 1, 1)
    show_micrograph(ax, shown)
    finite = np.asarray(scores, dtype=float) if scores is not None else np.zeros(0)
    finite = finite[np.isfinite(finite)]  # NaN scores: drawn cyan; all scores equal: one colour, no bar
    has_scores = scores is not None and len(scores) == len(xy) and len(np.unique(finite)) > 1
    circles = draw_circles(ax, xy / factor, 0.5 * float(diameter) / factor,
                           scores=np.asarray(scores, dtype=float) if has_scores else None)
    if has_scores:
        figure.colorbar(circles, ax=ax, fraction=0.046, pad=0.02, label="score")
    ax.set_title(f"{title} ({len(xy)} picks, diameter {float(diameter):g} px)".strip(), fontsize=10)
    return ax


def save_png(figure: Any, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Write ``figure`` as a PNG file, atomically."""
    from cryounet.io.atomic import write_bytes_atomic

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    write_bytes_atomic(path, buffer.getvalue())
