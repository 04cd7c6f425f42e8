"""The Scipion Domain finds the plugin and all its parts (import errors in a plugin are only
logged by Scipion, so a broken module would otherwise vanish silently); the forms are complete;
the choices agree with the engine; the engine command line is built safely."""
import configparser
import json
import os
import re
import shlex
import sys

import pytest

from pyworkflow.protocol.params import LabelParam
from pyworkflow.viewer import DESKTOP_TKINTER

PLUGIN = "cryounet_plugin"
PROTOCOLS = ["CryoUnetProtTrain", "CryoUnetProtRefine", "CryoUnetProtPick",
             "CryoUnetProtPostprocess", "CryoUnetProtImportModel",
             "CryoUnetProtImportCoordinates"]
WIZARDS = ["CryoUnetDiameterWizard", "CryoUnetLibraryModelWizard", "CryoUnetNewestModelWizard",
           "CryoUnetThresholdWizard"]
VIEWERS = ["CryoUnetModelViewer", "CryoUnetTrainingViewer", "CryoUnetPicksViewer"]
#: The plugin's distribution folder (scipion-em-cryounet/) and the repository root (the engine's).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO_ROOT = os.path.dirname(ROOT)


@pytest.fixture(scope="module")
def domain():
    from pwem import Domain
    return Domain


def test_plugin_is_registered(domain):
    plugins = domain.getPlugins()
    assert PLUGIN in plugins, "Scipion did not register %s: %s" % (PLUGIN, sorted(plugins))
    module = plugins[PLUGIN]
    assert module._pluginInstance.getName() == PLUGIN
    assert module._bibtex["Ronneberger2015"]["title"].startswith("U-Net")


@pytest.mark.parametrize("name", PROTOCOLS)
def test_protocols_found_and_complete(domain, name):
    protocols = domain.getProtocols()
    assert name in protocols, "protocol %s not discovered" % name
    cls = protocols[name]
    assert cls._package.__name__ == PLUGIN
    assert cls._label.startswith("CryoUNet ") and not cls.isBase()  # readable in the protocol tree
    assert cls._possibleOutputs is not None
    for method in ("_validate", "_warnings", "_summary", "_methods", "_citations"):
        assert method in vars(cls), "%s does not define %s" % (name, method)
    prot = cls()
    for paramName, param in prot.getDefinition().iterAllParams():
        if isinstance(param, LabelParam):
            continue
        hidden = param.condition.get() == "False"  # GPU params: Scipion shows its own labels
        assert hidden or param.label.get(), "%s.%s has no label" % (name, paramName)
        assert param.help.get(), "%s.%s has no help" % (name, paramName)


def test_own_params_give_units_or_choices():
    """Numeric sizes in our forms name their unit (px, A, epochs, 0-1...) in label or help."""
    from cryounet_plugin import protocols as P
    from pwem.protocols import ProtParticlePickingAuto
    from pyworkflow.protocol.params import FloatParam, IntParam
    inherited = {name for name, _ in ProtParticlePickingAuto().getDefinition().iterAllParams()}
    inherited |= {"numberOfThreads", "numberOfMpi", "streamingBatchSize", "streamingSleepOnWait"}
    units = re.compile(r"\bpx\b|pixel|Angstrom|\bA\b|A/px|epoch|round|step|0-1|fraction|"
                       r"probabilit|seed|number|count|size|threads|micrograph|tiles|patches|"
                       r"ensemble|channels|levels|weight|score|rate", re.I)
    for cls in (P.CryoUnetProtTrain, P.CryoUnetProtRefine, P.CryoUnetProtPick,
                P.CryoUnetProtPostprocess, P.CryoUnetProtImportModel,
                P.CryoUnetProtImportCoordinates):
        prot = cls()
        for paramName, param in prot.getDefinition().iterAllParams():
            if isinstance(param, (FloatParam, IntParam)) and paramName not in inherited:
                text = param.label.get() + " " + param.help.get()
                assert units.search(text), "%s.%s: no unit in %r" % (cls.__name__, paramName,
                                                                      text)


def test_wizards_found_and_targeted(domain):
    from cryounet_plugin.protocols import (CryoUnetProtPick, CryoUnetProtPostprocess,
                                           CryoUnetProtTrain)
    wizards = domain.getWizards()
    for name in WIZARDS:
        assert name in wizards, "wizard %s not discovered" % name
    assert domain.findWizards(CryoUnetProtTrain(), DESKTOP_TKINTER)["particleDiameter"] \
        is wizards["CryoUnetDiameterWizard"]
    for cls in (CryoUnetProtPick, CryoUnetProtPostprocess):
        assert domain.findWizards(cls(), DESKTOP_TKINTER)["threshold"] \
            is wizards["CryoUnetThresholdWizard"]
    assert domain.findWizards(CryoUnetProtPick(), DESKTOP_TKINTER)["inputModels"] \
        is wizards["CryoUnetNewestModelWizard"]


def test_viewers_and_objects_found(domain):
    from cryounet_plugin.objects import CryoUNetModel
    from cryounet_plugin.protocols import CryoUnetProtPick, CryoUnetProtTrain
    viewers = domain.getViewers()
    for name in VIEWERS:
        assert name in viewers, "viewer %s not discovered" % name
    assert "CryoUNetModel" in domain.getObjects()
    assert viewers["CryoUnetModelViewer"] in domain.findViewers(CryoUNetModel(),
                                                                DESKTOP_TKINTER)
    assert viewers["CryoUnetTrainingViewer"] in domain.findViewers(CryoUnetProtTrain(),
                                                                   DESKTOP_TKINTER)
    assert viewers["CryoUnetPicksViewer"] in domain.findViewers(CryoUnetProtPick(),
                                                                DESKTOP_TKINTER)


def test_protocols_conf_lists_every_protocol(domain):
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser.read(os.path.join(ROOT, PLUGIN, "protocols.conf"))
    tree = json.loads(parser["PROTOCOLS"]["Protocols SPA"])

    def values(nodes):
        for node in nodes:
            if node.get("tag") == "protocol":
                yield node["value"]
            yield from values(node.get("children", []))

    listed = set(values(tree))
    assert listed == set(PROTOCOLS)
    picking = [n for n in tree if n["text"] == "Particles"][0]["children"][0]
    assert picking["text"] == "Picking"


def test_version_is_a_double_quoted_literal():
    with open(os.path.join(ROOT, PLUGIN, "__init__.py")) as handle:
        text = handle.read()
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    import cryounet_plugin
    assert match and match.group(1) == cryounet_plugin.__version__


def test_plugin_and_engine_are_released_together():
    """The plugin requires exactly the engine of its own version, and the installed metadata say so
    (one distribution per top-level package: Scipion's plugin manager maps a distribution to its
    first package)."""
    from importlib import metadata

    import cryounet_plugin
    from cryounet_plugin import engine
    assert cryounet_plugin.__version__ == engine.VERSION
    with open(os.path.join(ROOT, "pyproject.toml")) as handle:
        pins = re.findall(r'"cryounet==([^"]+)"', handle.read())
    assert pins == [engine.VERSION]
    plugin = metadata.distribution("scipion-em-cryounet")
    assert plugin.version == cryounet_plugin.__version__
    assert "cryounet==%s" % engine.VERSION in plugin.requires
    assert plugin.read_text("top_level.txt").split() == [PLUGIN]
    assert not any(r.startswith("torch") for r in plugin.requires)
    assert [e.value for e in plugin.entry_points if e.group == "pyworkflow.plugin"] == [PLUGIN]
    engine_dist = metadata.distribution("cryounet")
    assert engine_dist.version == engine.VERSION
    base = [r for r in engine_dist.requires if "extra ==" not in r]
    assert base and not any(r.startswith("torch") for r in base)
    assert os.path.isfile(os.path.join(REPO_ROOT, "LICENSE"))
    assert os.path.isfile(os.path.join(ROOT, PLUGIN, cryounet_plugin._logo))


def test_plugin_variables_and_installation():
    import cryounet_plugin
    from cryounet_plugin import Plugin, _checkEngine
    from cryounet_plugin.constants import CRYOUNET_MODELS, CRYOUNET_PYTHON
    variables = Plugin.getVars()
    assert variables[CRYOUNET_PYTHON] == os.environ.get(CRYOUNET_PYTHON, "")
    # No engine environment in the tests' Scipion: the engine runs in the interpreter Scipion runs in.
    assert Plugin.getPython() == os.environ.get(CRYOUNET_PYTHON) or sys.executable
    assert variables[CRYOUNET_MODELS].endswith(os.environ.get(CRYOUNET_MODELS,
                                                              "cryounet-models"))
    assert Plugin.validateInstallation() == []
    errors = _checkEngine("/nonexistent/python3")
    assert errors and "cannot be run" in errors[0] and CRYOUNET_PYTHON in errors[0]
    assert "scipion3 installb cryounet" in errors[0]
    errors = _checkEngine("/bin/false")
    assert errors and "does not provide" in errors[0]
    assert cryounet_plugin._references == ["Ronneberger2015"]


def test_engine_command_line_quoting():
    """Arguments are shell-quoted; with the GPU placeholder the other % are escaped so the
    executor's %-substitution gives back the exact arguments."""
    from cryounet_plugin import Plugin
    program, args = Plugin.getEngineCommandLine(
        "pick", ["--output", "/data/a b/50%done", "--device", "%(GPU)s", "--threshold", "auto"])
    assert shlex.split(program) == [Plugin.getPython()]
    substituted = args % {"GPU": "0 1"}
    assert shlex.split(substituted) == ["-m", "cryounet", "pick", "--output", "/data/a b/50%done",
                                        "--device", "0 1", "--threshold", "auto"]
    _, args = Plugin.getEngineCommandLine("postprocess", ["--picks", "/x/50%"])
    assert shlex.split(args) == ["-m", "cryounet", "postprocess", "--picks", "/x/50%"]



def test_the_engine_environment_is_used_once_installed(tmp_path, monkeypatch):
    """CRYOUNET_PYTHON empty: the engine environment's python once its marker exists (a half-made
    environment is not used), and an explicit CRYOUNET_PYTHON wins over both."""
    from cryounet_plugin import Plugin
    from cryounet_plugin.constants import (CRYOUNET_HOME, CRYOUNET_PYTHON, ENGINE_ENV_DONE,
                                           ENGINE_ENV_PYTHON)
    monkeypatch.setitem(Plugin._vars, CRYOUNET_PYTHON, "")
    monkeypatch.setitem(Plugin._vars, CRYOUNET_HOME, str(tmp_path))
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    assert Plugin.getPython() == sys.executable
    (tmp_path / ENGINE_ENV_DONE).write_text("")
    assert Plugin.getPython() == str(tmp_path / ENGINE_ENV_PYTHON)
    monkeypatch.setitem(Plugin._vars, CRYOUNET_PYTHON, "/opt/conda/envs/cryounet/bin/python")
    assert Plugin.getPython() == "/opt/conda/envs/cryounet/bin/python"


def test_engine_install_command(tmp_path):
    """The engine environment: venv, the configured torch, the engine with its extra (editable from a
    checkout, else the release), an import check, then the marker, each step only after the last."""
    from cryounet_plugin import engineInstallCommand
    from cryounet_plugin.constants import ENGINE_ENV_DONE
    command = engineInstallCommand("torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
                                   str(tmp_path), python="/usr/bin/python3")
    steps = command.split(" && ")
    assert steps[0] == "/usr/bin/python3 -m venv venv"
    assert steps[2].endswith("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    assert shlex.split(steps[3])[-2:] == ["-e", "%s[engine]" % tmp_path]
    assert "import torch, cryounet.training.loop" in shlex.split(steps[4])[-1]
    assert steps[-1] == "touch %s" % ENGINE_ENV_DONE
    released = engineInstallCommand("torch==2.13.0", "cryounet==0.3.0")
    assert shlex.split(released.split(" && ")[3])[-1] == "cryounet[engine]==0.3.0"


def test_engine_source_is_this_checkout():
    """Installed with pip install -e (as here), the engine environment installs from this checkout."""
    from cryounet_plugin import engine
    assert os.path.samefile(engine.engineSource(), REPO_ROOT)


def test_every_ensemble_output_is_declared():
    """outputModel, outputModel2 ... outputModel<MAX_ENSEMBLE> are possible outputs of training, each
    its own name (so the GUI can offer them to a pick form before the run ends)."""
    from cryounet_plugin.constants import MAX_ENSEMBLE
    from cryounet_plugin.objects import CryoUNetModel
    from cryounet_plugin.protocols import CryoUnetProtTrain
    prot = CryoUnetProtTrain()
    declared = dict(prot.iterOutputAttributes(includePossible=True))
    assert list(declared) == ["outputModel"] + ["outputModel%d" % k for k in range(2, MAX_ENSEMBLE + 1)]
    assert set(declared.values()) == {CryoUNetModel}
