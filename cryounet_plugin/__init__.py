"""Scipion plugin for CryoUNet, a U-Net particle picker for cryo-EM micrographs.

The engine (package ``cryounet``) never imports Scipion; this plugin runs it as
``<CRYOUNET_PYTHON> -m cryounet <command> ...`` through :meth:`Plugin.runCryounet`, handing every
protocol parameter over as a JSON configuration file written in the run's extra folder.
"""
import functools
import os
import shutil
import subprocess
import sys

import pwem
import pyworkflow.utils as pwutils
from pyworkflow.config import VarTypes

from . import engine
from .constants import CRYOUNET_MODELS, CRYOUNET_PYTHON, DEFAULT_MODELS_FOLDER, GPU_PLACEHOLDER

__version__ = "0.3.0"
_logo = None
_references = ["Ronneberger2015"]


class Plugin(pwem.Plugin):
    _url = "https://github.com/cryounet/scipion-em-cryounet"
    _supportedVersions = [__version__]

    @classmethod
    def _defineVariables(cls):
        cls._defineVar(
            CRYOUNET_PYTHON, sys.executable,
            description="Python interpreter that runs the CryoUNet engine (python -m cryounet). "
                        "Default: the interpreter Scipion runs in (pip install "
                        "scipion-em-cryounet installs both). Point it at another environment's "
                        "python, e.g. one with a CUDA build of PyTorch.",
            var_type=VarTypes.PATH)
        cls._defineEmVar(
            CRYOUNET_MODELS, DEFAULT_MODELS_FOLDER,
            description="Folder holding CryoUNet model folders (model.safetensors + config.json); "
                        "the import-model protocol starts browsing there.",
            var_type=VarTypes.FOLDER)

    # ------------------------------------------------------------------ environment
    @classmethod
    def getPython(cls):
        """Interpreter running the engine (CRYOUNET_PYTHON)."""
        return cls.getVar(CRYOUNET_PYTHON) or sys.executable

    @classmethod
    def getModelsFolder(cls):
        return cls.getVar(CRYOUNET_MODELS)

    @classmethod
    def usesOwnInterpreter(cls):
        """True when the engine runs in the same interpreter as Scipion."""
        python = cls.getPython()
        return os.path.abspath(shutil.which(python) or python) == os.path.abspath(sys.executable)

    @classmethod
    def getEnviron(cls):
        """Environment of engine runs. A separate interpreter gets no PYTHONPATH (Scipion's
        packages must not shadow that environment's own)."""
        environ = pwutils.Environ(os.environ)
        if not cls.usesOwnInterpreter():
            environ.pop("PYTHONPATH", None)
        return environ

    @classmethod
    def defineBinaries(cls, env):
        """Nothing to install: the engine is the ``cryounet`` package of this distribution."""

    @classmethod
    def visibleGpuCount(cls):
        """CUDA GPUs the engine's interpreter sees on this machine (None when it cannot tell)."""
        return _countGpus(cls.getPython())

    @classmethod
    def validateInstallation(cls):
        """Errors when CRYOUNET_PYTHON cannot run the engine (checked once per process)."""
        return list(_checkEngine(cls.getPython()))

    # ------------------------------------------------------------------ the choke point
    @classmethod
    def getEngineCommandLine(cls, subcommand, args):
        """``(program, arguments)`` of an engine run (:func:`cryounet_plugin.engine.engineCommandLine`:
        shell-quoted, the GPU placeholder left for the step executor)."""
        return engine.engineCommandLine(cls.getPython(), subcommand, args, GPU_PLACEHOLDER)

    @classmethod
    def runCryounet(cls, protocol, subcommand, args, **kwargs):
        """Run ``<CRYOUNET_PYTHON> -m cryounet <subcommand> <args>`` as a job of ``protocol``.

        Args:
            protocol: the running protocol (its ``runJob`` handles logging, threads, the queue
                and the ``%(GPU)s`` substitution).
            subcommand: ``train``, ``refine``, ``pick`` or ``postprocess``.
            args: list of arguments (paths, options); each is quoted for the shell.
            kwargs: passed on to ``runJob`` (e.g. ``cwd``).
        Raises:
            Exception from runJob when the engine exits with a non-zero status.
        """
        program, arguments = cls.getEngineCommandLine(subcommand, args)
        kwargs.setdefault("env", cls.getEnviron())
        kwargs.setdefault("numberOfMpi", 1)
        protocol.runJob(program, arguments, **kwargs)


@functools.lru_cache(maxsize=8)
def _countGpus(python):
    """torch.cuda.device_count() in ``python`` (asked once per process: importing torch takes
    seconds), or None when it cannot be run."""
    code = "import torch; print(torch.cuda.device_count())"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
        return int(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


@functools.lru_cache(maxsize=8)
def _checkEngine(python):
    """Check that ``python`` exists and finds the cryounet engine and torch (no torch import)."""
    code = ("import importlib.util as u, sys; "
            "missing = [m for m in ('cryounet', 'torch') if u.find_spec(m) is None]; "
            "print(' '.join(missing)); sys.exit(1 if missing else 0)")
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ("CryoUNet: the interpreter %s=%s cannot be run (%s). Set %s to a python that has "
                "the cryounet package (pip install scipion-em-cryounet)."
                % (CRYOUNET_PYTHON, python, exc, CRYOUNET_PYTHON),)
    if proc.returncode != 0:
        missing = proc.stdout.strip() or proc.stderr.strip()[-200:]
        return ("CryoUNet: %s=%s does not provide: %s. Install the engine there "
                "(pip install scipion-em-cryounet) or point %s at the right interpreter."
                % (CRYOUNET_PYTHON, python, missing, CRYOUNET_PYTHON),)
    return ()
