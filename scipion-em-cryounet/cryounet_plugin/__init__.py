"""Scipion plugin for CryoUNet, a U-Net particle picker for cryo-EM micrographs.

The engine (package ``cryounet``) never imports Scipion; this plugin runs it as
``<CRYOUNET_PYTHON> -m cryounet <command> ...`` through :meth:`Plugin.runCryounet`, handing every
protocol parameter over as a JSON configuration file written in the run's extra folder.
"""
import functools
import os
import shlex
import shutil
import subprocess
import sys

import pwem
import pyworkflow.utils as pwutils
from pyworkflow.config import VarTypes

from . import engine
from .constants import (CRYOUNET_HOME, CRYOUNET_MODELS, CRYOUNET_PYTHON, CRYOUNET_TORCH,
                        DEFAULT_MODELS_FOLDER, DEFAULT_TORCH, ENGINE_BINARY, ENGINE_ENV_DONE,
                        ENGINE_ENV_PYTHON, GPU_PLACEHOLDER)

#: Appended to engine command lines: the engine's log into the run's output log.
ENGINE_LOG_REDIRECT = " 2>&1"
#: Released together with the engine (``cryounet``) of the same version, which it requires.
__version__ = "0.4.0"
_logo = "cryounet_logo.png"
_references = ["Ronneberger2015"]


class Plugin(pwem.Plugin):
    _url = "https://github.com/cryounet/cryounet"
    _supportedVersions = [__version__]

    @classmethod
    def _defineVariables(cls):
        cls._defineEmVar(
            CRYOUNET_HOME, "%s-%s" % (ENGINE_BINARY, __version__),
            description="Folder of the CryoUNet engine environment (a Python venv with PyTorch and "
                        "the engine) that 'scipion3 installb %s' creates." % ENGINE_BINARY,
            var_type=VarTypes.FOLDER)
        cls._defineVar(
            CRYOUNET_PYTHON, "",
            description="Python interpreter that runs the CryoUNet engine (python -m cryounet). "
                        "Empty (default): the engine environment's (CRYOUNET_HOME/%s) once "
                        "installed, else the interpreter Scipion runs in. Set it to use an engine "
                        "installed elsewhere, e.g. a conda environment on the GPU nodes."
                        % ENGINE_ENV_PYTHON,
            var_type=VarTypes.PATH)
        cls._defineVar(
            CRYOUNET_TORCH, DEFAULT_TORCH,
            description="pip requirement (and options) of PyTorch in the engine environment, read "
                        "by 'scipion3 installb %s'. Default %s (PyPI's Linux build uses CUDA); for "
                        "a CPU-only site add --index-url https://download.pytorch.org/whl/cpu, for "
                        "another CUDA version the matching index." % (ENGINE_BINARY, DEFAULT_TORCH),
            var_type=VarTypes.STRING)
        cls._defineEmVar(
            CRYOUNET_MODELS, DEFAULT_MODELS_FOLDER,
            description="Your site's library of CryoUNet model folders (model.safetensors + "
                        "config.json): the pick form picks with one of them by name, and the "
                        "import-model protocol points there.",
            var_type=VarTypes.FOLDER)

    # ------------------------------------------------------------------ environment
    @classmethod
    def getPython(cls):
        """Interpreter running the engine: CRYOUNET_PYTHON when set, else the engine environment's
        when installed, else Scipion's own."""
        python = cls.getVar(CRYOUNET_PYTHON)
        if python:
            return python
        home = cls.getEngineHome()
        if home and os.path.isfile(os.path.join(home, ENGINE_ENV_DONE)):
            return os.path.join(home, ENGINE_ENV_PYTHON)
        return sys.executable

    @classmethod
    def getEngineHome(cls):
        """Folder of the engine environment (CRYOUNET_HOME)."""
        return cls.getVar(CRYOUNET_HOME)

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
        """The engine environment (``scipion3 installb cryounet``): a venv in CRYOUNET_HOME with
        PyTorch as CRYOUNET_TORCH says, then the engine with its ``engine`` extra, from the
        checkout Scipion's ``cryounet`` came from (editable) or the released version; it counts
        as installed once the engine imports torch there. Scipion's own environment then needs
        no PyTorch."""
        env.addPackage(ENGINE_BINARY, version=__version__, tar="void.tgz",
                       commands=[(engineInstallCommand(cls.getVar(CRYOUNET_TORCH) or DEFAULT_TORCH,
                                                       engine.engineSource()), ENGINE_ENV_DONE)],
                       default=True)

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
        The engine's log (its stderr) goes to the run's output log with its stdout.

        Raises:
            Exception from runJob when the engine exits with a non-zero status.
        """
        program, arguments = cls.getEngineCommandLine(subcommand, args)
        kwargs.setdefault("env", cls.getEnviron())
        kwargs.setdefault("numberOfMpi", 1)
        # The engine logs to stderr; the run's output log (run.stdout, or a queue job's output)
        # is where Scipion users follow a run, so its progress (epochs, picked micrographs) and
        # its error line go there, in order.
        protocol.runJob(program, arguments + ENGINE_LOG_REDIRECT, **kwargs)


def engineInstallCommand(torchSpec, source, python=None):
    """Shell command, run in the engine environment's folder, that creates it: a venv made by
    ``python`` (Scipion's own by default), ``pip install <torchSpec>``, the engine with its
    ``engine`` extra from ``source`` (a source folder, installed editable, or a requirement such as
    ``cryounet==0.4.0``), a check that the engine and torch import, and the marker file."""
    python = shlex.quote(python or sys.executable)
    venvPython = shlex.quote(ENGINE_ENV_PYTHON)
    if os.path.isdir(source):
        engineSpec = "-e %s" % shlex.quote(source.rstrip("/") + "[engine]")
    else:
        name, _, version = source.partition("==")
        engineSpec = shlex.quote("%s[engine]%s" % (name, "==" + version if version else ""))
    check = shlex.quote("import torch, cryounet.training.loop; print('CryoUNet engine', "
                        "cryounet.__version__, 'with torch', torch.__version__)")
    return " && ".join([
        "%s -m venv venv" % python,
        "%s -m pip install --upgrade pip" % venvPython,
        "%s -m pip install %s" % (venvPython, torchSpec),
        "%s -m pip install %s" % (venvPython, engineSpec),
        "%s -c %s" % (venvPython, check),
        "touch %s" % ENGINE_ENV_DONE,
    ])


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
        return ("CryoUNet: the engine's interpreter %s cannot be run (%s). Create the engine "
                "environment (scipion3 installb %s) or set %s to a python that has the engine."
                % (python, exc, ENGINE_BINARY, CRYOUNET_PYTHON),)
    if proc.returncode != 0:
        missing = proc.stdout.strip() or proc.stderr.strip()[-200:]
        return ("CryoUNet: the engine's interpreter %s does not provide: %s. Create the engine "
                "environment (scipion3 installb %s), install the engine there (pip install "
                "'cryounet[engine]'), or set %s to the right interpreter."
                % (python, missing, ENGINE_BINARY, CRYOUNET_PYTHON),)
    return ()
