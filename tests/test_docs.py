"""The generated documentation (CLI and configuration references, results page, the README's
headline table) is current, and the front page keeps its budget."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from engine_helpers import REPO


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", REPO / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_pages_are_current() -> None:
    stale = _generator().stale_pages()
    assert stale == [], f"run python docs/generate.py: {[str(p.relative_to(REPO)) for p in stale]}"


def test_every_configuration_key_is_documented() -> None:
    assert _generator().undocumented_config_fields() == []


def test_cli_reference_lists_every_command_and_option() -> None:
    from cryounet.cli import COMMANDS, build_parser

    text = _generator().cli_reference()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for command in COMMANDS:
        assert f"## `cryounet {command}`" in text
        for action in sub.choices[command]._actions:
            if action.__class__.__name__ == "_HelpAction":
                continue
            for option in action.option_strings:
                assert f"`{option}`" in text, (command, option)


def test_config_reference_parses_attribute_docstrings() -> None:
    gen = _generator()

    class Example:
        """One line.

        Attributes:
            alpha: the first
                key, on two lines.
            beta / gamma: shared text.
        """

    assert gen.docstring_attributes(Example) == {"alpha": "the first key, on two lines.",
                                                 "beta": "shared text.", "gamma": "shared text."}


def test_results_page_refuses_a_result_file_it_cannot_render(tmp_path: Path, monkeypatch) -> None:
    gen = _generator()
    results = gen.load_results()
    results["mystery"] = {"id": "mystery", "title": "x"}
    with pytest.raises(ValueError, match="mystery"):
        gen.results_page(results)


def test_every_result_file_names_command_machine_date_and_code() -> None:
    for path in sorted((REPO / "bench" / "results").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("title", "machine", "date", "code"):
            assert data.get(key), f"{path.name} lacks {key}"


def test_readme_is_a_front_page() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"```bash\n", setup)) == 2, "exactly two set-up commands"
    assert re.search(r"!\[[^\]]*\]\((docs/images/[^)]+\.png)\)", readme)
    for link in re.findall(r"\]\(((?:docs/)[^)#]+)", readme):
        assert (REPO / link).exists(), link


def test_readme_names_every_command() -> None:
    from cryounet.cli import COMMANDS

    intro = (REPO / "README.md").read_text(encoding="utf-8").split("## Set-up", 1)[0]
    assert [c for c in COMMANDS if f"`{c}`" not in intro] == []


def test_results_page_is_short() -> None:
    assert len((REPO / "docs" / "results.md").read_text(encoding="utf-8").splitlines()) <= 300
