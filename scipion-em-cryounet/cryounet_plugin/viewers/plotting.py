"""Pure matplotlib plots of CryoUNet results.

Each function draws on a ``matplotlib.figure.Figure`` it is given and returns the axes it made,
so the same code serves the Scipion viewers (a Tk window) and headless use (``fig.savefig``).
Nothing here needs a display or Scipion. Micrographs are drawn by the engine's own rendering
(through :mod:`cryounet_plugin.engine`), the same as ``cryounet show``.
"""
import numpy as np

from .. import engine

#: Largest side (px) of a micrograph drawn by :func:`plotPicks` (larger ones are binned).
DISPLAY_SIZE = 1024


def _series(history, key):
    return np.array([np.nan if item.get(key) is None else float(item[key]) for item in history])


def plotTrainingCurves(figure, history, title="Training"):
    """Loss (train and validation) and validation precision/recall/F1 per epoch.

    Args:
        figure: matplotlib Figure.
        history: list of per-epoch dicts (``epoch``, ``train_loss``, ``valid_loss``,
            ``valid_precision``, ``valid_recall``, ``valid_f1``, ``threshold``; optionally
            ``valid_best_f1``, the selection metric, which then marks the kept epoch).
    Returns:
        (loss axes, score axes).
    """
    if not history:
        raise ValueError("the training history is empty")
    epochs = np.array([item.get("epoch", i + 1) for i, item in enumerate(history)], dtype=float)
    axLoss = figure.add_subplot(1, 2, 1)
    axLoss.plot(epochs, _series(history, "train_loss"), "o-", label="train loss")
    axLoss.plot(epochs, _series(history, "valid_loss"), "s-", label="validation loss")
    axLoss.set_xlabel("epoch")
    axLoss.set_ylabel("loss")
    axLoss.set_title("%s: loss" % title)
    axLoss.legend(loc="best")
    axLoss.grid(alpha=0.3)

    axScore = figure.add_subplot(1, 2, 2)
    axScore.plot(epochs, _series(history, "valid_f1"), "o-", label="validation F1", lw=2)
    axScore.plot(epochs, _series(history, "valid_precision"), "s--", label="precision")
    axScore.plot(epochs, _series(history, "valid_recall"), "^:", label="recall")
    # The epoch kept is the one of the best F1 over all thresholds (``valid_best_f1``);
    # ``valid_f1`` is at the calibrated threshold. A history without the former shows the latter.
    f1 = _series(history, "valid_f1")
    if any(item.get("valid_best_f1") is not None for item in history):
        f1 = _series(history, "valid_best_f1")
        axScore.plot(epochs, f1, "-", color="grey", lw=1, label="best F1 over thresholds")
    if np.isfinite(f1).any():
        best = int(np.nanargmax(f1))
        axScore.axvline(epochs[best], color="grey", lw=0.8)
        axScore.annotate("best F1 %.3f" % f1[best], (epochs[best], f1[best]),
                         textcoords="offset points", xytext=(5, -15))
    axScore.set_ylim(0, 1.02)
    axScore.set_xlabel("epoch")
    axScore.set_ylabel("score")
    axScore.set_title("%s: validation" % title)
    axScore.legend(loc="lower right")
    axScore.grid(alpha=0.3)
    figure.tight_layout()
    return axLoss, axScore


def operatingPoint(curve, threshold):
    """Index of the curve point whose threshold is closest to ``threshold`` (None if unknown)."""
    thresholds = np.asarray(curve.get("thresholds", []), dtype=float)
    if threshold is None or thresholds.size == 0:
        return None
    return int(np.argmin(np.abs(thresholds - float(threshold))))


def plotPrecisionRecall(figure, curve, threshold=None, title="Validation precision-recall"):
    """Precision against recall over thresholds, with the calibrated operating point.

    Args:
        curve: dict with equal-length lists ``thresholds``, ``precision``, ``recall`` (and
            optionally ``f1``).
        threshold: the calibrated threshold to mark, or None.
    Returns:
        The axes.
    """
    precision = np.asarray(curve.get("precision", []), dtype=float)
    recall = np.asarray(curve.get("recall", []), dtype=float)
    if precision.size == 0 or precision.size != recall.size:
        raise ValueError("the precision-recall curve is empty or inconsistent "
                         "(%d precision, %d recall values)" % (precision.size, recall.size))
    ax = figure.add_subplot(1, 1, 1)
    order = np.argsort(recall, kind="stable")
    ax.plot(recall[order], precision[order], "-", lw=2, label="validation set")
    index = operatingPoint(curve, threshold)
    if index is not None:
        ax.plot([recall[index]], [precision[index]], "o", ms=9, color="C3",
                label="threshold %.3f (P %.2f, R %.2f)"
                      % (float(threshold), precision[index], recall[index]))
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return ax


def displayImage(image, diameter, maxSize=DISPLAY_SIZE):
    """A micrograph as the engine shows it (binned, low-pass filtered to the particle scale,
    contrast-stretched): ``(image in [0, 1], binning factor)``, displayed px = px / factor."""
    return engine.displayImage(image, diameter, maxSize)


def plotPicks(figure, image, xy, diameter, scores=None, title="Picks"):
    """A micrograph with a circle of the particle diameter around each pick, coloured by score,
    drawn as ``cryounet show`` draws it (:func:`engine.drawPicks`).

    Args:
        image: 2D array (rows = y).
        xy: (N, 2) positions in pixels of ``image`` (x = column, y = row).
        diameter: particle diameter in pixels (circle size and low-pass scale).
        scores: optional (N,) scores colouring the circles.
    Returns:
        The axes.
    """
    return engine.drawPicks(figure, image, np.asarray(xy, dtype=float).reshape(-1, 2), diameter,
                            None if scores is None else np.asarray(scores, dtype=float), title)


class PicksBrowser:
    """Picks on one micrograph at a time in one figure, with Previous/Next buttons and the arrow
    keys (also Page Up/Down, the space bar, Home/End).

    Args:
        figure: a matplotlib Figure (a Scipion Plotter's, or any other).
        names: the micrograph names, in browsing order.
        load: ``load(index) -> (image, xy, diameter, scores or None)`` of micrograph ``index``.
        start: index of the first micrograph shown.
    """
    KEYS = {"right": 1, "pagedown": 1, " ": 1, "left": -1, "pageup": -1}

    def __init__(self, figure, names, load, start=0):
        from matplotlib.widgets import Button

        if not names:
            raise ValueError("there are no micrographs to show")
        self.figure, self.names, self.load = figure, list(names), load
        self.index = self.ax = None  # the micrograph shown and its axes
        self._buttonAxes = [figure.add_axes([0.30, 0.015, 0.18, 0.05]), figure.add_axes([0.52, 0.015, 0.18, 0.05])]
        self.buttons = [Button(self._buttonAxes[0], "< Previous"), Button(self._buttonAxes[1], "Next >")]
        self.buttons[0].on_clicked(lambda event: self.step(-1))
        self.buttons[1].on_clicked(lambda event: self.step(1))
        self._keyHandler = figure.canvas.mpl_connect("key_press_event", self.onKey)
        self.show(start)

    def show(self, index):
        """Draw micrograph ``index`` (wrapped into range) in place of the one shown."""
        index = int(index) % len(self.names)
        for ax in list(self.figure.axes):
            if ax not in self._buttonAxes:
                self.figure.delaxes(ax)
        self.figure.subplots_adjust(left=0.03, right=0.91, top=0.95, bottom=0.1)  # room for the buttons
        try:
            image, xy, diameter, scores = self.load(index)
        except ValueError as exc:  # an unreadable micrograph: said in the window, the others still browse
            ax = self.figure.add_subplot(1, 1, 1)
            ax.set_axis_off()
            ax.text(0.5, 0.5, str(exc), ha="center", va="center", wrap=True)
            ax.set_title(self.names[index])
        else:
            ax = plotPicks(self.figure, image, xy, diameter, scores, title=self.names[index])
        ax.set_title("%s   [%d of %d]" % (ax.get_title(), index + 1, len(self.names)), fontsize=10)
        self.index, self.ax = index, ax
        self.figure.canvas.draw_idle()
        return ax

    def step(self, delta):
        return self.show(self.index + delta)

    def onKey(self, event):
        if event.key in self.KEYS:
            self.step(self.KEYS[event.key])
        elif event.key == "home":
            self.show(0)
        elif event.key == "end":
            self.show(len(self.names) - 1)


def plotScoreHistogram(figure, scores, threshold=None, bins=50, title="Score distribution"):
    """Histogram of pick scores with the threshold marked.

    Returns:
        The axes.
    """
    scores = np.asarray(scores, dtype=float)
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        raise ValueError("there are no scores to plot")
    ax = figure.add_subplot(1, 1, 1)
    ax.hist(scores, bins=bins, color="C0", alpha=0.8)
    if threshold is not None:
        ax.axvline(float(threshold), color="C3", lw=2, label="threshold %.3f" % float(threshold))
        ax.legend(loc="upper center")
    ax.set_xlabel("score")
    ax.set_ylabel("particles")
    ax.set_title("%s (%d particles)" % (title, scores.size))
    return ax
