"""Scipion viewers of CryoUNet models and picks (matplotlib figures).

The figures are drawn by the pure functions of :mod:`cryounet_plugin.viewers.plotting` on a
pyworkflow ``Plotter`` (a View): in the Scipion GUI it opens a window; headless (Agg backend) it
can be saved with ``plotter.getFigure().savefig(...)``.
"""
import os

import numpy as np
import pyworkflow.protocol.params as params
from pyworkflow.gui.plotter import Plotter
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer, Viewer

from .. import engine
from ..constants import SCORE_ATTR
from ..objects import CryoUNetModel
from ..protocols import (CryoUnetProtImportModel, CryoUnetProtPick, CryoUnetProtPostprocess,
                         CryoUnetProtRefine, CryoUnetProtTrain)
from .plotting import PicksBrowser, plotPrecisionRecall, plotScoreHistogram, plotTrainingCurves


#: Box size (px) assumed for drawing circles when a coordinate set has none.
DEFAULT_BOX = 30


def micrographLabel(mic):
    """The name a micrograph is shown and chosen by: its name in the set, else its file name."""
    return mic.getMicName() or os.path.basename(mic.getFileName())


def findMicrograph(mics, name):
    """Index of the micrograph called ``name`` (its set name or file name, with or without the
    extension); 0 for a blank name, None when none is called so."""
    name = (name or "").strip()
    if not name:
        return 0
    for index, mic in enumerate(mics):
        fileName = os.path.basename(mic.getFileName() or "")
        candidates = {micrographLabel(mic), fileName, os.path.splitext(fileName)[0],
                      os.path.splitext(mic.getMicName() or "")[0]}
        if name in candidates:
            return index
    return None


def _plotter(title, figsize):
    return Plotter(windowTitle=title, figsize=figsize)


def trainingCurvesView(model):
    """Plotter with the loss and validation curves of a model (raises ValueError if none)."""
    history = engine.readHistory(model.getPath())
    if not history:
        raise ValueError("%s has no training history (history.json)" % model.getPath())
    plotter = _plotter("CryoUNet training curves", (10, 4))
    plotTrainingCurves(plotter.getFigure(), history,
                       title=model.getObjLabel() or model.getArchitecture() or "model")
    return plotter


def precisionRecallView(model):
    """Plotter with the validation precision-recall curve of a model."""
    curve = engine.readValidationCurve(model.getPath())
    if curve is None:
        raise ValueError("%s has no validation curve (validation_curve.json)" % model.getPath())
    plotter = _plotter("CryoUNet precision-recall", (5, 5))
    plotPrecisionRecall(plotter.getFigure(), curve, threshold=model.getThreshold())
    return plotter


def modelViews(viewer, model, which=("curves", "pr")):
    views, errors = [], []
    makers = {"curves": trainingCurvesView, "pr": precisionRecallView}
    for key in which:
        try:
            views.append(makers[key](model))
        except ValueError as exc:
            errors.append(str(exc))
    viewer.errorList(errors, views)
    return views


class CryoUnetModelViewer(Viewer):
    """Training curves and validation precision-recall curve of a CryoUNet model."""
    _label = "CryoUNet model viewer"
    _environments = [DESKTOP_TKINTER]
    _targets = [CryoUNetModel]

    def _visualize(self, obj, **kwargs):
        return modelViews(self, obj)


class CryoUnetTrainingViewer(ProtocolViewer):
    """Training curves (loss, validation F1 per epoch) and the validation precision-recall
    curve of the model(s) of a train, refine or import-model run."""
    _label = "CryoUNet training viewer"
    _environments = [DESKTOP_TKINTER]
    _targets = [CryoUnetProtTrain, CryoUnetProtRefine, CryoUnetProtImportModel]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("member", params.IntParam, default=1, validators=[params.GE(1)],
                      label="Model (ensemble member)",
                      help="Which model to show when the run produced several (1 = first).")
        form.addParam("showCurves", params.LabelParam, label="Training curves",
                      help="Loss and validation precision/recall/F1 per epoch.")
        form.addParam("showPR", params.LabelParam, label="Precision-recall curve",
                      help="Precision against recall of the validation micrographs over all "
                           "thresholds; the dot is the calibrated threshold.")

    def _getVisualizeDict(self):
        return {"showCurves": self._showCurves, "showPR": self._showPR}

    def getModels(self):
        return [model for _, model in self.protocol.iterOutputAttributes(CryoUNetModel)]

    def _selectedModel(self):
        models = self.getModels()
        if not models:
            return None, [self.errorMessage("The run has no output model yet.")]
        index = min(max(self.member.get() or 1, 1), len(models)) - 1
        return models[index], []

    def _showCurves(self, paramName=None):
        model, errors = self._selectedModel()
        return errors or modelViews(self, model, ("curves",))

    def _showPR(self, paramName=None):
        model, errors = self._selectedModel()
        return errors or modelViews(self, model, ("pr",))


class CryoUnetPicksViewer(ProtocolViewer):
    """Picks drawn on a micrograph and the histogram of pick scores of a pick or
    post-processing run."""
    _label = "CryoUNet picks viewer"
    _environments = [DESKTOP_TKINTER]
    _targets = [CryoUnetProtPick, CryoUnetProtPostprocess]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("micName", params.StringParam, default="",
                      label="Micrograph name",
                      help="Name of the micrograph to show first (its name in the set, or its file "
                           "name, with or without the extension); blank: the first. In the window, "
                           "the Previous/Next buttons and the arrow keys go through the others.")
        form.addParam("showPicks", params.LabelParam, label="Picks on the micrographs",
                      help="Each micrograph low-pass filtered to the particle scale and "
                           "contrast-stretched (as cryounet show draws it), with circles of the "
                           "particle diameter around the picks, coloured by score. One window: "
                           "Previous/Next buttons or the arrow keys.")
        form.addParam("showHistogram", params.LabelParam, label="Score histogram",
                      help="Distribution of the scores of all picks with the threshold.")

    def _getVisualizeDict(self):
        return {"showPicks": self._showPicks, "showHistogram": self._showHistogram}

    def getCoordinates(self):
        return getattr(self.protocol, "outputCoordinates", None)

    def getScoreAttribute(self):
        if isinstance(self.protocol, CryoUnetProtPostprocess):
            return self.protocol._loadInputsInfo().get("score_attribute")
        return SCORE_ATTR

    def getThreshold(self):
        if isinstance(self.protocol, CryoUnetProtPostprocess):
            return self.protocol.threshold.get() if self.protocol.applyThreshold.get() else None
        try:
            return self.protocol.getPickingThreshold()
        except ValueError:
            return None

    def _scores(self, coords):
        attr = self.getScoreAttribute()
        if not attr:
            return None
        values = []
        for coord in coords:  # set iteration reuses one item: read each value at once
            value = getattr(coord, attr, None)
            if value is None or value.get() is None:
                return None
            values.append(value.get())
        return np.array(values, dtype=float)

    def _showPicks(self, paramName=None):
        coordSet = self.getCoordinates()
        if coordSet is None:
            return [self.errorMessage("The run has no output coordinates yet.")]
        # Set iteration reuses one object: clone each micrograph to keep them apart.
        mics = [mic.clone() for mic in coordSet.getMicrographs().iterItems()]
        if not mics:
            return [self.errorMessage("The coordinates have no micrographs.")]
        names = [micrographLabel(mic) for mic in mics]
        start = findMicrograph(mics, self.micName.get())
        if start is None:
            return [self.errorMessage("No micrograph is named %r; the names are: %s"
                                      % (self.micName.get(), ", ".join(names[:10])
                                         + (", ..." if len(names) > 10 else "")))]
        diameter = self._diameter(coordSet)

        def load(index):
            mic = mics[index]
            coords = [c.clone() for c in coordSet.iterCoordinates(mic.getObjId())]
            try:
                image = np.asarray(engine.readMicrograph(mic.getFileName()), dtype=np.float32)
            except ValueError as exc:
                raise ValueError("Cannot read %s" % exc) from None
            xy = np.array([c.getPosition() for c in coords], dtype=float).reshape(-1, 2)
            return image, xy, diameter, self._scores(coords)

        plotter = _plotter("CryoUNet picks", (8, 8))
        plotter.tightLayoutOn = False  # the browser lays out the picture and its buttons itself
        try:
            plotter.browser = PicksBrowser(plotter.getFigure(), names, load, start)  # kept: its buttons live on
        except ValueError as exc:
            return [self.errorMessage(str(exc))]
        return [plotter]

    def _diameter(self, coordSet):
        if isinstance(self.protocol, CryoUnetProtPick) and self.protocol.getPickDiameter():
            return self.protocol.getPickDiameter()
        return engine.diameterFromBoxSize(coordSet.getBoxSize() or DEFAULT_BOX)

    def _showHistogram(self, paramName=None):
        coordSet = self.getCoordinates()
        if coordSet is None:
            return [self.errorMessage("The run has no output coordinates yet.")]
        scores = self._scores(coordSet.iterItems())
        if scores is None or scores.size == 0:
            return [self.errorMessage("The coordinates have no scores to plot.")]
        plotter = _plotter("CryoUNet score histogram", (6, 4))
        plotScoreHistogram(plotter.getFigure(), scores, threshold=self.getThreshold())
        return [plotter]
