"""Running Scipion windows under Xvfb for the screenshot benchmarks: a virtual screen, a throwaway
Scipion user folder and a child script per shot (each in its own process, as a user opens one
window at a time)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

#: The start of every child script: its arguments, Scipion's project manager, a delayed capture of
#: the screen (trimmed to the windows with ``trim``), and the "build" mode that makes the project the
#: screenshots show (import micrographs and coordinates, a one-epoch training, a pick).
CHILD_PREAMBLE = r'''
import os, subprocess, sys
mode, target, out = sys.argv[1], sys.argv[2], sys.argv[3]
from pyworkflow.project import Manager
from pyworkflow.object import Pointer
manager = Manager()

def capture_later(root, delay_ms=5000, trim=False):
    def grab():
        proc = subprocess.run(["import", "-window", "root", *(["-trim", "+repage"] if trim else []), out])
        os._exit(proc.returncode)  # dialogs, threads and timers keep the process alive: end it
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
'''

HOSTS = "[localhost]\nPARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s\nNAME = localhost\nMANDATORY = 0\n"


def require_programs(label: str) -> None:
    for program in ("Xvfb", "import"):
        if shutil.which(program) is None:
            sys.exit(f"{label}: {program} is missing (apt-get install xvfb imagemagick)")


def run_shots(label: str, display: str, child_source: str, jobs: Sequence[tuple[str, str, str]],
              hosts: str = HOSTS) -> list[str]:
    """Run ``child_source`` once per ``(mode, target, output)`` job on a fresh Xvfb ``display``
    (the first job builds the project: its output is the working folder); returns the failed modes."""
    work = Path(tempfile.mkdtemp(prefix=f"cryounet-{label}-"))
    (work / "hosts.conf").write_text(hosts)
    env = dict(os.environ, DISPLAY=display, SCIPION_USER_DATA=str(work / "ScipionUserData"),
               SCIPION_HOSTS=str(work / "hosts.conf"), SCIPION_DOMAIN="pwem",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    screen = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failed = []
    try:
        time.sleep(1.5)
        child = work / "child.py"
        child.write_text(child_source)
        for mode, target, out in jobs:
            out = str(work) if out is None else out
            start = time.monotonic()
            proc = subprocess.run([sys.executable, str(child), mode, target, out], env=env, cwd=work,
                                  capture_output=True, text=True, timeout=600)
            ok = proc.returncode == 0 and (mode == "build" or Path(out).is_file())
            print(f"{label}: {mode}: {'ok' if ok else 'FAILED'} ({time.monotonic() - start:.0f} s)"
                  f"{'' if mode == 'build' else ' -> ' + out}")
            if not ok:
                failed.append(mode)
                sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-3000:])
    finally:
        screen.terminate()
        shutil.rmtree(work, ignore_errors=True)
    return failed
