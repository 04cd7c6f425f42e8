"""The scripted workflow shipped in cryounet_plugin/workflows, run headless on small data
exactly as the README tells users to (a subprocess running the runner module), and loaded by
Scipion's own ``pyworkflow.project.scripts.create``."""
import json
import os
import subprocess
import sys

import pytest
from pyworkflow.project import Manager

from cryounet_plugin.constants import COORDS_FOLDER
from cryounet_plugin.engine import COORDS_INDEX
from cryounet_plugin.tests.common import SIM_BOX, SIM_DIAMETER, simulate, tinyConfigJson
from cryounet_plugin.workflows.run_workflow import DEFAULT_WORKFLOW

pytestmark = pytest.mark.scipion

CLASSES = ["ProtImportMicrographs", "CryoUnetProtImportCoordinates", "CryoUnetProtTrain",
           "CryoUnetProtPick", "CryoUnetProtPostprocess"]


def test_workflow_file_is_consistent():
    with open(DEFAULT_WORKFLOW) as handle:
        protocols = json.load(handle)
    assert [p["object.className"] for p in protocols] == CLASSES
    ids = {p["object.id"] for p in protocols}
    for prot in protocols:  # every pointer refers to an earlier protocol of the file
        for key, value in prot.items():
            for ref in (value if isinstance(value, list) else [value]):
                if isinstance(ref, str) and "." in ref and ref.split(".")[0] in ids \
                        and ref.split(".")[1].startswith("output"):
                    assert int(ref.split(".")[0]) < int(prot["object.id"]), (key, ref)


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
