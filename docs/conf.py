"""Sphinx configuration of the CryoUNet documentation (Markdown pages through MyST, the Furo theme).

Build: ``sphinx-build -W -b html docs docs/_build/html`` (``.ci/run`` does, warnings as errors, so a
broken internal link or a page outside the table of contents fails CI).
"""
import re
from pathlib import Path

project = "CryoUNet"
author = "The CryoUNet developers"
copyright = "2026, the CryoUNet developers"
release = re.search(r'^__version__\s*=\s*"([^"]+)"',
                    (Path(__file__).resolve().parents[1] / "cryounet" / "__init__.py").read_text(), re.M).group(1)

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
myst_heading_anchors = 3
exclude_patterns = ["_build", "generate.py"]
html_theme = "furo"
html_title = f"CryoUNet {release}"
html_static_path: list = []
# Links to files outside docs/ (the repository's README, CHANGES, bench scripts) are written as
# plain text or code; every link between pages is checked by Sphinx (warnings are errors).
suppress_warnings: list = []
