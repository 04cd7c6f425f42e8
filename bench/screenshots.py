"""Screenshots of the real Scipion GUI with the CryoUNet plugin, on a virtual screen (Xvfb).

A fresh Scipion project is made (import simulated micrographs and their coordinates, a one-epoch
training, a pick), then the project window and every CryoUNet protocol's form are opened, each in
its own process as Scipion opens them, and the screen is captured (ImageMagick ``import``). The
PNG files go to ``--output``; look at them (they are the check, not a test: a form that fails to
open is reported and the script exits 1).

    apt-get install xvfb imagemagick       # once
    python bench/screenshots.py [--output bench/results/screenshots]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xvfb import require_programs, run_shots  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROJECT = "cryounet_screenshots"
FORMS = ["CryoUnetProtTrain", "CryoUnetProtPick", "CryoUnetProtRefine", "CryoUnetProtPostprocess",
         "CryoUnetProtImportModel", "CryoUnetProtImportCoordinates"]
HOSTS = """[localhost]
PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s
NAME = SLURM
MANDATORY = 0
SUBMIT_COMMAND = sbatch %_(JOB_SCRIPT)s
CHECK_COMMAND = squeue -h -j %_(JOB_ID)s
CANCEL_COMMAND = scancel %_(JOB_ID)s
SUBMIT_TEMPLATE = #!/bin/bash
    #SBATCH --gres=gpu:%_(GPU_COUNT)s
    %_(JOB_COMMAND)s
QUEUES = {"gpu": [["JOB_MEMORY", "8192", "Memory (MB)", "Memory for the job"]]}
"""

#: Runs inside each GUI process: build the project (once) or open a window and capture it.
_CHILD = r'''
import os, subprocess, sys, time
mode, target, out = sys.argv[1], sys.argv[2], sys.argv[3]
from pyworkflow.project import Manager
manager = Manager()

def capture_later(root, delay_ms=5000):
    def grab():
        proc = subprocess.run(["import", "-window", "root", out])
        os._exit(proc.returncode)  # the project window keeps threads and timers: end the process
    root.after(delay_ms, grab)

if mode == "build":
    from cryounet_plugin.tests.common import SIM_BOX, SIM_PIXEL, simulate, tinyConfigJson
    from pwem.protocols import ProtImportMicrographs
    from cryounet_plugin.protocols import (CryoUnetProtImportCoordinates, CryoUnetProtPick,
                                           CryoUnetProtTrain)
    project = manager.createProject(target)
    os.chdir(project.getPath())
    sim = simulate(os.path.join(out, "sim"), micrographs=3, seed=5)
    mics = project.newProtocol(ProtImportMicrographs, filesPath=sim, filesPattern="*.mrc",
                               samplingRate=SIM_PIXEL, objLabel="import micrographs")
    project.launchProtocol(mics, wait=True)
    coords = project.newProtocol(CryoUnetProtImportCoordinates, filesPath=sim, boxSize=SIM_BOX)
    coords.inputMicrographs.set(mics)
    coords.inputMicrographs.setExtended("outputMicrographs")
    project.launchProtocol(coords, wait=True)
    train = project.newProtocol(CryoUnetProtTrain, epochs=1, useGpu=False, extraConfig=tinyConfigJson())
    train.inputMicrographs.set(mics)
    train.inputMicrographs.setExtended("outputMicrographs")
    train.inputCoordinates.set(coords)
    train.inputCoordinates.setExtended("outputCoordinates")
    project.launchProtocol(train, wait=True)
    pick = project.newProtocol(CryoUnetProtPick, useGpu=False, tta=False, streamingBatchSize=0)
    pick.inputMicrographs.set(mics)
    pick.inputMicrographs.setExtended("outputMicrographs")
    from pyworkflow.object import Pointer
    pick.inputModels.append(Pointer(train, extended="outputModel"))
    project.launchProtocol(pick, wait=True)
    states = [p.getStatus() for p in (mics, coords, train, pick)]
    print("runs:", states)
    sys.exit(0 if all(s == "finished" for s in states) else 1)
elif mode == "project":
    from pyworkflow.gui.project import ProjectWindow
    window = ProjectWindow(manager.getProjectPath(target))
    capture_later(window.root, 9000)
    window.show()
else:  # a protocol form, as the project window opens it
    import pyworkflow.gui.project  # noqa: F401 (imports gui.form in the order Scipion does)
    from pyworkflow.gui.form import FormWindow
    from pwem import Domain
    project = manager.loadProject(target)
    prot = project.newProtocol(Domain.getProtocols()[mode])
    window = FormWindow("Protocol Run: " + mode, prot, lambda *args: None, None)
    window.adjustSize()
    capture_later(window.root)
    window.show(center=True)
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "screenshots")
    parser.add_argument("--display", default=":77")
    args = parser.parse_args()
    require_programs("screenshots")
    args.output.mkdir(parents=True, exist_ok=True)
    jobs = [("build", PROJECT, None), ("project", PROJECT, str(args.output / "project.png"))]
    jobs += [(form, PROJECT, str(args.output / f"form_{form}.png")) for form in FORMS]
    failed = run_shots("screenshots", args.display, _CHILD, jobs, HOSTS)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
