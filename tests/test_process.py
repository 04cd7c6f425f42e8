"""The engine process's allocator set-up: glibc's settings, set by re-executing once."""
from __future__ import annotations

import subprocess
from pathlib import Path
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


def _hostile_folder(tmp_path: Path) -> Path:
    """A data folder holding a ``random.py`` and a ``numpy/`` package that end any process that
    imports them (exit codes 3 and 4)."""
    folder = tmp_path / "downloaded"
    (folder / "numpy").mkdir(parents=True)
    (folder / "random.py").write_text("raise SystemExit(3)\n")
    (folder / "numpy" / "__init__.py").write_text("raise SystemExit(4)\n")
    return folder


def _outside_env() -> dict[str, str]:
    import os

    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "PYTHONSAFEPATH"}
    return {**clean, "PYTHONPATH": path}


@pytest.mark.parametrize("launcher", ["console script", "python -m"])
@pytest.mark.parametrize("malloc", ["re-executed", "system"])
def test_code_in_the_working_folder_is_never_imported(tmp_path, launcher: str, malloc: str) -> None:
    folder = _hostile_folder(tmp_path)
    env = _outside_env()
    if malloc == "system":  # no re-execution: the first process itself must be safe
        env[OPT_OUT] = "system"
    if launcher == "console script":  # what pip writes as bin/cryounet
        script = tmp_path / "bin" / "cryounet"
        script.parent.mkdir()
        script.write_text("import sys\nfrom cryounet.__main__ import run\nsys.exit(run())\n")
        start = [sys.executable, str(script)]
    else:
        start = [sys.executable, "-m", "cryounet"]
    version = subprocess.run([*start, "--version"], cwd=folder, env=env, capture_output=True, text=True,
                             timeout=60)
    assert version.returncode == 0 and "cryounet" in version.stdout, version.stderr
    made = subprocess.run([*start, "simulate", "--output", "sim", "--micrographs", "1", "--size", "128"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert len(list((folder / "sim").glob("*.mrc"))) == 1


def test_a_source_checkout_run_from_its_root_keeps_its_package(tmp_path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")
           and not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, "-m", "cryounet", "--version"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
