"""Particle coordinate files: RELION STAR, crYOLO CBOX, EMAN BOX and plain CSV/TXT, in and out,
and the one rule that matches coordinate files to micrographs by name.

Convention everywhere in CryoUNet: ``x`` is the column and ``y`` the row of a micrograph, in pixels
of that micrograph, origin at the first pixel (RELION's ``_rlnCoordinateX/Y``). BOX files store the
box's lower-left corner, so their centre is ``x + w / 2``.
"""
from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import numpy as np

from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.atomic import write_text_atomic
from cryounet.io.coordinate_text import read_text_table
from cryounet.io.folders import input_folder
from cryounet.io.star import format_loop, read_star
from cryounet.io.star_coordinates import UNCERTAINTY_LABEL
from cryounet.io.star_coordinates import read_star_coordinates as _read_star_table

logger = logging.getLogger(__name__)

STAR_SUFFIXES = (".star",)
CBOX_SUFFIXES = (".cbox",)
BOX_SUFFIXES = (".box",)
TEXT_SUFFIXES = (".csv", ".txt", ".coords")
COORDINATE_SUFFIXES = STAR_SUFFIXES + CBOX_SUFFIXES + BOX_SUFFIXES + TEXT_SUFFIXES
#: Endings of a coordinate file's stem after its micrograph's stem, as RELION names them
#: (``<mic>_autopick.star``, ``<mic>_manualpick.star``) and as other pickers do (``<mic>_picks``).
NAME_TAGS = ("_autopick", "_manualpick", "_picks")
#: Block name of the per-micrograph files index, as RELION 4/5 autopicking writes it.
INDEX_BLOCK = "coordinate_files"
INDEX_NAME = "coordinates.star"

#: The box (extraction) size CryoUNet gives its picks is this factor times the particle diameter,
#: and a diameter taken from a coordinate set's box size is the box divided by it, so a diameter
#: survives a pick -> train round trip.
BOX_FACTOR = 1.5


def box_size_for_diameter(diameter_px: float) -> int:
    """Box size (px) for a particle diameter (px): ``BOX_FACTOR`` x diameter, rounded up to even."""
    size = int(math.ceil(float(diameter_px) * BOX_FACTOR))
    return size + size % 2


def diameter_for_box_size(box_px: float) -> float:
    """Particle diameter (px) implied by a coordinate box size (px): the box / ``BOX_FACTOR``."""
    return float(box_px) / BOX_FACTOR


@dataclass
class Picks:
    """Particle positions on one micrograph.

    Attributes:
        xy: ``(N, 2)`` float array of ``x`` (column), ``y`` (row) in micrograph pixels.
        scores: ``(N,)`` figure of merit (probability for CryoUNet picks), or None.
        uncertainty: ``(N,)`` ensemble spread of the probability, or None.
    """

    xy: np.ndarray
    scores: np.ndarray | None = None
    uncertainty: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xy = np.asarray(self.xy, dtype=np.float64).reshape(-1, 2)
        n = len(self.xy)
        for name in ("scores", "uncertainty"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64).reshape(-1)
                if len(value) != n:
                    raise ValueError(f"{name} has {len(value)} values for {n} coordinates")
                setattr(self, name, value)

    def __len__(self) -> int:
        return len(self.xy)

    def subset(self, keep: np.ndarray) -> "Picks":
        """Picks selected by a boolean mask or index array."""
        return Picks(
            self.xy[keep],
            None if self.scores is None else self.scores[keep],
            None if self.uncertainty is None else self.uncertainty[keep],
        )


# --------------------------------------------------------------------------------------- reading
def read_coordinates(path: str | os.PathLike[str]) -> Picks:
    """Read a coordinate file, choosing the format from its suffix.

    Raises:
        InputFileError: missing file, unknown suffix, content that is not coordinates, or a layout
            that cannot be read unambiguously (the message names the file and the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "coordinate file does not exist")
    suffix = path.suffix.lower()
    if suffix in STAR_SUFFIXES:
        picks = read_star_coordinates(path)
    elif suffix in CBOX_SUFFIXES:
        picks = _read_cbox(path)
    elif suffix in BOX_SUFFIXES:
        picks = _read_box(path)
    elif suffix in TEXT_SUFFIXES:
        table = read_text_table(path)
        picks = Picks(table.xy, table.scores, table.uncertainty)
    else:
        raise InputFileError(
            path, f"unknown coordinate format '{suffix}' (use one of {', '.join(COORDINATE_SUFFIXES)})"
        )
    if len(picks) and not np.isfinite(picks.xy).all():
        raise InputFileError(path, "coordinates contain NaN or infinite values")
    if picks.scores is not None and not np.isfinite(picks.scores).all():
        bad = int((~np.isfinite(picks.scores)).sum())
        raise InputFileError(path, f"{bad} of {len(picks)} picks have a score that is not a finite number "
                                   "(NaN or infinite): fix or remove them")
    return _without_duplicates(path, picks)


def _without_duplicates(path: Path, picks: Picks) -> Picks:
    """Drop repeated positions (keeping the best-scored copy), with a warning: a duplicated
    ground-truth particle would count twice and halve recall."""
    if len(picks) < 2:
        return picks
    order = np.argsort(-picks.scores, kind="stable") if picks.scores is not None else np.arange(len(picks))
    _, first = np.unique(np.round(picks.xy[order], 3), axis=0, return_index=True)
    if len(first) == len(picks):
        return picks
    logger.warning("%s: %d duplicated coordinate(s) ignored", path, len(picks) - len(first))
    return picks.subset(np.sort(order[first]))


def _numeric_rows(path: Path) -> list[list[float]]:
    """The rows of a whitespace-separated numeric file (BOX, old CBOX); ``#`` lines are comments."""
    rows: list[list[float]] = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append([float(f) for f in line.split()])
        except ValueError:
            raise InputFileError(path, f"line {lineno} is not numeric: {line[:60]!r}") from None
    return rows


def _read_box(path: Path) -> Picks:
    rows = _numeric_rows(path)
    if not rows:
        return Picks(np.zeros((0, 2)))
    if any(len(r) < 4 for r in rows):
        raise InputFileError(path, "BOX lines need at least 4 columns: x y width height")
    arr = np.array([r[:4] for r in rows])
    return Picks(arr[:, :2] + arr[:, 2:4] / 2.0)


def _read_cbox(path: Path) -> Picks:
    """crYOLO's CBOX: a STAR file (``data_cryolo`` loop of box corners ``_CoordinateX/Y``, sizes
    ``_Width/_Height``, ``_Confidence``), or the older whitespace columns ``x y w h confidence ...``."""
    text = path.read_text(errors="replace")
    if re.search(r"^\s*(data_|loop_)", text, re.M | re.I):
        return read_star_coordinates(path)
    rows = _numeric_rows(path)
    if not rows:
        return Picks(np.zeros((0, 2)))
    if any(len(r) < 5 for r in rows):
        raise InputFileError(path, "CBOX lines need at least 5 columns: x y width height confidence")
    arr = np.array([r[:5] for r in rows])
    return Picks(arr[:, :2] + arr[:, 2:4] / 2.0, arr[:, 4])


def read_star_index(path: str | os.PathLike[str]) -> dict[str, str]:
    """Micrograph names of a ``coordinates.star`` index, keyed by coordinate-file stem."""
    path = Path(path)
    for block in read_star(path):
        for loop in block.loops:
            if {"rlnMicrographName", "rlnMicrographCoordinates"} <= set(loop.labels):
                return {Path(c).stem: m for m, c in zip(loop.column("rlnMicrographName"),
                                                        loop.column("rlnMicrographCoordinates"))}
    raise InputFileError(path, "no _rlnMicrographName/_rlnMicrographCoordinates loop")


def read_star_coordinates(path: str | os.PathLike[str]) -> Picks:
    """The picks of a STAR (or STAR-format CBOX) coordinate file; see :mod:`cryounet.io.star_coordinates`."""
    table = _read_star_table(Path(path))
    return Picks(table.xy, table.scores, table.uncertainty)


# -------------------------------------------------------------------------------------- matching
def coordinate_stem(path: str | os.PathLike[str]) -> str:
    """The micrograph stem a coordinate file's name refers to: its stem less one of
    :data:`NAME_TAGS` (``mic_autopick.star`` -> ``mic``; ``mic.cbox`` -> ``mic``)."""
    stem = Path(path).stem
    for tag in NAME_TAGS:
        if stem.endswith(tag) and len(stem) > len(tag):
            return stem[: -len(tag)]
    return stem


def list_coordinate_files(folder: str | os.PathLike[str], pattern: str = "*",
                          stems: Collection[str] | None = None) -> dict[str, Path]:
    """The coordinate files in ``folder`` (those matching the glob ``pattern``; the
    ``coordinates.star`` index is not one of them), keyed by the micrograph stem they belong to.

    The one rule: ``<mic><tag><suffix>`` belongs to micrograph ``<mic>``, for a tag of
    :data:`NAME_TAGS` or none and a suffix of :data:`COORDINATE_SUFFIXES`. When the micrograph
    ``stems`` are known, a file whose own stem is one of them belongs to that micrograph (so
    ``a_picks.mrc`` keeps ``a_picks.star``).

    Raises:
        CryoUNetError: the folder does not exist, or two files belong to one micrograph.
    """
    folder = input_folder(folder, "coordinates folder", is_folder_index)
    stems = set(stems) if stems is not None else set()
    found: dict[str, Path] = {}
    for path in sorted(folder.glob(pattern)):
        if path.suffix.lower() not in COORDINATE_SUFFIXES or path.name == INDEX_NAME or not path.is_file():
            continue
        key = path.stem if path.stem in stems else coordinate_stem(path)
        if key in found:
            raise CryoUNetError(f"{folder}: several coordinate files for micrograph '{key}': "
                                f"{found[key].name}, {path.name}; keep one")
        found[key] = path
    return found


def is_folder_index(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ``coordinates.star`` index beside coordinate files (as in a pick
    folder): it stands for its folder. A lone coordinate file does not."""
    path = Path(path)
    return path.name == INDEX_NAME and any(
        p.suffix.lower() in COORDINATE_SUFFIXES and p.name != INDEX_NAME and p.is_file()
        for p in path.parent.iterdir())


def find_coordinate_file(stem: str, folder: str | os.PathLike[str],
                         stems: Collection[str] = ()) -> Path | None:
    """The coordinate file in ``folder`` that belongs to the micrograph ``stem`` by the rule of
    :func:`list_coordinate_files`, or None. A file named after another of the micrograph ``stems``
    is that micrograph's, not this one's.

    Raises:
        CryoUNetError: when several files belong to the micrograph (ambiguous), naming them.
    """
    folder = Path(folder)
    others = set(stems) - {stem}
    names = [f"{stem}{tag}" for tag in ("",) + NAME_TAGS if f"{stem}{tag}" not in others]
    found = [folder / f"{name}{s}" for name in names for s in COORDINATE_SUFFIXES
             if (folder / f"{name}{s}").is_file() and f"{name}{s}" != INDEX_NAME]
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise CryoUNetError(f"{folder}: several coordinate files for micrograph '{stem}': {listed}; keep one")
    return found[0] if found else None


# --------------------------------------------------------------------------------------- writing
def write_star_picks(path: str | os.PathLike[str], picks: Picks) -> None:
    """Write one micrograph's picks as a RELION coordinate STAR file, atomically.

    Columns: ``_rlnCoordinateX``, ``_rlnCoordinateY`` (pixels of the input micrograph),
    ``_rlnClassNumber`` (0), ``_rlnAnglePsi`` (-999, unknown), ``_rlnAutopickFigureOfMerit``
    (probability), and ``_cryounetScoreSpread`` when an ensemble spread is known.
    """
    labels = ["rlnCoordinateX", "rlnCoordinateY", "rlnClassNumber", "rlnAnglePsi",
              "rlnAutopickFigureOfMerit"]
    scores = picks.scores if picks.scores is not None else np.ones(len(picks))
    if picks.uncertainty is not None:
        labels.append(UNCERTAINTY_LABEL)
    rows = []
    for i, (x, y) in enumerate(picks.xy):
        row = [f"{x:.2f}", f"{y:.2f}", "0", "-999.0", f"{scores[i]:.6f}"]
        if picks.uncertainty is not None:
            row.append(f"{picks.uncertainty[i]:.6f}")
        rows.append(row)
    write_text_atomic(path, format_loop("", labels, rows))


def write_star_index(path: str | os.PathLike[str], entries: Sequence[tuple[str, str]]) -> None:
    """Write the index of coordinate files (``_rlnMicrographName``, ``_rlnMicrographCoordinates``)."""
    rows = [[mic, coords] for mic, coords in entries]
    try:
        text = format_loop(INDEX_BLOCK, ["rlnMicrographName", "rlnMicrographCoordinates"], rows)
    except ValueError as exc:
        raise CryoUNetError(f"{path}: cannot index a path: {exc}") from None
    write_text_atomic(path, text)


def write_text_picks(path: str | os.PathLike[str], picks: Picks) -> None:
    """Write picks as a plain ``x y [score]`` text file, atomically (for tests and tools)."""
    lines = []
    for i, (x, y) in enumerate(picks.xy):
        score = "" if picks.scores is None else f" {picks.scores[i]:.6f}"
        lines.append(f"{x:.2f} {y:.2f}{score}")
    write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
