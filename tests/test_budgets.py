"""Budgets of the engine's code that only a test keeps: the import walls of docs/architecture.md,
functions of at most 60 lines, and thin command modules. (The plugin's budgets and its one door are
held by the plugin's own tests.)"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine_helpers import REPO

ENGINE = REPO / "cryounet"
#: Each room of the engine and its floor: a module may import only rooms on lower floors (and its
#: own room). Ground floors 0-2 are torch-free; commands only parse arguments and call the stages.
FLOORS = {
    "cryounet": 0, "errors": 0, "device_probe": 0,
    "config": 1, "limits": 1,
    "io": 2, "failures": 2,
    "simulate_negatives": 2.5,  # numpy only, below the simulator that draws its negatives with it
    "preprocess": 3, "device": 3, "process": 3, "simulate": 3, "render": 3, "analysis": 3,
    "models": 4, "postprocess": 4, "previews": 4,
    "inference": 5, "evaluation": 5,
    "training": 6,
    "commands": 7,
    "cli": 8,
    "__main__": 9,
}
#: Modules on another floor than their room: the one JSON reader sits below the configuration,
#: which reads its files with it.
MODULE_FLOORS = {"cryounet.io.json_files": 0.5}
#: Longest function body (lines after its docstring).
FUNCTION_LINES = 60
#: Longest command module (lines).
COMMAND_LINES = 120


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(ENGINE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cryounet"


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name == "cryounet" or name.startswith("cryounet.")]


def test_every_room_has_a_floor() -> None:
    rooms = {_room(module) for module, _ in _modules()}
    assert rooms - set(FLOORS) == set(), "give each new room of the engine a floor in FLOORS"
    assert len(rooms) > 10  # the walk found the package


def test_nothing_imports_upward() -> None:
    upward = []
    for module, path in _modules():
        room, floor = _room(module), _floor(module)
        for line, name in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            target = _room(name)
            if target != room and _floor(name) >= floor:
                upward.append(f"{path.relative_to(REPO)}:{line} ({room}, floor {floor}) imports "
                              f"{name} ({target}, floor {_floor(name)})")
    assert upward == []


def _floor(module: str) -> float:
    return MODULE_FLOORS.get(module, FLOORS[_room(module)])


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
        and isinstance(first.value.value, str)
    start = first.end_lineno + 1 if docstring and len(node.body) > 1 else first.lineno
    return node.end_lineno - start + 1


def test_engine_functions_are_short() -> None:
    long = []
    for _, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > FUNCTION_LINES:
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {_body_lines(node)} lines")
    assert long == [], f"functions over {FUNCTION_LINES} lines: split them"


@pytest.mark.parametrize("path", sorted((ENGINE / "commands").glob("*.py")), ids=lambda p: p.name)
def test_command_modules_are_thin(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= COMMAND_LINES, f"{path.name}: {lines} lines; move the work into a stage module"


def test_the_budget_check_sees_a_long_function(tmp_path: Path) -> None:
    source = "def f():\n    '''doc'''\n" + "    x = 1\n" * (FUNCTION_LINES + 1)
    node = ast.parse(source).body[0]
    assert _body_lines(node) == FUNCTION_LINES + 1
