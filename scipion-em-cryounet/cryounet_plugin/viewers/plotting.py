"""Pure matplotlib plots of CryoUNet results.

Each function draws on a ``matplotlib.figure.Figure`` it is given and returns the axes it made,
so the same code serves the Scipion viewers (a Tk window) and headless use (``fig.savefig``).
Nothing here needs a display or Scipion.
"""
import numpy as np

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
    # Since 0.2.1 the epoch is chosen by the best F1 over all thresholds (``valid_best_f1``);
    # ``valid_f1`` is at the calibrated threshold. Older histories only have ``valid_f1``.
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


def displayImage(image, maxSize=DISPLAY_SIZE):
    """Bin a micrograph for display and normalise it to its 1-99 percentile range.

    Returns:
        (image, factor): the displayed image and the binning factor (displayed px = px / factor).
    """
    image = np.asarray(image, dtype=np.float32)
    factor = max(1, int(np.ceil(max(image.shape) / float(maxSize))))
    if factor > 1:
        ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
        image = image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean((1, 3))
    lo, hi = np.percentile(image, [1, 99])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((image - lo) / (hi - lo), 0, 1), factor


def plotPicks(figure, image, xy, diameter, scores=None, title="Picks"):
    """A micrograph with a circle of the particle diameter around each pick.

    Args:
        image: 2D array (rows = y).
        xy: (N, 2) positions in pixels of ``image`` (x = column, y = row).
        diameter: particle diameter in pixels (circle size).
        scores: optional (N,) scores colouring the circles.
    Returns:
        The axes.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    shown, factor = displayImage(image)
    xy = np.asarray(xy, dtype=float).reshape(-1, 2) / factor
    ax = figure.add_subplot(1, 1, 1)
    ax.imshow(shown, cmap="gray", origin="upper",
              extent=(-0.5, shown.shape[1] - 0.5, shown.shape[0] - 0.5, -0.5))
    radius = 0.5 * float(diameter) / factor
    circles = PatchCollection([Circle((x, y), radius) for x, y in xy], facecolor="none",
                              linewidth=1.2)
    if scores is not None and len(scores):
        circles.set_array(np.asarray(scores, dtype=float))
        circles.set_cmap("viridis")
        circles.set_clim(float(np.min(scores)), max(float(np.max(scores)), float(np.min(scores)) + 1e-6))
        figure.colorbar(circles, ax=ax, fraction=0.046, pad=0.04, label="score")
    else:
        circles.set_edgecolor("lime")
    ax.add_collection(circles)
    ax.set_xlim(-0.5, shown.shape[1] - 0.5)
    ax.set_ylim(shown.shape[0] - 0.5, -0.5)
    ax.set_title("%s (%d particles)" % (title, len(xy)))
    ax.set_axis_off()
    return ax


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
