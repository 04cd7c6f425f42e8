"""Particle coordinate files: RELION STAR, EMAN BOX and plain CSV/TXT, in and out.

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
from typing import Sequence

import numpy as np

from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.atomic import write_text_atomic

logger = logging.getLogger(__name__)

STAR_SUFFIXES = (".star",)
BOX_SUFFIXES = (".box",)
TEXT_SUFFIXES = (".csv", ".txt", ".coords")
COORDINATE_SUFFIXES = STAR_SUFFIXES + BOX_SUFFIXES + TEXT_SUFFIXES

#: Extra STAR column holding the ensemble spread of the probability at each pick.
UNCERTAINTY_LABEL = "cryounetScoreSpread"
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
        InputFileError: missing file, unknown suffix, or content that is not coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "coordinate file does not exist")
    suffix = path.suffix.lower()
    if suffix in STAR_SUFFIXES:
        picks = _read_star(path)
    elif suffix in BOX_SUFFIXES:
        picks = _read_box(path)
    elif suffix in TEXT_SUFFIXES:
        picks = _read_text(path)
    else:
        raise InputFileError(
            path, f"unknown coordinate format '{suffix}' (use one of {', '.join(COORDINATE_SUFFIXES)})"
        )
    if len(picks) and not np.isfinite(picks.xy).all():
        raise InputFileError(path, "coordinates contain NaN or infinite values")
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


def _read_star(path: Path) -> Picks:
    import pandas as pd
    import starfile  # imported here: it pulls in pandas

    if not path.read_text(errors="replace").strip():
        raise InputFileError(path, "empty file, not a STAR coordinate file (a micrograph without "
                             "particles is written as the _rlnCoordinateX/Y loop with no rows)")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many types on malformed input
        raise InputFileError(path, f"not a readable STAR file ({exc})") from exc
    for block in blocks.values():
        if isinstance(block, dict) and {"rlnCoordinateX", "rlnCoordinateY"} <= set(block):
            block = pd.DataFrame([block])  # a one-particle file written as a simple block
        columns = getattr(block, "columns", None)
        if columns is None:  # another simple (non-loop) block
            continue
        if "rlnCoordinateX" in columns and "rlnCoordinateY" in columns:
            def column(*labels: str) -> np.ndarray:
                try:
                    return block[list(labels)].to_numpy(dtype=np.float64)
                except (ValueError, TypeError):
                    raise InputFileError(path, f"non-numeric values in {', '.join(labels)}") from None

            xy = column("rlnCoordinateX", "rlnCoordinateY")
            scores = column("rlnAutopickFigureOfMerit")[:, 0] if "rlnAutopickFigureOfMerit" in columns else None
            spread = column(UNCERTAINTY_LABEL)[:, 0] if UNCERTAINTY_LABEL in columns else None
            return Picks(xy, scores, spread)
    if not blocks or all(len(getattr(b, "columns", [])) == 0 for b in blocks.values()):
        # The coordinate loop with no rows: a micrograph with no particles.
        text = path.read_text(errors="replace")
        if re.search(r"^\s*loop_", text, re.M) and re.search(r"^\s*_rlnCoordinateX", text, re.M) \
                and re.search(r"^\s*_rlnCoordinateY", text, re.M):
            return Picks(np.zeros((0, 2)))
    raise InputFileError(path, "STAR file has no _rlnCoordinateX/_rlnCoordinateY loop")


def _numeric_rows(path: Path, delimiter: str | None) -> list[list[float]]:
    """The numeric rows of a text file; one header line (no number in it) may come first."""
    rows: list[list[float]] = []
    seen_line = False
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(delimiter) if delimiter else line.split()
        try:
            rows.append([float(f) for f in fields if f.strip()])
        except ValueError:
            if not seen_line and not any(_is_number(f) for f in fields):
                seen_line = True
                continue  # a header line before the first coordinates
            raise InputFileError(path, f"line {lineno} is not numeric: {line[:60]!r}") from None
        seen_line = True
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_box(path: Path) -> Picks:
    rows = _numeric_rows(path, None)
    if not rows:
        return Picks(np.zeros((0, 2)))
    if any(len(r) < 4 for r in rows):
        raise InputFileError(path, "BOX lines need at least 4 columns: x y width height")
    arr = np.array([r[:4] for r in rows])
    return Picks(arr[:, :2] + arr[:, 2:4] / 2.0)


def _read_text(path: Path) -> Picks:
    first = next((ln for ln in path.read_text(errors="replace").splitlines()
                  if ln.strip() and not ln.lstrip().startswith("#")), "")
    delimiter = next((d for d in (",", ";", "\t") if d in first), None)
    rows = _numeric_rows(path, delimiter)
    if not rows:
        return Picks(np.zeros((0, 2)))
    if any(len(r) < 2 for r in rows):
        raise InputFileError(path, "each line needs at least two numbers: x y [score]")
    scores = np.array([r[2] for r in rows]) if all(len(r) >= 3 for r in rows) else None
    return Picks(np.array([r[:2] for r in rows]), scores)


def read_star_index(path: str | os.PathLike[str]) -> dict[str, str]:
    """Micrograph names of a ``coordinates.star`` index, keyed by coordinate-file stem."""
    import starfile

    path = Path(path)
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many types on malformed input
        raise InputFileError(path, f"not a readable STAR index ({exc})") from None
    for block in blocks.values():
        columns = getattr(block, "columns", [])
        if "rlnMicrographName" in columns and "rlnMicrographCoordinates" in columns:
            return {Path(str(c)).stem: str(m) for m, c in
                    zip(block["rlnMicrographName"], block["rlnMicrographCoordinates"])}
    raise InputFileError(path, "no _rlnMicrographName/_rlnMicrographCoordinates loop")


def list_coordinate_files(folder: str | os.PathLike[str], pattern: str = "*") -> dict[str, Path]:
    """The coordinate files in ``folder`` (those matching the glob ``pattern``), keyed by stem; the
    ``coordinates.star`` index is not one of them.

    Raises:
        CryoUNetError: the folder does not exist, or files of several formats share a stem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CryoUNetError(f"{folder}: coordinates folder does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.glob(pattern)):
        if path.suffix.lower() not in COORDINATE_SUFFIXES or path.name == INDEX_NAME or not path.is_file():
            continue
        if path.stem in found:
            raise CryoUNetError(f"{folder}: several coordinate files for micrograph '{path.stem}': "
                                f"{found[path.stem].name}, {path.name}")
        found[path.stem] = path
    return found


def find_coordinate_file(stem: str, folder: str | os.PathLike[str]) -> Path | None:
    """The coordinate file in ``folder`` whose stem equals a micrograph's stem, or None.

    Raises:
        CryoUNetError: when files of several formats share that stem (ambiguous).
    """
    folder = Path(folder)
    found = [folder / f"{stem}{s}" for s in COORDINATE_SUFFIXES if (folder / f"{stem}{s}").is_file()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise CryoUNetError(f"{folder}: several coordinate files for micrograph '{stem}': {names}")
    return found[0] if found else None


# --------------------------------------------------------------------------------------- writing
def _star_value(text: str) -> str:
    """A STAR field: quoted when empty or holding whitespace (e.g. a path with spaces)."""
    text = str(text)
    return f'"{text}"' if not text or any(c.isspace() for c in text) else text


def _format_loop(block: str, labels: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["", "# version 50001", "", f"data_{block}", "", "loop_"]
    lines += [f"_{label} #{i}" for i, label in enumerate(labels, 1)]
    lines += ["\t".join(_star_value(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n\n"


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
    write_text_atomic(path, _format_loop("", labels, rows))


def write_star_index(path: str | os.PathLike[str], entries: Sequence[tuple[str, str]]) -> None:
    """Write the index of coordinate files (``_rlnMicrographName``, ``_rlnMicrographCoordinates``)."""
    rows = [[mic, coords] for mic, coords in entries]
    write_text_atomic(
        path, _format_loop(INDEX_BLOCK, ["rlnMicrographName", "rlnMicrographCoordinates"], rows)
    )


def write_text_picks(path: str | os.PathLike[str], picks: Picks) -> None:
    """Write picks as a plain ``x y [score]`` text file, atomically (for tests and tools)."""
    lines = []
    for i, (x, y) in enumerate(picks.xy):
        score = "" if picks.scores is None else f" {picks.scores[i]:.6f}"
        lines.append(f"{x:.2f} {y:.2f}{score}")
    write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
