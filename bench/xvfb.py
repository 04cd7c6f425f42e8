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
