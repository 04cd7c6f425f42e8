"""``evaluate --plot``: the precision-recall curve with the threshold used marked, and true, false
and missed picks drawn on micrographs (drawn with :mod:`cryounet.render`)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cryounet.evaluation.folders import Evaluation, EvaluationInput
from cryounet.evaluation.metrics import ThresholdCurve, match_picks, threshold_curve
from cryounet.io.coordinates import INDEX_NAME, read_star_index
from cryounet.io.micrographs import MICROGRAPH_SUFFIXES, expand_micrographs
from cryounet.io.mrc import read_micrograph
from cryounet.render import (MATCH_COLOURS, display_image, draw_circles, new_figure, require_matplotlib,
                             save_png, show_micrograph)

logger = logging.getLogger(__name__)

PR_CURVE_NAME = "pr_curve.png"
EVALUATED_SUFFIX = "_evaluated.png"
#: What ``evaluate --plot`` writes (what ``--overwrite`` removes from an unmarked folder).
PLOT_PATTERNS = (PR_CURVE_NAME, f"*{EVALUATED_SUFFIX}")


def draw_pr_curve(figure: Any, curve: ThresholdCurve, result: Evaluation) -> Any:
    """Precision against recall over thresholds, with iso-F1 lines, the threshold used (all the
    picks counted) and the best-F1 threshold (tuned on this truth) marked. Returns the axes."""
    ax = figure.add_subplot(1, 1, 1)
    recall_grid = np.linspace(0.01, 1, 200)
    for f1 in (0.2, 0.4, 0.6, 0.8):
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = f1 * recall_grid / (2 * recall_grid - f1)
        ok = (precision > 0) & (precision <= 1.02)
        ax.plot(recall_grid[ok], precision[ok], color="0.85", lw=0.8, zorder=0)
        ax.annotate(f"F1 {f1:.1f}", (recall_grid[ok][-1], precision[ok][-1]), color="0.6", fontsize=7)
    ax.plot(curve.recall, curve.precision, "-", color="C0", lw=2, label=f"picks (AP {result.ap:.3f})")
    if len(curve.thresholds):
        used = result.threshold if result.threshold is not None else float(curve.thresholds[0])
        ax.plot([result.recall], [result.precision], "o", ms=9, color="C3", zorder=3,
                label=f"threshold used {used:.3g}: P {result.precision:.2f}, R {result.recall:.2f}, "
                      f"F1 {result.f1:.3f}")
        best = curve.best_index()
        ax.plot([curve.recall[best]], [curve.precision[best]], "s", ms=7, mfc="none", color="0.3", zorder=3,
                label=f"best F1 {result.best_f1:.3f} at {result.best_threshold:.3g} (tuned on this truth)")
    if result.ap_cut_at is not None:
        ax.text(0.02, 0.02, f"picks already cut at score {result.ap_cut_at:.3g}: the curve stops there",
                transform=ax.transAxes, fontsize=8, color="C3")
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title=f"{result.n_picks} picks, {result.n_truth} truth centres, {result.n_micrographs} micrographs;"
                 f"\nmatch within {result.matching_radius:.1f} px")
    ax.title.set_fontsize(10)
    ax.legend(loc="lower left", fontsize=8, bbox_to_anchor=(0, 0.06))
    ax.grid(alpha=0.3)
    return ax


def draw_evaluated(figure: Any, image: np.ndarray, pred: np.ndarray, truth: np.ndarray, diameter: float,
                   radius: float, title: str = "") -> Any:
    """A micrograph (:func:`cryounet.render.display_image`) with true positives, false positives
    and missed truth centres in :data:`~cryounet.render.MATCH_COLOURS`. Returns the axes."""
    from matplotlib.lines import Line2D

    shown, factor = display_image(image, diameter)
    hit_pred, hit_truth = match_picks(pred, truth, radius)
    ax = figure.add_subplot(1, 1, 1)
    show_micrograph(ax, shown)
    r = 0.5 * diameter / factor
    groups = (("true", np.asarray(pred).reshape(-1, 2)[hit_pred], "solid"),
              ("false", np.asarray(pred).reshape(-1, 2)[~hit_pred], "solid"),
              ("missed", np.asarray(truth).reshape(-1, 2)[~hit_truth], "dashed"))
    handles = []
    for kind, xy, style in groups:
        draw_circles(ax, xy / factor, r, colour=MATCH_COLOURS[kind], linestyle=style)
        handles.append(Line2D([], [], color=MATCH_COLOURS[kind], lw=2, ls=style,
                              label=f"{kind} {'positives' if kind != 'missed' else 'truth'}: {len(xy)}"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.005), ncol=3, fontsize=9,
              frameon=False)
    ax.set_title(title, fontsize=10)
    return ax


def find_micrographs(stems: Sequence[str], picks_dir: Path, truth_dir: Path,
                     given: Sequence[str] | None) -> dict[str, Path]:
    """Micrograph files of ``stems``: from ``given`` (``--micrographs``), else the pick folder's
    ``coordinates.star`` index, else same-stem micrographs beside the truth files."""
    if given:
        return {p.stem: p for p in expand_micrographs(given) if p.stem in set(stems)}
    index = Path(picks_dir) / INDEX_NAME
    named = read_star_index(index) if index.is_file() else {}
    found = {}
    for stem in stems:
        candidates = ([Path(named[stem])] if stem in named else []) + \
            [Path(truth_dir) / f"{stem}{suffix}" for suffix in MICROGRAPH_SUFFIXES]
        path = next((c for c in candidates if c.is_file()), None)
        if path is not None:
            found[stem] = path
    return found


def write_evaluation_pictures(output: Path, data: EvaluationInput, result: Evaluation, picks_dir: Path,
                              truth_dir: Path, micrographs: Sequence[str] | None, count: int,
                              overwrite: bool = False) -> list[Path]:
    """``pr_curve.png`` and ``<stem>_evaluated.png`` of the first ``count`` micrographs that can be
    found (:func:`find_micrographs`) in ``output``, over the picks ``result`` counted."""
    from cryounet.io.outputs import claim_output_folder

    require_matplotlib()
    kept = data.above(result.threshold)
    folder = claim_output_folder(output, "evaluate", overwrite=overwrite, patterns=PLOT_PATTERNS)
    figure = new_figure(6.4, 6.4)
    draw_pr_curve(figure, threshold_curve(kept.preds, kept.scores, kept.truths, result.matching_radius), result)
    figure.tight_layout()
    written = [output / PR_CURVE_NAME]
    save_png(figure, written[0])
    files = find_micrographs(data.stems, picks_dir, truth_dir, micrographs)
    if not files:
        logger.warning("no micrograph file found for the evaluated picks: give --micrographs to draw them")
    drawn = [i for i, stem in enumerate(data.stems) if stem in files][:count]
    for i in drawn:
        stem = data.stems[i]
        figure = new_figure(8.0, 8.4)
        draw_evaluated(figure, read_micrograph(files[stem]), kept.preds[i], kept.truths[i], result.diameter,
                       result.matching_radius, title=f"{files[stem].name}: picks against the truth")
        figure.tight_layout()
        written.append(output / f"{stem}{EVALUATED_SUFFIX}")
        save_png(figure, written[-1])
    folder.complete()
    return written
