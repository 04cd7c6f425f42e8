"""Wizard logic as pure functions, and the wizards' behaviour on a fake form (no display).

The wizards on real protocols and sets are exercised in test_protocols.py (test_07_wizards).
"""
from types import SimpleNamespace

import numpy as np

from cryounet_plugin.constants import UNIT_ANGSTROM, UNIT_PIXELS
from cryounet_plugin.wizards.wizard_diameter import CryoUnetDiameterWizard, suggestDiameter
from cryounet_plugin.wizards.wizard_threshold import thresholdFromScores


class FakeForm:
    """A form that records what a wizard sets and says."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.values, self.messages = {}, []

    def setVar(self, name, value):
        self.values[name] = value

    def showWarning(self, msg, header="Warning"):
        self.messages.append(msg)

    def showInfo(self, msg, header="Info"):
        self.messages.append("info: " + msg)


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
    coordMics.iterItems = lambda: iter(())
    coords = SimpleNamespace(getBoxSize=lambda: 120, getMicrographs=lambda: coordMics, iterItems=lambda: iter(()))
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
    noBox = SimpleNamespace(getBoxSize=lambda: 0, getMicrographs=lambda: coordMics, iterItems=lambda: iter(()))
    protocol.inputCoordinates = _getter(noBox)
    form = FakeForm(protocol)
    CryoUnetDiameterWizard().show(form)
    assert form.values == {} and "no box size" in form.messages[0]


def test_postprocess_suggestion_keeps_the_picks_own_threshold():
    """Where the threshold the picks were made at is known, the wizard suggests it (it keeps every
    pick) and says what the histogram's valley would keep instead; else the valley, saying why."""
    from cryounet_plugin.wizards.wizard_threshold import postprocessSuggestion

    rng = np.random.default_rng(2)
    scores = np.concatenate([rng.uniform(0.18, 0.4, 300), rng.uniform(0.7, 1.0, 100)])
    value, message = postprocessSuggestion(scores, 0.178, "pick run 'p'")
    assert value == 0.178
    assert message.startswith("Suggested 0.178: the threshold these picks were made at "
                              "(pick run 'p'); it keeps 400 of the 400 picks.")
    valley = thresholdFromScores(scores)
    assert "the score histogram's valley (Otsu) is %.3f and keeps %d of the 400." \
        % (valley, np.sum(scores >= valley)) in message
    value, message = postprocessSuggestion(scores)
    assert value == valley
    assert message.startswith("Suggested %.3f: the score histogram's valley (Otsu); "
                              "it keeps %d of the 400 picks." % (valley, np.sum(scores >= valley)))
    assert "made at is unknown (their lowest score is %.3f)" % scores.min() in message
    assert postprocessSuggestion([]) == (None, "The input coordinates have no usable scores.")
    assert postprocessSuggestion([0.5, 0.5])[0] is None
    assert postprocessSuggestion([0.5, 0.5], 0.3)[0] == 0.3


def test_postprocess_wizard_on_fake_form():
    from cryounet_plugin.wizards.wizard_threshold import CryoUnetThresholdWizard
    from cryounet_plugin.protocols import CryoUnetProtPostprocess

    class Post(CryoUnetProtPostprocess):
        def __init__(self):  # no project: only what the wizard reads
            self.inputCoordinates = _getter(object())

        def getScores(self):
            return [0.2, 0.3, 0.9, 0.95]

        def getOwnThreshold(self):
            return 0.2, "pick run 'p'"

    form = FakeForm(Post())
    form.showInfo = form.messages.append
    CryoUnetThresholdWizard().show(form)
    assert form.values == {"threshold": 0.2}
    assert form.messages[0].startswith("Suggested 0.200: the threshold these picks were made at")


def _simulatedCoordinates(folder, boxSize):
    """Fake Scipion sets over simulated micrographs of 40 px particles (2 A/px), with their picks."""
    from cryounet.simulate import SimulationConfig, simulate_dataset
    from cryounet_plugin import engine

    paths = [p for p in simulate_dataset(SimulationConfig(n_micrographs=2, size=384, diameter_px=40.0,
                                                          particles_per_micrograph=30, seed=8), folder)
             if p.suffix == ".mrc"]
    mics = [SimpleNamespace(getObjId=lambda i=i: i + 1, getFileName=lambda p=p: str(p))
            for i, p in enumerate(paths)]
    coords = [SimpleNamespace(getMicId=lambda i=i: i + 1, getX=lambda x=x: x, getY=lambda y=y: y)
              for i, p in enumerate(paths) for x, y in engine.readCoordinates(p.with_suffix(".star")).xy]
    micSet = SimpleNamespace(getSamplingRate=lambda: 2.0, iterItems=lambda: iter(mics))
    coordSet = SimpleNamespace(getBoxSize=lambda: boxSize, getMicrographs=lambda: micSet,
                               iterItems=lambda: iter(coords))
    return SimpleNamespace(inputCoordinates=_getter(coordSet), inputMicrographs=_getter(micSet),
                           diameterUnit=_getter(UNIT_PIXELS))


def test_diameter_wizard_shows_the_engine_estimate(tmp_path):
    # The box says 40 px and the data agree: the box's value, and the estimate shown.
    form = FakeForm(_simulatedCoordinates(tmp_path / "a", 60))
    CryoUnetDiameterWizard().show(form)
    assert form.values == {"particleDiameter": 40.0}
    assert form.messages[0].startswith("info: ") and "spacing" in form.messages[0]
    # A box of 300 px (a 200 px particle) contradicts the data: the estimate fills the form.
    form = FakeForm(_simulatedCoordinates(tmp_path / "b", 300))
    CryoUnetDiameterWizard().show(form)
    assert 30 <= form.values["particleDiameter"] <= 50
    assert "does not fit the data" in form.messages[0] and "profile" in form.messages[0]
    # No box size: the estimate, in Angstrom when asked.
    protocol = _simulatedCoordinates(tmp_path / "c", 0)
    protocol.diameterUnit = _getter(UNIT_ANGSTROM)
    form = FakeForm(protocol)
    CryoUnetDiameterWizard().show(form)
    assert 60 <= form.values["particleDiameter"] <= 100
