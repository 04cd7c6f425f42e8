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
WIZARDS = ["CryoUnetDiameterWizard", "CryoUnetThresholdWizard"]
VIEWERS = ["CryoUnetModelViewer", "CryoUnetTrainingViewer", "CryoUnetPicksViewer"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def test_plugin_variables_and_installation():
    import cryounet_plugin
    from cryounet_plugin import Plugin, _checkEngine
    from cryounet_plugin.constants import CRYOUNET_MODELS, CRYOUNET_PYTHON
    variables = Plugin.getVars()
    assert variables[CRYOUNET_PYTHON] == os.environ.get(CRYOUNET_PYTHON, sys.executable)
    assert variables[CRYOUNET_MODELS].endswith(os.environ.get(CRYOUNET_MODELS,
                                                              "cryounet-models"))
    assert Plugin.validateInstallation() == []
    errors = _checkEngine("/nonexistent/python3")
    assert errors and "cannot be run" in errors[0] and CRYOUNET_PYTHON in errors[0]
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

