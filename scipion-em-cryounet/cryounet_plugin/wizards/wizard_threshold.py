"""Threshold wizard: the engine's automatic threshold (picking) or one from the scores
(post-processing)."""
from pyworkflow.wizard import Wizard

from ..convert import otsuThreshold
from ..protocols import CryoUnetProtPick, CryoUnetProtPostprocess


def thresholdFromScores(scores):
    """Threshold separating the two modes of a score distribution (Otsu), or None."""
    value = otsuThreshold(scores)
    return None if value is None else round(value, 3)


class CryoUnetThresholdWizard(Wizard):
    """Suggest a score threshold: for picking, the one the engine picks at automatically (the
    configured ``pick.threshold``, else the models' calibrated one, with test-time augmentation
    when that is on, averaged over an ensemble); for post-processing, the value separating the two
    modes of the input coordinates' score histogram."""
    _targets = [(CryoUnetProtPick, ["threshold"]), (CryoUnetProtPostprocess, ["threshold"])]

    def show(self, form, *params):
        protocol = form.protocol
        if isinstance(protocol, CryoUnetProtPick):
            try:
                if not protocol._getModels():
                    form.showWarning("Select the model(s) first.")
                    return
                value = round(protocol.getPickingThreshold(automatic=True), 3)
            except ValueError as exc:
                form.showWarning(str(exc))
                return
        else:
            if protocol.inputCoordinates.get() is None:
                form.showWarning("Select the input coordinates first.")
                return
            try:
                value = thresholdFromScores(protocol.getScores())
            except ValueError as exc:
                form.showWarning(str(exc))
                return
            if value is None:
                form.showWarning("The input coordinates have no usable scores.")
                return
        form.setVar("threshold", value)
