"""Particle coordinates in a STAR file: RELION coordinate and particle files, crYOLO CBOX.

One micrograph's picks are one loop (or one block of ``_label value`` pairs for a single particle).
A file with several coordinate loops (concatenated files, a particles file of several micrographs)
is refused rather than half read or mixed. RELION's origin shifts are applied the way RELION
re-centres particles on extraction: the particle centre is ``_rlnCoordinateX - _rlnOriginX``
(pixels), or ``_rlnCoordinateX - _rlnOriginXAngst / pixel size`` with the micrograph pixel size
(``_rlnMicrographPixelSize``) from the file; without it, non-zero shifts in Angstrom are refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cryounet.errors import InputFileError
from cryounet.io.coordinate_text import TextTable, is_number
from cryounet.io.star import StarBlock, StarLoop, read_star

RELION_XY = ("rlnCoordinateX", "rlnCoordinateY")
CRYOLO_XY = ("CoordinateX", "CoordinateY")
SCORE_LABELS = ("rlnAutopickFigureOfMerit", "Confidence")
UNCERTAINTY_LABEL = "cryounetScoreSpread"
PIXEL_SIZE = "rlnMicrographPixelSize"


def _loops(blocks: list[StarBlock]) -> list[tuple[StarBlock, StarLoop]]:
    """Every loop, and each block's pairs as a one-row loop."""
    found = []
    for block in blocks:
        if block.pairs:
            found.append((block, StarLoop(list(block.pairs), [list(block.pairs.values())])))
        found += [(block, loop) for loop in block.loops]
    return found


def _numbers(path: Path, loop: StarLoop, label: str) -> np.ndarray:
    values = loop.column(label)
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not is_number(v))
        raise InputFileError(path, f"non-numeric value {bad[:40]!r} in _{label}") from None


def read_star_coordinates(path: Path) -> TextTable:
    """The picks of a STAR (or STAR-format CBOX) coordinate file.

    Raises:
        InputFileError: an empty file, no coordinate loop, several coordinate loops, several
            micrographs in one loop, non-numeric values, or shifts that cannot be applied.
    """
    if not path.read_text(errors="replace").strip():
        raise InputFileError(path, "empty file, not a STAR coordinate file (a micrograph without "
                             "particles is written as the _rlnCoordinateX/Y loop with no rows)")
    blocks = read_star(path)
    loops = _loops(blocks)
    found = [(b, lp) for b, lp in loops if set(RELION_XY) <= set(lp.labels) or set(CRYOLO_XY) <= set(lp.labels)]
    if not found:
        raise InputFileError(path, "STAR file has no _rlnCoordinateX/_rlnCoordinateY loop")
    if len(found) > 1:
        where = ", ".join(f"{b.title} (line {lp.line})" if lp.line else b.title for b, lp in found)
        raise InputFileError(path, f"holds {len(found)} coordinate loops ({where}); one file holds one "
                             "micrograph's picks as one loop: merge the loops or split the file")
    _, loop = found[0]
    if "rlnMicrographName" in loop.labels and len(set(loop.column("rlnMicrographName"))) > 1:
        names = sorted(set(loop.column("rlnMicrographName")))
        raise InputFileError(path, f"holds picks of {len(names)} micrographs ({', '.join(names[:2])}, "
                             "...); give one coordinate file per micrograph")
    if set(RELION_XY) <= set(loop.labels):
        xy = np.column_stack([_numbers(path, loop, a) for a in RELION_XY]) if loop.rows else np.zeros((0, 2))
        xy = xy - _origin_shift(path, loop, blocks)
    else:
        xy = _cryolo_centres(path, loop)
    score_label = next((s for s in SCORE_LABELS if s in loop.labels), None)
    scores = _numbers(path, loop, score_label) if score_label else None
    spread = _numbers(path, loop, UNCERTAINTY_LABEL) if UNCERTAINTY_LABEL in loop.labels else None
    return TextTable(xy, scores, spread)


def _cryolo_centres(path: Path, loop: StarLoop) -> np.ndarray:
    """Box centres of a crYOLO CBOX loop: the corner ``_CoordinateX/Y`` plus half ``_Width/_Height``."""
    missing = [f"_{label}" for label in ("Width", "Height") if label not in loop.labels]
    if missing:
        raise InputFileError(path, f"CBOX loop without {' and '.join(missing)}: the box centres are unknown")
    if not loop.rows:
        return np.zeros((0, 2))
    corner = np.column_stack([_numbers(path, loop, a) for a in CRYOLO_XY])
    size = np.column_stack([_numbers(path, loop, a) for a in ("Width", "Height")])
    if "CoordinateZ" in loop.labels and any(is_number(z) and np.isfinite(float(z))
                                            for z in loop.column("CoordinateZ")):
        raise InputFileError(path, "CBOX of a tomogram (_CoordinateZ is set); CryoUNet picks 2D micrographs")
    return corner + size / 2.0


def _origin_shift(path: Path, loop: StarLoop, blocks: list[StarBlock]) -> np.ndarray:
    """``(N, 2)`` shifts (micrograph pixels) to subtract from ``_rlnCoordinateX/Y``."""
    shift = np.zeros((len(loop.rows), 2))
    pixels = [lb for lb in ("rlnOriginX", "rlnOriginY") if lb in loop.labels]
    angst = [lb for lb in ("rlnOriginXAngst", "rlnOriginYAngst") if lb in loop.labels]
    for given in (pixels, angst):
        if len(given) == 1:
            raise InputFileError(path, f"_{given[0]} without its Y/X partner: the shift is incomplete")
    if pixels and angst:
        raise InputFileError(path, "both _rlnOriginX/Y (pixels) and _rlnOriginXAngst/YAngst are given; "
                             "keep one of them")
    if not loop.rows or not (pixels or angst):
        return shift
    if pixels:
        return np.column_stack([_numbers(path, loop, lb) for lb in pixels])
    shift = np.column_stack([_numbers(path, loop, lb) for lb in angst])
    if not shift.any():
        return shift
    return shift / _pixel_sizes(path, loop, blocks)[:, None]


def _pixel_sizes(path: Path, loop: StarLoop, blocks: list[StarBlock]) -> np.ndarray:
    """The micrograph pixel size (Angstrom) of each row, from the loop or the file's optics table."""
    if PIXEL_SIZE in loop.labels:
        sizes = _numbers(path, loop, PIXEL_SIZE)
    else:
        optics = [lp for _, lp in _loops(blocks) if PIXEL_SIZE in lp.labels and lp is not loop]
        entries = []  # (optics group or None, pixel size)
        for lp in optics:
            groups = lp.column("rlnOpticsGroup") if "rlnOpticsGroup" in lp.labels else [None] * len(lp.rows)
            entries += zip(groups, _numbers(path, lp, PIXEL_SIZE))
        table = {g: size for g, size in entries if g is not None}
        if not entries:
            raise InputFileError(path, "_rlnOriginXAngst/YAngst shifts need the micrograph pixel size, "
                                 f"which the file does not give (no _{PIXEL_SIZE}); add the optics "
                                 "table, or give coordinates re-centred by RELION (Extract with "
                                 "'Re-center refined coordinates')")
        if len({size for _, size in entries}) == 1:
            sizes = np.full(len(loop.rows), entries[0][1])
        elif "rlnOpticsGroup" in loop.labels and len(table) == len(entries):
            groups = loop.column("rlnOpticsGroup")
            unknown = sorted(set(groups) - set(table))
            if unknown:
                raise InputFileError(path, f"optics group {unknown[0]} has no _{PIXEL_SIZE}")
            sizes = np.array([table[g] for g in groups])
        else:
            raise InputFileError(path, f"several _{PIXEL_SIZE} values and no _rlnOpticsGroup to choose "
                                 "one per particle")
    if not (np.isfinite(sizes).all() and (sizes > 0).all()):
        raise InputFileError(path, f"_{PIXEL_SIZE} must be a positive number of Angstrom")
    return sizes
