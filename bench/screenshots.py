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
from xvfb import CHILD_PREAMBLE, require_programs, run_shots  # noqa: E402

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
_CHILD = CHILD_PREAMBLE + r'''
if mode == "project":
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
