"""The engine process's allocator set-up: glibc's settings, set by re-executing once."""
from __future__ import annotations

import subprocess
import sys

import pytest

from engine_helpers import REPO

from cryounet.process import MALLOC_SETTINGS, OPT_OUT, allocator_environment


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings are Linux only")
def test_allocator_environment() -> None:
    env = allocator_environment({"PATH": "/bin"})
    assert env == {"PATH": "/bin", **MALLOC_SETTINGS}
    assert allocator_environment(env) is None  # already set: no second re-execution
    mine = {"MALLOC_MMAP_THRESHOLD_": "65536"}  # the user's own value wins
    assert allocator_environment(mine)["MALLOC_MMAP_THRESHOLD_"] == "65536"
    assert allocator_environment({OPT_OUT: "system"}) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings are Linux only")
def test_the_command_runs_with_the_settings_and_keeps_its_exit_code(tmp_path) -> None:
    clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MALLOC_")}
    ok = subprocess.run([sys.executable, "-m", "cryounet", "simulate", "--output", str(tmp_path / "s"),
                         "--micrographs", "1", "--size", "128", "--verbose"], cwd=REPO, env=clean,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "allocator settings: " + ", ".join(f"{k}={v}" for k, v in MALLOC_SETTINGS.items()) in ok.stderr
    bad = subprocess.run([sys.executable, "-m", "cryounet", "pick", "--model", str(tmp_path / "none"),
                          "--micrographs", str(tmp_path / "s"), "--output", str(tmp_path / "p")],
                         cwd=REPO, env=clean, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "error:" in bad.stderr.strip().splitlines()[-1]
    off = subprocess.run([sys.executable, "-m", "cryounet", "simulate", "--output", str(tmp_path / "t"),
                          "--micrographs", "1", "--size", "128", "--verbose"], cwd=REPO,
                         env={**clean, OPT_OUT: "system"}, capture_output=True, text=True, timeout=120)
    assert "MALLOC_MMAP_THRESHOLD_=glibc default" in off.stderr
