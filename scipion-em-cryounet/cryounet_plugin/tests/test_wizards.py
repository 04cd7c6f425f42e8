"""Wizard logic as pure functions, and the wizards' behaviour on a fake form (no display).

The wizards on real protocols and sets are exercised in test_protocols.py (test_07_wizards).
"""
from types import SimpleNamespace

import numpy as np

from cryounet_plugin.constants import UNIT_ANGSTROM, UNIT_PIXELS
from cryounet_plugin.wizards.wizard_diameter import CryoUnetDiameterWizard, suggestDiameter
from cryounet_plugin.wizards.wizard_threshold import thresholdFromScores


class FakeForm:
    def __init__(self, protocol):
        self.protocol = protocol
        self.values, self.messages = {}, []

    def setVar(self, name, value):
        self.values[name] = value

    def showWarning(self, msg, header="Warning"):
        self.messages.append(msg)


def _getter(value):
    return SimpleNamespace(get=lambda: value)


def test_suggest_diameter():
    """The box rule (diameter = box / 1.5), then units: a box of 96 px is a 64 px particle."""
    # box of 96 px picked on micrographs of 1 A/px, training micrographs binned to 2 A/px
    assert suggestDiameter(96, 1.0, 2.0, UNIT_PIXELS) == 32.0
    assert suggestDiameter(96, 1.0, 2.0, UNIT_ANGSTROM) == 64.0
    assert suggestDiameter(36, None, None, UNIT_PIXELS) == 24.0
    assert suggestDiameter(75, None, 1.5, UNIT_ANGSTROM) == 75.0
    assert suggestDiameter(0, 1.0, 1.0) is None
    assert suggestDiameter(None, 1.0, 1.0) is None
    assert suggestDiameter(50, None, None, UNIT_ANGSTROM) is None


def test_threshold_from_scores():
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.uniform(0.05, 0.3, 300), rng.uniform(0.7, 1.0, 100)])
    value = thresholdFromScores(scores)
    assert 0.3 <= value <= 0.7
    assert thresholdFromScores([0.5]) is None


def test_diameter_wizard_on_fake_form():
    coordMics = SimpleNamespace(getSamplingRate=lambda: 1.0)
    coords = SimpleNamespace(getBoxSize=lambda: 120, getMicrographs=lambda: coordMics)
    mics = SimpleNamespace(getSamplingRate=lambda: 2.0)
    protocol = SimpleNamespace(inputCoordinates=_getter(coords), inputMicrographs=_getter(mics),
                               diameterUnit=_getter(UNIT_PIXELS))
    form = FakeForm(protocol)
    CryoUnetDiameterWizard().show(form)
    assert form.values == {"particleDiameter": 40.0} and not form.messages
    protocol.inputCoordinates = _getter(None)
    form = FakeForm(protocol)
    CryoUnetDiameterWizard().show(form)
    assert form.values == {} and "Select the input coordinates" in form.messages[0]
    noBox = SimpleNamespace(getBoxSize=lambda: 0, getMicrographs=lambda: coordMics)
    protocol.inputCoordinates = _getter(noBox)
    form = FakeForm(protocol)
    CryoUnetDiameterWizard().show(form)
    assert form.values == {} and "no box size" in form.messages[0]
