"""Screenshots of the pick and post-process forms as a user fills them, on a virtual screen (Xvfb).

A fresh Scipion project is made (import simulated micrographs and their coordinates, a one-epoch
training, a pick). Then, each in its own GUI process as Scipion opens forms:

* ``form_pick.png``: a new pick form whose 'Input models' wizard was clicked (it added the newest
  trained model; its message box is closed); the header row shows the machine's GPU default;
* ``form_postprocess.png``: a post-process form on those picks, on its Filters tab (the default keeps
  the picks' own threshold);
* ``form_postprocess_wizard.png``: the same with 'Re-threshold scores?' = Yes and the threshold
  wizard clicked: the value it suggests and why;
* ``form_pick_threshold.png``: a pick form with the general model on its Picking tab, 'Threshold from
  the scores?' = Yes (the threshold field hidden).

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
from xvfb import CHILD_PREAMBLE, require_programs, run_shots  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROJECT = "cryounet_form_screenshots"
SHOTS = ("form_pick", "form_postprocess", "form_postprocess_wizard", "form_pick_threshold")

#: Runs inside each GUI process: build the project (once) or open a form, fill it and capture it.
_CHILD = CHILD_PREAMBLE + r'''

import pyworkflow.gui.project  # noqa: F401 (imports gui.form in the order Scipion does)
from pyworkflow.gui.form import FormWindow
from cryounet_plugin.protocols import CryoUnetProtPick, CryoUnetProtPostprocess
from cryounet_plugin.wizards import CryoUnetNewestModelWizard, CryoUnetThresholdWizard
project = manager.loadProject(target)
if mode.startswith("form_pick"):
    extra = {"thresholdFromScores": True, "modelSource": 1} if mode == "form_pick_threshold" else {}
    prot = project.newProtocol(CryoUnetProtPick, **extra)
    prot.inputMicrographs.set(run_by_class(project, "ProtImportMicrographs"))
    prot.inputMicrographs.setExtended("outputMicrographs")
else:
    prot = project.newProtocol(CryoUnetProtPostprocess, applyThreshold=mode.endswith("wizard"))
    prot.inputCoordinates.set(run_by_class(project, "CryoUnetProtPick"))
    prot.inputCoordinates.setExtended("outputCoordinates")
window = FormWindow("Protocol Run: " + prot.getClassName(), prot, lambda *args: None, None)
window.adjustSize()
capture_later(window.root, trim=True)
if mode != "form_pick":  # the second tab: the post-process Filters, the pick form's Picking
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
