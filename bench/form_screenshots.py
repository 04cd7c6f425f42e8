"""Screenshots of the pick and post-process forms as a user fills them, on a virtual screen (Xvfb).

A fresh Scipion project is made (import simulated micrographs and their coordinates, a one-epoch
training, a pick). Then, each in its own GUI process as Scipion opens forms:

* ``form_pick.png``: a new pick form whose 'Input models' wizard was clicked (it added the newest
  trained model; its message box is closed); the header row shows the machine's GPU default;
* ``form_postprocess.png``: a post-process form on those picks, on its Filters tab (the default keeps
  the picks' own threshold);
* ``form_postprocess_wizard.png``: the same with 'Re-threshold scores?' = Yes and the threshold
  wizard clicked: the value it suggests and why.

The screen is captured with ImageMagick (``import``) and trimmed to the windows. Look at them: they
are the check, not a test (a form that fails to open is reported and the script exits 1).

    apt-get install xvfb imagemagick       # once
    python bench/form_screenshots.py [--output docs/screenshots]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xvfb import require_programs, run_shots  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROJECT = "cryounet_form_screenshots"
SHOTS = ("form_pick", "form_postprocess", "form_postprocess_wizard")

#: Runs inside each GUI process: build the project (once) or open a form, fill it and capture it.
_CHILD = r'''
import os, subprocess, sys
mode, target, out = sys.argv[1], sys.argv[2], sys.argv[3]
from pyworkflow.project import Manager
from pyworkflow.object import Pointer
manager = Manager()

def capture_later(root, delay_ms=5000):
    def grab():
        proc = subprocess.run(["import", "-window", "root", "-trim", "+repage", out])
        os._exit(proc.returncode)  # dialogs and timers keep the process alive: end it
    root.after(delay_ms, grab)

def run_by_class(project, name):
    return [r for r in project.getRuns() if r.getClassName() == name][-1]

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
    train = project.newProtocol(CryoUnetProtTrain, epochs=1, useGpu=False, extraConfig=tinyConfigJson(),
                                objLabel="train")
    train.inputMicrographs.set(mics)
    train.inputMicrographs.setExtended("outputMicrographs")
    train.inputCoordinates.set(coords)
    train.inputCoordinates.setExtended("outputCoordinates")
    project.launchProtocol(train, wait=True)
    pick = project.newProtocol(CryoUnetProtPick, useGpu=False, tta=False, streamingBatchSize=0,
                               objLabel="pick")
    pick.inputMicrographs.set(mics)
    pick.inputMicrographs.setExtended("outputMicrographs")
    pick.inputModels.append(Pointer(train, extended="outputModel"))
    project.launchProtocol(pick, wait=True)
    states = [p.getStatus() for p in (mics, coords, train, pick)]
    print("runs:", states)
    sys.exit(0 if all(s == "finished" for s in states) else 1)

import pyworkflow.gui.project  # noqa: F401 (imports gui.form in the order Scipion does)
from pyworkflow.gui.form import FormWindow
from cryounet_plugin.protocols import CryoUnetProtPick, CryoUnetProtPostprocess
from cryounet_plugin.wizards import CryoUnetNewestModelWizard, CryoUnetThresholdWizard
project = manager.loadProject(target)
if mode == "form_pick":
    prot = project.newProtocol(CryoUnetProtPick)
    prot.inputMicrographs.set(run_by_class(project, "ProtImportMicrographs"))
    prot.inputMicrographs.setExtended("outputMicrographs")
else:
    prot = project.newProtocol(CryoUnetProtPostprocess, applyThreshold=mode.endswith("wizard"))
    prot.inputCoordinates.set(run_by_class(project, "CryoUnetProtPick"))
    prot.inputCoordinates.setExtended("outputCoordinates")
window = FormWindow("Protocol Run: " + prot.getClassName(), prot, lambda *args: None, None)
window.adjustSize()
capture_later(window.root)
if mode != "form_pick":
    filters = window._sections[1]
    filters.master.select(filters)
wizard = {"form_pick": CryoUnetNewestModelWizard,
          "form_postprocess_wizard": CryoUnetThresholdWizard}.get(mode)
if wizard is not None:  # clicked once the form is up
    window.root.after(1500, lambda: wizard().show(window))
if mode == "form_pick":  # the form after the wizard, its message box closed
    import tkinter as tk
    window.root.after(3500, lambda: [w.destroy() for w in window.root.winfo_children()
                                     if isinstance(w, tk.Toplevel)])
window.show(center=True)
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "screenshots")
    parser.add_argument("--display", default=":78")
    args = parser.parse_args()
    require_programs("form_screenshots")
    args.output.mkdir(parents=True, exist_ok=True)
    jobs = [("build", PROJECT, None)] + [(shot, PROJECT, str(args.output / f"{shot}.png")) for shot in SHOTS]
    failed = run_shots("form_screenshots", args.display, _CHILD, jobs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
