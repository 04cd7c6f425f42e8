"""The engine never imports Scipion, and importing the package itself is cheap."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from engine_helpers import REPO

_PROBE = r"""
import importlib, json, pkgutil, sys
import cryounet
light = sorted(m for m in ("torch", "pyworkflow", "pwem") if m in sys.modules)
names = ["cryounet"] + [m.name for m in pkgutil.walk_packages(cryounet.__path__, "cryounet.")]
failed = {}
for name in names:
    if name == "cryounet.__main__":
        continue  # running it would start the CLI
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
print(json.dumps({"modules": names, "failed": failed, "after_package_import": light,
                  "scipion": sorted(m for m in sys.modules
                                    if m.split(".")[0] in ("pyworkflow", "pwem"))}))
"""


def test_importing_every_engine_module_leaves_scipion_out() -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    modules = set(result["modules"])
    # The probe really walked the package (a plausible break: an empty or wrong package path).
    for expected in ("cryounet.cli", "cryounet.training.loop", "cryounet.io.mrc", "cryounet.models.unet",
                     "cryounet.commands.pick", "cryounet.simulate"):
        assert expected in modules
    assert len(modules) >= 30
    assert result["failed"] == {}
    assert result["scipion"] == []
    # ``import cryounet`` alone is cheap: no torch, no Scipion.
    assert result["after_package_import"] == []


_WITHOUT_TORCH = r"""
import sys
import os
class _NoEngineDeps:
    # Behave as an environment without the module CRYOUNET_TEST_MISSING (torch: the base install only).
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == os.environ.get("CRYOUNET_TEST_MISSING", "torch"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoEngineDeps())
from cryounet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_command_line_without_torch_says_what_to_install(tmp_path) -> None:
    """The base install (Scipion's environment) has no torch: running a command there is one clear
    line naming the missing module and the extra to install, not a traceback."""
    def run(*argv: str, missing: str = "torch") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, *argv], cwd=REPO,
                              env={**os.environ, "CRYOUNET_TEST_MISSING": missing},
                              capture_output=True, text=True, timeout=300)

    sim = tmp_path / "sim"
    # Simulation is numpy only: it works in the base install.
    assert run("simulate", "--output", str(sim), "--micrographs", "2", "--size", "128",
               "--quiet").returncode == 0
    proc = run("train", "--micrographs", str(sim), "--coordinates", str(sim), "--diameter", "32",
               "--output", str(tmp_path / "model"), "--epochs", "1")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cryounet train: error:") and "no module 'torch'" in last, last
    assert "cryounet[engine]" in last
    assert not (tmp_path / "model" / "model.safetensors").exists()
    # A module the base install does have, missing all the same, is a bug: said as one, no traceback.
    proc = run("train", "--micrographs", str(sim), "--coordinates", str(sim), "--diameter", "32",
               "--output", str(tmp_path / "model2"), "--epochs", "1", missing="safetensors")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "internal error: ModuleNotFoundError" in proc.stderr.strip().splitlines()[-1]


def test_picking_on_the_cpu_with_a_graph_never_imports_torch(tiny_model: Path, sim_data, tmp_path: Path) -> None:
    """With model.onnx, ``cryounet pick --device cpu`` runs where torch cannot be imported at all:
    that is what makes a cold pick start fast (ONNX Runtime, pick.backend)."""
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, "pick", "--model", str(tiny_model),
                           "--micrographs", str(sim_data.folder), "--output", str(tmp_path / "picks"),
                           "--device", "cpu", "--threads", "1"],
                          cwd=REPO, env={**os.environ, "CRYOUNET_TEST_MISSING": "torch"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ONNX Runtime" in proc.stderr
    assert len(list((tmp_path / "picks").glob("mic_*.star"))) == len(sim_data.micrographs)
    # The same without a graph needs torch, and says so.
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "model.onnx").unlink()
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, "pick", "--model", str(folder),
                           "--micrographs", str(sim_data.folder), "--output", str(tmp_path / "picks2"),
                           "--device", "cpu"],
                          cwd=REPO, env={**os.environ, "CRYOUNET_TEST_MISSING": "torch"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no module 'torch'" in proc.stderr.strip().splitlines()[-1]
