"""Threshold wizard: from the models' calibration (picking) or the score distribution."""
import numpy as np
from pyworkflow.wizard import Wizard

from ..convert import otsuThreshold
from ..protocols import CryoUnetProtPick, CryoUnetProtPostprocess


def thresholdFromModels(thresholds):
    """Mean of the models' calibrated thresholds (ignoring unknown ones), or None."""
    values = [float(t) for t in thresholds if t is not None and np.isfinite(t)]
    return round(float(np.mean(values)), 3) if values else None


def thresholdFromScores(scores):
    """Threshold separating the two modes of a score distribution (Otsu), or None."""
    value = otsuThreshold(scores)
    return None if value is None else round(value, 3)


def suggestThreshold(modelThresholds=(), scores=None):
    """The calibrated threshold of the models when known, else one from the scores.

    Returns:
        (value, source) with source "calibration" or "scores", or (None, None).
    """
    value = thresholdFromModels(modelThresholds)
    if value is not None:
        return value, "calibration"
    if scores is not None:
        value = thresholdFromScores(scores)
        if value is not None:
            return value, "scores"
    return None, None


class CryoUnetThresholdWizard(Wizard):
    """Suggest a score threshold: for picking, the threshold calibrated at training (mean over
    an ensemble; the one calibrated with test-time augmentation when that is on); for
    post-processing, the value separating the two modes of the input
    coordinates' score histogram."""
    _targets = [(CryoUnetProtPick, ["threshold"]), (CryoUnetProtPostprocess, ["threshold"])]

    def show(self, form, *params):
        protocol = form.protocol
        if isinstance(protocol, CryoUnetProtPick):
            models = protocol._getModels()
            if not models:
                form.showWarning("Select the model(s) first.")
                return
            tta = bool(protocol.tta.get())
            value, _ = suggestThreshold([m.getPickingThreshold(tta) for m in models])
            if value is None:
                form.showWarning("The selected models have no calibrated threshold.")
                return
        else:
            if protocol.inputCoordinates.get() is None:
                form.showWarning("Select the input coordinates first.")
                return
            try:
                scores = protocol.getScores()
            except ValueError as exc:
                form.showWarning(str(exc))
                return
            value, _ = suggestThreshold((), scores)
            if value is None:
                form.showWarning("The input coordinates have no usable scores.")
                return
        form.setVar("threshold", value)
