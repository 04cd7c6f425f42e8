"""Particle-diameter wizard: suggests the diameter from the coordinates' box size (the engine's
box rule, as the train protocol applies it when the diameter is 0)."""
from pyworkflow.wizard import Wizard

from .. import engine
from ..constants import UNIT_ANGSTROM, UNIT_PIXELS
from ..protocols import CryoUnetProtTrain


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
    diameter = engine.diameterFromBoxSize(boxSize)  # pixels of the coordinates' micrographs
    if unit == UNIT_ANGSTROM:
        sampling = coordSampling or micSampling
        if not sampling or sampling <= 0:
            return None
        return round(diameter * sampling, 1)
    scale = coordSampling / micSampling if coordSampling and micSampling else 1.0
    return round(diameter * scale, 1)


class CryoUnetDiameterWizard(Wizard):
    """Fill the particle diameter from the box size of the input coordinates (box / BOX_FACTOR), converted
    to the selected unit (pixels of the input micrographs, or Angstrom)."""
    _targets = [(CryoUnetProtTrain, ["particleDiameter"])]

    def show(self, form, *params):
        protocol = form.protocol
        coordSet = protocol.inputCoordinates.get()
        micSet = protocol.inputMicrographs.get()
        if coordSet is None:
            form.showWarning("Select the input coordinates first.")
            return
        coordMics = coordSet.getMicrographs()
        value = suggestDiameter(coordSet.getBoxSize(),
                                coordMics.getSamplingRate() if coordMics is not None else None,
                                micSet.getSamplingRate() if micSet is not None else None,
                                protocol.diameterUnit.get())
        if value is None:
            form.showWarning("The input coordinates have no box size (or the micrographs no "
                             "sampling rate for Angstrom): enter the diameter by hand.")
            return
        form.setVar("particleDiameter", value)
