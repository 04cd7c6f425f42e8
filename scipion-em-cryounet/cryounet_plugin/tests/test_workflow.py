"""The scripted workflows shipped in cryounet_plugin/workflows (training, and the correction loop),
run headless on small data exactly as the Scipion guide tells users to (a subprocess running the runner
module), and loaded by Scipion's own ``pyworkflow.project.scripts.create``."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from pyworkflow.project import Manager

from cryounet_plugin.constants import COORDS_FOLDER, MODELS_GENERAL, SCORE_ATTR, START_PICKER
from cryounet_plugin.engine import COORDS_INDEX, GENERAL_MODEL
from cryounet_plugin.tests.common import SIM_BOX, SIM_DIAMETER, simulate, tinyConfigJson
from cryounet_plugin.workflows.run_workflow import (DEFAULT_WORKFLOW, LOOP_WORKFLOW, applySettings,
                                                    parseArgs)

pytestmark = pytest.mark.scipion

CLASSES = ["ProtImportMicrographs", "CryoUnetProtImportCoordinates", "CryoUnetProtTrain",
           "CryoUnetProtPick", "CryoUnetProtPostprocess"]

LOOP_CLASSES = ["ProtImportMicrographs", "CryoUnetProtPick", "CryoUnetProtImportCoordinates",
                "CryoUnetProtTrain", "CryoUnetProtPick"]
#: Labels of the loop's protocols (what --set LABEL.PARAM=VALUE names).
FIRST_PICK, TRAIN, PICK_AGAIN = "pick with the general model", "train from the picking model", "pick again"


def readWorkflow(path):
    with open(path) as handle:
        return json.load(handle)


def assertPointersBackwards(protocols):
    """Every pointer of a workflow file refers to an earlier protocol of the file."""
    ids = {p["object.id"] for p in protocols}
    for prot in protocols:  # every pointer refers to an earlier protocol of the file
        for key, value in prot.items():
            for ref in (value if isinstance(value, list) else [value]):
                if isinstance(ref, str) and "." in ref and ref.split(".")[0] in ids \
                        and ref.split(".")[1].startswith("output"):
                    assert int(ref.split(".")[0]) < int(prot["object.id"]), (key, ref)


def test_workflow_file_is_consistent():
    protocols = readWorkflow(DEFAULT_WORKFLOW)
    assert [p["object.className"] for p in protocols] == CLASSES
    assertPointersBackwards(protocols)


def test_loop_workflow_file_is_consistent():
    protocols = readWorkflow(LOOP_WORKFLOW)
    assert [p["object.className"] for p in protocols] == LOOP_CLASSES
    assertPointersBackwards(protocols)
    first, imported, train, again = protocols[1:]
    assert first["modelSource"] == str(MODELS_GENERAL) and first["thresholdFromScores"] == "True"
    assert imported["correctedPicks"] == "2.outputCoordinates"  # the corrections of the first pick
    assert train["inputCoordinates"] == "3.outputCoordinates"
    assert train["startFrom"] == str(START_PICKER)
    assert again["inputModels"] == ["4.outputModel"]


def test_loop_runner_needs_the_diameter_of_the_general_model():
    argv = ["--workflow", "loop", "--project", "p", "--micrographs", "m", "--sampling-rate", "1",
            "--coordinates", "c", "--cpu"]
    with pytest.raises(SystemExit, match="needs the particle diameter: give --diameter"):
        applySettings(readWorkflow(LOOP_WORKFLOW), parseArgs(argv))
    protocols = applySettings(readWorkflow(LOOP_WORKFLOW), parseArgs(argv + ["--diameter", "24"]))
    assert protocols[1]["particleDiameter"] == "24.0" and protocols[1]["diameterUnit"] == "0"
    assert [p.get("useGpu") for p in protocols] == [None, "False", None, "False", "False"]
    assert protocols[2]["filesPath"] == os.path.abspath("c") and protocols[2]["boxSize"] == "0"


def test_run_workflow_headless(tmp_path):
    data = simulate(str(tmp_path / "data"), micrographs=4, seed=31)
    name = "cryounet_workflow_test"
    cmd = [sys.executable, "-m", "cryounet_plugin.workflows.run_workflow",
           "--project", name, "--micrographs", data, "--sampling-rate", "2.0",
           "--coordinates", data, "--box-size", str(SIM_BOX), "--cpu",
           "--set", "train.epochs=1", "--set", "train.extraConfig=" + tinyConfigJson(),
           "--set", "pick.streamingBatchSize=0", "--set", "post-process.edgeDistance=12"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Done." in proc.stdout

    project = Manager().loadProject(name)
    runs = sorted(project.getRuns(), key=lambda p: p.getObjId())
    assert [r.getClassName() for r in runs] == CLASSES
    assert all(r.isFinished() for r in runs)
    train, pick, post = runs[2], runs[3], runs[4]
    assert train.epochs.get() == 1 and not train.useGpu.get()
    assert abs(train.outputModel.getDiameter() - SIM_DIAMETER) < 1e-3
    assert pick.outputCoordinates.getSize() > 0
    assert post.outputCoordinates.getSize() <= pick.outputCoordinates.getSize()
    index = os.path.join(project.getPath(), post._getExtraPath(COORDS_FOLDER, COORDS_INDEX))
    assert os.path.exists(index)
    for coord in post.outputCoordinates.iterItems():
        assert 12 - 0.5 <= coord.getX() <= 256 - 12 + 0.5


def test_scipion_create_loads_the_workflow(tmp_path):
    """Scipion's own script creates the project from the file (the GUI/schedule route)."""
    name = "cryounet_workflow_create"
    proc = subprocess.run([sys.executable, "-m", "pyworkflow.project.scripts.create", name,
                           DEFAULT_WORKFLOW], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    project = Manager().loadProject(name)
    runs = sorted(project.getRuns(), key=lambda p: p.getObjId())
    assert [r.getClassName() for r in runs] == CLASSES
    pick = runs[3]
    assert [p.getObjValue().getObjId() for p in pick.inputModels] == [runs[2].getObjId()]
    assert pick.inputModels[0].getExtended() == "outputModel"
    assert runs[4].inputCoordinates.getObjValue().getObjId() == pick.getObjId()


def test_run_loop_workflow_headless(tmp_path):
    """Pick with the general model, import corrections of 2 of 4 micrographs, train from the model
    that picked them (found through the import's 'Corrections of'), pick again."""
    data = simulate(str(tmp_path / "data"), micrographs=4, seed=32)
    corrected = tmp_path / "corrected"
    corrected.mkdir()
    for name in ("mic_001.star", "mic_003.star"):
        shutil.copy(os.path.join(data, name), str(corrected / name))
    name = "cryounet_loop_test"
    cmd = [sys.executable, "-m", "cryounet_plugin.workflows.run_workflow", "--workflow", "loop",
           "--project", name, "--micrographs", data, "--sampling-rate", "2.0",
           "--diameter", str(SIM_DIAMETER), "--coordinates", str(corrected), "--cpu",
           "--set", TRAIN + ".epochs=1", "--set", TRAIN + ".extraConfig=" + tinyConfigJson()]
    for pick in (FIRST_PICK, PICK_AGAIN):
        cmd += ["--set", pick + ".streamingBatchSize=0", "--set", pick + ".tta=False"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    project = Manager().loadProject(name)
    runs = sorted(project.getRuns(), key=lambda p: p.getObjId())
    assert [r.getClassName() for r in runs] == LOOP_CLASSES
    assert [r.getObjLabel() for r in runs[1:]] == [FIRST_PICK, "import corrected coordinates",
                                                   TRAIN, PICK_AGAIN]
    assert all(r.isFinished() for r in runs)
    first, imported, train, again = runs[1:]
    assert first.outputCoordinates.getSize() > 0
    # the general model's picks were cut at the threshold read from their scores, not its own
    firstCommands = [open(os.path.join(root, f)).read() for root, _, files in
                     os.walk(os.path.join(project.getPath(), first._getExtraPath("batches")))
                     for f in files if f.endswith(".cmd")]
    assert firstCommands and all("--threshold otsu" in c for c in firstCommands), firstCommands
    threshold = first.getPickingThreshold()
    assert min(c.getAttributeValue(SCORE_ATTR) for c in first.outputCoordinates.iterItems()) >= threshold - 1e-6
    assert "threshold read from the scores of each batch" in "\n".join(first.summary())
    # the corrections cover 2 micrographs and carry the first pick's box (hence its diameter)
    assert len(imported.outputCoordinates.getUniqueValues("_micId")) == 2
    assert imported.outputCoordinates.getBoxSize() == first.outputCoordinates.getBoxSize()
    # training used only the corrected micrographs and started from the model that picked them
    with open(train._getExtraPath("cryounet_inputs.json")) as handle:
        assert json.load(handle)["labelled_micrographs"] == 2
    with open(train._getExtraPath("cryounet_train.cmd")) as handle:
        assert "--init %s" % GENERAL_MODEL in handle.read()
    assert ("starting from the general model, which picked run '%s' (id %d)"
            % (FIRST_PICK, first.getObjId()) in "\n".join(train.summary()))
    # the second pick ran with that model, on every micrograph
    assert [p.getObjValue().getObjId() for p in again.inputModels] == [train.getObjId()]
    commands = [open(os.path.join(root, f)).read()
                for root, _, files in os.walk(os.path.join(project.getPath(), again._getExtraPath("batches")))
                for f in files if f.endswith(".cmd")]
    assert commands and all("--model %s" % os.path.abspath(os.path.join(project.getPath(), train.outputModel.getPath()))
                            in c for c in commands), commands
    coords = os.path.join(project.getPath(), again._getExtraPath(COORDS_FOLDER))
    assert os.path.exists(os.path.join(coords, COORDS_INDEX))
    assert sorted(f for f in os.listdir(coords) if f != COORDS_INDEX) == ["mic_%03d.star" % i for i in range(4)]
    assert again.outputCoordinates.getSize() > 0
