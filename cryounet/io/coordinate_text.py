"""Plain-text coordinate tables (CSV, TXT, .coords): columns read by their header names.

A file whose first line holds no number has a header, and its columns are found by name: ``x``/``y``
(also ``x_coord``, ``X-Coordinate``, ``_rlnCoordinateX``, ...), an optional score (``score``,
``confidence``, ``rlnAutopickFigureOfMerit``, ...) and an optional micrograph name (Topaz's
``image_name``). A pandas index column (an unnamed first column) is ignored. What cannot be read
unambiguously is refused: a header without x and y, a name given to two columns, two x (or score)
columns, box width/height columns (corners or centres?), and a file holding picks of several
micrographs. A file without a header is ``x y [score]``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryounet.errors import InputFileError

#: Header names (normalised: lower case, ``-``/space/``.`` as ``_``, no leading ``_``) of each role.
_AXIS_NAMES = ("{a}", "{a}_coord", "{a}coord", "{a}_coordinate", "{a}coordinate", "coordinate_{a}",
               "coordinate{a}", "rlncoordinate{a}", "{a}_center", "{a}_centre", "center_{a}",
               "centre_{a}", "{a}_pos", "pos_{a}", "{a}_px", "{a}_pixel")
ROLES: dict[str, str] = {name.format(a=a): a for a in ("x", "y") for name in _AXIS_NAMES}
ROLES.update({name: "score" for name in (
    "score", "scores", "confidence", "probability", "prob", "fom", "figure_of_merit",
    "rlnautopickfigureofmerit", "autopickfigureofmerit")})
ROLES.update({name: "uncertainty" for name in ("cryounetscorespread", "score_spread")})
ROLES.update({name: "name" for name in (
    "image_name", "image", "micrograph", "micrograph_name", "rlnmicrographname", "mic", "mic_name")})
ROLES.update({name: "size" for name in (
    "w", "h", "width", "height", "box", "box_size", "boxsize", "box_width", "box_height")})
#: Names of the pandas index column when it has one.
_INDEX_NAMES = ("", "index", "unnamed:_0")


def normalise_label(label: str) -> str:
    """A header label as matched against :data:`ROLES` (``X-Coordinate`` -> ``x_coordinate``)."""
    label = label.strip().strip("'\"").strip().lower()
    label = re.sub(r"\s*#\d+$", "", label).lstrip("_")
    return re.sub(r"[\s.\-]+", "_", label)


@dataclass
class TextTable:
    """What a text coordinate file holds: positions, optional scores and spreads."""

    xy: np.ndarray
    scores: np.ndarray | None = None
    uncertainty: np.ndarray | None = None


def _content_lines(path: Path) -> list[tuple[int, str]]:
    lines = path.read_text(errors="replace").splitlines()
    return [(i, ln) for i, ln in enumerate(lines, 1) if ln.strip() and not ln.lstrip().startswith("#")]


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return [f.strip() for f in line.strip("\r\n").split(delimiter)]


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a float (NaN and infinities included; callers refuse those)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_text_table(path: Path) -> TextTable:
    """Read a CSV/TXT/.coords coordinate file (see the module doc).

    Raises:
        InputFileError: naming the file, the line or column, and the problem.
    """
    lines = _content_lines(path)
    if not lines:
        return TextTable(np.zeros((0, 2)))
    first = lines[0][1]
    delimiter = next((d for d in (",", ";", "\t") if d in first), None)
    fields = _split(first, delimiter)
    if any(is_number(f) for f in fields):
        return _headerless(path, lines, delimiter)
    if delimiter is None and first[:1].isspace() and len(lines) > 1 \
            and len(_split(lines[1][1], None)) == len(fields) + 1:
        fields = [""] + fields  # pandas' index column written with sep=" "
    return _by_header(path, fields, lines[1:], delimiter)


def _headerless(path: Path, lines: list[tuple[int, str]], delimiter: str | None) -> TextTable:
    rows = []
    for lineno, line in lines:
        fields = [f for f in _split(line, delimiter) if f]
        if not all(is_number(f) for f in fields):
            raise InputFileError(path, f"line {lineno} is not numeric: {line.strip()[:60]!r}")
        rows.append([float(f) for f in fields])
    widths = {len(r) for r in rows}
    if min(widths) < 2:
        raise InputFileError(path, "each line needs at least two numbers: x y [score]")
    if max(widths) > 3:
        raise InputFileError(path, f"{max(widths)} columns without a header line: which are x and y is "
                             "ambiguous; add a header naming them (e.g. 'x y score', or Topaz's "
                             "'image_name x_coord y_coord score')")
    scores = np.array([r[2] for r in rows]) if widths == {3} else None
    return TextTable(np.array([r[:2] for r in rows]), scores)


def _roles(path: Path, fields: list[str]) -> dict[str, int]:
    """Column index of each role in a header, after the ambiguity checks."""
    labels = [normalise_label(f) for f in fields]
    start = 1 if labels and labels[0] in _INDEX_NAMES else 0
    seen: dict[str, int] = {}
    roles: dict[str, int] = {}
    for i in range(start, len(labels)):
        label, raw = labels[i], fields[i].strip()
        if not label:
            raise InputFileError(path, f"header column {i + 1} has no name")
        if label in seen:
            raise InputFileError(path, f"header names column '{raw}' twice (columns {seen[label] + 1} "
                                       f"and {i + 1})")
        seen[label] = i
        role = ROLES.get(label)
        if role == "size":
            raise InputFileError(path, f"column '{raw}': with a box size, x/y may be box corners (EMAN "
                                 ".box) or centres; save corners as a .box file, or drop the size "
                                 "columns if x/y are centres")
        if role is None:
            continue  # another named column: not used
        if role in roles:
            raise InputFileError(path, f"columns '{fields[roles[role]].strip()}' and '{raw}' both look "
                                       f"like the {role} column")
        roles[role] = i
    if "x" not in roles or "y" not in roles:
        raise InputFileError(path, f"header {', '.join(f.strip() for f in fields)!r} names no x and y "
                             "columns; name them x and y (or x_coord/y_coord, _rlnCoordinateX/Y), "
                             "with an optional score column")
    return roles


def _by_header(path: Path, fields: list[str], lines: list[tuple[int, str]],
               delimiter: str | None) -> TextTable:
    roles = _roles(path, fields)
    values: dict[str, list[float]] = {role: [] for role in roles if role != "name"}
    names: set[str] = set()
    for lineno, line in lines:
        row = _split(line, delimiter)
        if len(row) != len(fields):
            raise InputFileError(path, f"line {lineno} has {len(row)} values for the {len(fields)} "
                                       "columns of the header")
        for role, column in roles.items():
            if role == "name":
                names.add(row[column])
            elif is_number(row[column]):
                values[role].append(float(row[column]))
            else:
                raise InputFileError(path, f"line {lineno} is not numeric in column "
                                           f"'{fields[column].strip()}': {row[column][:40]!r}")
    if len(names) > 1:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise InputFileError(path, f"holds picks of {len(names)} micrographs ({shown}); CryoUNet reads "
                             "one coordinate file per micrograph: split it into one file per "
                             "image_name, named after its micrograph")
    n = len(lines)
    xy = np.column_stack([values["x"], values["y"]]) if n else np.zeros((0, 2))
    scores = np.array(values["score"]) if "score" in values else None
    spread = np.array(values["uncertainty"]) if "uncertainty" in values else None
    return TextTable(xy, scores, spread)
