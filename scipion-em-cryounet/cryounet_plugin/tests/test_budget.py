"""Size budget of the protocol modules, held beside the door test (test_engine.py): a protocol file
has at most :data:`PROTOCOL_BUDGET` lines outside its form definitions.

Form definitions (``_defineParams`` and the ``_define...Params``/``_define...Param`` helpers it
calls) are mostly help text and do not count; everything else (steps, validation, summaries,
helpers) does, so that logic that grows moves into modules of its own.
"""
import ast
import os

PROTOCOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "protocols")
PROTOCOL_BUDGET = 300


def isFormDefinition(name):
    return name == "_defineParams" or (name.startswith("_define") and "Param" in name)


def linesOutsideForms(text):
    """Lines of a module's source that are not inside a form definition."""
    tree = ast.parse(text)
    total = len(text.splitlines())
    form = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and isFormDefinition(node.name):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            form += node.end_lineno - start + 1
    return total - form


def test_protocol_files_keep_their_budget():
    sizes = {}
    for name in sorted(os.listdir(PROTOCOLS)):
        if name.endswith(".py"):
            with open(os.path.join(PROTOCOLS, name)) as handle:
                sizes[name] = linesOutsideForms(handle.read())
    over = {name: size for name, size in sizes.items() if size > PROTOCOL_BUDGET}
    assert "protocol_train.py" in sizes and "protocol_pick.py" in sizes
    assert not over, ("protocol files over %d lines outside their form definitions: %s; move "
                      "helpers into modules of their own" % (PROTOCOL_BUDGET, over))


def test_the_count_leaves_out_form_definitions_only():
    text = ("class P:\n"
            "    def _defineParams(self, form):\n"
            "        form.addParam('a')\n"
            "        form.addParam('b')\n"
            "\n"
            "    def _defineDeviceParams(self, form):\n"
            "        pass\n"
            "\n"
            "    def _insertAllSteps(self):\n"
            "        pass\n")
    assert linesOutsideForms(text) == 10 - 3 - 2
    assert linesOutsideForms(text.replace("_defineDeviceParams", "_defineSteps")) == 10 - 3
