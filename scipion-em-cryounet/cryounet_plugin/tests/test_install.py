"""Installing the Scipion way, as the Scipion guide's facility-admin path does it, in a throwaway Scipion
environment: scipion-app 3.8.3 from the package index (it brings pyworkflow and pwem, and no
PyTorch), the engine's torch-free base from this checkout, then ``scipion installp -p
scipion-em-cryounet --devel``, which pip-installs the plugin and runs ``defineBinaries``: the engine
environment (a venv with PyTorch and the engine) is created, and the plugin runs the engine there.

scipion-app 3.8.3 calls ``importlib.util`` without importing it, which fails on Python 3.11; the
``scipion`` command is therefore started through a two-line wrapper that imports it first (the one
patch this test applies).
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from cryounet_plugin.engine import VERSION

pytestmark = [pytest.mark.scipion, pytest.mark.slow]

PLUGIN_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO_ROOT = os.path.dirname(PLUGIN_ROOT)
SCIPION_APP = "scipion-app==3.8.3"
#: The ``scipion`` command with scipion-app's missing import added (see the module docstring).
SCIPION = "import importlib.util, sys; from scipion.__main__ import main; sys.argv[0] = 'scipion'; main()"

_PROBE = r"""
import importlib.util, json, os, sys
from scipion.install.plugin_funcs import PluginInfo
info = PluginInfo("scipion-em-cryounet", remote=False)
plugin = info.getPluginClass()
open(sys.argv[1], "w").write(json.dumps({
    "dirName": info.getDirName(),
    "plugin": "%s.%s" % (type(plugin).__module__, type(plugin).__name__) if plugin else None,
    "binaries": info.getBinVersions(),
    "python": plugin.getPython() if plugin else None,
    "installation": plugin.validateInstallation() if plugin else None,
    "torch_here": importlib.util.find_spec("torch") is not None,
}))
"""


def _run(command, env, timeout=900):
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, "%s failed (%d):\n%s\n%s" % (
        command, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
    return proc


def test_installp_devel_creates_the_engine_environment(tmp_path):
    venv = tmp_path / "scipion-env"
    home = tmp_path / "scipion-home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SCIPION_", "CRYOUNET_", "PYTHON"))}
    env.update(SCIPION_HOME=str(home), SCIPION_USER_DATA=str(tmp_path / "user-data"),
               PATH=str(venv / "bin") + os.pathsep + env.get("PATH", ""))
    python = str(venv / "bin" / "python")
    _run([sys.executable, "-m", "venv", str(venv)], env)
    _run([python, "-m", "pip", "install", "-q", SCIPION_APP], env)
    # the admin's first step: the engine's torch-free base into Scipion's environment
    _run([python, "-m", "pip", "install", "-q", "-e", REPO_ROOT], env)

    proc = _run([python, "-c", SCIPION, "installp", "-p", PLUGIN_ROOT, "--devel", "-j", "2"], env)
    assert "couldn't find Plugin" not in proc.stdout, proc.stdout[-3000:]

    # what the plugin manager and the plugin say, asked inside Scipion's environment (scipion python)
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE)
    answer = tmp_path / "probe.json"
    proc = _run([python, "-c", SCIPION, "python", str(probe), str(answer)], env)
    assert answer.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(answer.read_text())
    assert result["dirName"] == "cryounet_plugin"
    assert result["plugin"] == "cryounet_plugin.Plugin"
    assert result["binaries"] == ["cryounet-%s" % VERSION]
    engine_home = home / "software" / "em" / ("cryounet-%s" % VERSION)
    assert result["python"] == str(engine_home / "venv" / "bin" / "python")
    assert result["installation"] == []
    # Scipion's own environment has no PyTorch; the engine environment has it and runs the engine.
    assert result["torch_here"] is False
    assert (engine_home / "engine_installed").is_file()
    version = _run([result["python"], "-m", "cryounet", "--version"], env).stdout.strip()
    assert version == "cryounet %s" % VERSION
    shutil.rmtree(tmp_path, ignore_errors=True)
