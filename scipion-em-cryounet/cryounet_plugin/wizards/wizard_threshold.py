"""Threshold wizard: the engine's automatic threshold (picking), or for post-processing a value
with the reason for it: the threshold the picks were made at when known, else the valley of the
score histogram."""
import numpy as np
from pyworkflow.wizard import Wizard

from .. import engine
from ..protocols import CryoUnetProtPick, CryoUnetProtPostprocess


def thresholdFromScores(scores):
    """Threshold separating the two modes of a score distribution (the engine's label-free rule),
    or None."""
    value = engine.scoreValley(scores)
    return None if value is None else round(value, 3)


def postprocessSuggestion(scores, own=None, source=None):
    """``(threshold, message)`` the post-process wizard suggests for picks with these scores.

    Args:
        scores: the input picks' scores.
        own: the threshold the picks were made at, when known (e.g. a CryoUNet pick run's).
        source: what set ``own`` (said in the message).
    Returns:
        ``own`` when known (it keeps every pick; the message says what the histogram's valley
        would keep instead), else the valley (Otsu) of the score histogram; ``(None, reason)`` when
        the scores give nothing.
    """
    scores = np.asarray([s for s in scores if s is not None], dtype=float)
    if scores.size == 0:
        return None, "The input coordinates have no usable scores."
    valley = thresholdFromScores(scores)
    valleyText = ("" if valley is None else "the score histogram's valley (Otsu) is %.3f and keeps "
                  "%d of the %d" % (valley, np.sum(scores >= valley), scores.size))
    if own is not None:
        own = round(own, 3)
        text = ("Suggested %.3f: the threshold these picks were made at (%s); it keeps %d of the "
                "%d picks. A higher one trades recall for precision"
                % (own, source or "by their picker", np.sum(scores >= own), scores.size))
        return own, text + (": %s." % valleyText if valleyText else ".")
    if valley is None:
        return None, "The input scores are all equal: there is nothing to separate."
    return valley, ("Suggested %.3f: the score histogram's valley (Otsu); it keeps %d "
                    "of the %d picks. The threshold these picks were made at is unknown (their "
                    "lowest score is %.3f)." % (valley, np.sum(scores >= valley), scores.size,
                                                scores.min()))


class CryoUnetThresholdWizard(Wizard):
    """Suggest a score threshold: for picking, the one the engine picks at automatically (the
    configured ``pick.threshold``, else the models' calibrated one, with test-time augmentation
    when that is on, averaged over an ensemble); for post-processing, the threshold the input
    picks were made at when known (else the valley of their score histogram), saying why."""
    _targets = [(CryoUnetProtPick, ["threshold"]), (CryoUnetProtPostprocess, ["threshold"])]

    def show(self, form, *params):
        protocol = form.protocol
        if isinstance(protocol, CryoUnetProtPick):
            try:
                if not protocol._getModels():
                    form.showWarning("Select the model(s) first.")
                    return
                form.setVar("threshold", round(protocol.getPickingThreshold(automatic=True), 3))
            except ValueError as exc:
                form.showWarning(str(exc))
            return
        if protocol.inputCoordinates.get() is None:
            form.showWarning("Select the input coordinates first.")
            return
        try:
            value, message = postprocessSuggestion(protocol.getScores(), *protocol.getOwnThreshold())
        except ValueError as exc:
            form.showWarning(str(exc))
            return
        if value is None:
            form.showWarning(message)
            return
        form.setVar("threshold", value)
        form.showInfo(message)
