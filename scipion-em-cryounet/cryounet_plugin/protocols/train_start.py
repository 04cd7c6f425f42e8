"""Where a training starts when it fine-tunes "the model that picked them": the CryoUNet pick run
found in the provenance of the input coordinates, and the model that run picked with.

The provenance is walked back from the run that produced the coordinates through the coordinate
inputs of each run (a post-process, a subset, a consensus, a manual correction, an import that names
the picks it corrects) until CryoUNet pick runs are found; the nearest ones count.
"""
import os

from pyworkflow.protocol import Protocol
from pwem.objects import SetOfCoordinates

from .. import engine
from ..constants import MODELS_GENERAL
from .protocol_pick import CryoUnetProtPick

#: Runs walked back from the coordinates at most (a chain of corrections, subsets, filters).
MAX_DEPTH = 10


def runName(run):
    """'label' (id N) of a run, as the Scipion project shows it."""
    return "'%s' (id %s)" % (run.getRunName(), run.getObjId()) if run is not None else "'?'"


def producingRun(pointer, project):
    """The run whose output ``pointer`` points to (None when unknown)."""
    value = pointer.getObjValue()
    if isinstance(value, Protocol):
        return value
    target = pointer.get()
    if target is None or project is None or target.getObjId() is None:
        return None
    for run in project.getRuns():
        if any(output.getObjId() == target.getObjId() for _, output in run.iterOutputAttributes()):
            return run
    return None


def coordinateInputs(run):
    """The input pointers of ``run`` that point to coordinate sets."""
    return [pointer for _, pointer in run.iterInputAttributes()
            if isinstance(pointer.get(), SetOfCoordinates)]


def nearestPickRuns(pointer, project):
    """``(CryoUNet pick runs, runs walked)``: the pick runs nearest the coordinates ``pointer``
    points to in their provenance (none found: an empty list), breadth first."""
    frontier, seen, walked = [producingRun(pointer, project)], set(), []
    for _ in range(MAX_DEPTH):
        picks, following = [], []
        for run in frontier:
            if run is None or run.getObjId() in seen:
                continue
            seen.add(run.getObjId())
            walked.append(run)
            if isinstance(run, CryoUnetProtPick):
                picks.append(run)
            else:
                following += [producingRun(p, project) for p in coordinateInputs(run)]
        if picks or not following:
            return picks, walked
        frontier = following
    return [], walked


def pickRunStart(run):
    """``(--init value, words)`` of the model the CryoUNet pick run ``run`` picked with.

    Raises:
        ValueError: it picked with an ensemble, or its model cannot be found.
    """
    if run.modelSource.get() == MODELS_GENERAL:
        return engine.GENERAL_MODEL, "the general model, which picked run %s" % runName(run)
    models = run._getModels()
    if len(models) != 1:
        raise ValueError("Pick run %s picked with an ensemble of %d models; training starts from one. "
                         "Set Start from = a model and choose one of them."
                         % (runName(run), len(models)))
    model = models[0]
    return (os.path.abspath(model.getPath()), "model %s (%s), which picked run %s"
            % (model.getObjLabel() or model.getObjId(), model.getPath(), runName(run)))


def pickerStart(coordinatesPointer, project, pickRun=None):
    """``(--init value, words)`` of "the model that picked them": the model of ``pickRun`` when
    given, else of the CryoUNet pick run in the coordinates' provenance.

    Raises:
        ValueError: no such run, several with different models, or an ensemble (the message says
            what to choose instead).
    """
    if pickRun is not None:
        return pickRunStart(pickRun)
    picks, walked = nearestPickRuns(coordinatesPointer, project)
    if not picks:
        chain = " <- ".join(runName(run) for run in walked) or "no run found"
        raise ValueError("Start from = the model that picked them: the input coordinates do not come "
                         "from a CryoUNet pick run (their provenance: %s). Choose that pick run in "
                         "'Pick run', or set Start from = general model or a model." % chain)
    starts = [pickRunStart(run) for run in picks]
    if len({init for init, _ in starts}) > 1:
        raise ValueError("The input coordinates come from CryoUNet pick runs with different models "
                         "(%s): choose the one to start from in 'Pick run'."
                         % ", ".join(runName(run) for run in picks))
    return starts[0]
