"""Particle-diameter wizard: the engine's estimate from the input micrographs and coordinates (the
spacing of the picks, their averaged profile, the blob scale), shown with each method's figure.
The coordinates' box size (the engine's box rule, as the train protocol applies it when the diameter
is 0) fills the form when it agrees with the estimate; the estimate does otherwise."""
import os

from pyworkflow.wizard import Wizard

from .. import engine
from ..constants import UNIT_ANGSTROM, UNIT_PIXELS
from ..protocols import CryoUnetProtTrain

#: Micrographs whose images the estimate reads (the spacing of the picks uses all of them).
ESTIMATE_MICROGRAPHS = 6


def convertDiameter(diameterPx, coordSampling, micSampling, unit=UNIT_PIXELS):
    """A diameter in pixels of the coordinates' micrographs, in ``unit`` (pixels of the training
    micrographs, or Angstrom), rounded to 0.1; None when the sampling needed is unknown."""
    if unit == UNIT_ANGSTROM:
        sampling = coordSampling or micSampling
        if not sampling or sampling <= 0:
            return None
        return round(diameterPx * sampling, 1)
    scale = coordSampling / micSampling if coordSampling and micSampling else 1.0
    return round(diameterPx * scale, 1)


def suggestDiameter(boxSize, coordSampling, micSampling, unit=UNIT_PIXELS):
    """Diameter suggested from the box size of a coordinate set (box / BOX_FACTOR).

    Args:
        boxSize: box size of the coordinates, in pixels of the micrographs they were picked on.
        coordSampling: sampling rate (A/px) of those micrographs (None/0 when unknown).
        micSampling: sampling rate (A/px) of the micrographs to train on (None/0 when unknown).
        unit: UNIT_PIXELS (pixels of the training micrographs) or UNIT_ANGSTROM.

    Returns:
        The diameter in ``unit`` rounded to 0.1, or None when it cannot be derived.
    """
    if not boxSize or boxSize <= 0:
        return None
    return convertDiameter(engine.diameterFromBoxSize(boxSize), coordSampling, micSampling, unit)


def collectPicks(coordSet):
    """``(micrograph files, picks)`` of a coordinate set: the files of its micrographs that have
    coordinates and exist, with their ``[(x, y), ...]`` in pixels of those micrographs."""
    byMic = {}
    for coord in coordSet.iterItems():
        byMic.setdefault(coord.getMicId(), []).append((coord.getX(), coord.getY()))
    paths, picks = [], []
    for mic in coordSet.getMicrographs().iterItems():
        xy = byMic.get(mic.getObjId())
        if xy and os.path.exists(mic.getFileName()):
            paths.append(mic.getFileName())
            picks.append(xy)
    return paths, picks


def estimateFromCoordinates(coordSet):
    """The engine's estimate (see engine.estimateDiameter) in pixels of the coordinates'
    micrographs, from the picks and micrographs without the box size (the wizard weighs the box
    against it); raises ValueError with the reason when it cannot be made."""
    paths, picks = collectPicks(coordSet)
    if not paths:
        raise ValueError("none of the coordinates' micrograph files could be found")
    return engine.estimateDiameter(paths, picks, None, ESTIMATE_MICROGRAPHS)


class CryoUnetDiameterWizard(Wizard):
    """Estimate the particle diameter from the input micrographs and coordinates, show the figures
    and fill the field (in the selected unit): the box size's diameter when the estimate agrees with
    it, else the estimate."""
    _targets = [(CryoUnetProtTrain, ["particleDiameter"])]

    def show(self, form, *params):
        protocol = form.protocol
        coordSet = protocol.inputCoordinates.get()
        micSet = protocol.inputMicrographs.get()
        if coordSet is None:
            form.showWarning("Select the input coordinates first.")
            return
        coordMics = coordSet.getMicrographs()
        samplings = (coordMics.getSamplingRate() if coordMics is not None else None,
                     micSet.getSamplingRate() if micSet is not None else None)
        unit = protocol.diameterUnit.get()
        box = coordSet.getBoxSize()
        fromBox = suggestDiameter(box, samplings[0], samplings[1], unit)
        try:
            estimate = estimateFromCoordinates(coordSet)
        except ValueError as exc:
            estimate, why = None, str(exc)
        if estimate is None or estimate["diameter_px"] is None:
            if fromBox is None:
                form.showWarning("The input coordinates have no box size (or the micrographs no "
                                 "sampling rate for Angstrom), and the diameter could not be estimated "
                                 "(%s): enter the diameter by hand." % (why if estimate is None else
                                                                       estimate["report"]))
                return
            form.setVar("particleDiameter", fromBox)
            return
        value = convertDiameter(estimate["diameter_px"], samplings[0], samplings[1], unit)
        boxPx = engine.diameterFromBoxSize(box) if box else None
        contradiction = engine.diameterContradiction(boxPx, estimate) if boxPx else None
        if fromBox is not None and contradiction is None:
            value = fromBox
        if value is None:
            form.showWarning("The micrographs have no sampling rate: choose pixels as the unit.\n\n"
                             + estimate["report"])
            return
        form.setVar("particleDiameter", value)
        lines = [ln for ln in estimate["report"].splitlines() if not ln.lstrip().startswith("box ")]
        text = ("Estimated from the micrographs and picks (pixels of the coordinates' micrographs):\n"
                + "\n".join(lines))
        if contradiction:
            form.showWarning("The box size of the coordinates (%g px, a %.0f px particle) does not fit "
                             "the data: %s. The field holds the estimate.\n\n%s"
                             % (box, boxPx, contradiction, text))
        else:
            form.showInfo(text)
