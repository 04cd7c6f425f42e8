"""Micrograph file names: the suffixes CryoUNet reads and expanding folders, globs and @lists."""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable

from cryounet.errors import CryoUNetError
from cryounet.io.mrc import MAX_SIDE, check_mrc_header

#: Suffixes of the micrograph files CryoUNet reads (MRC; a ``.mrcs`` must hold a single section).
MICROGRAPH_SUFFIXES = (".mrc", ".mrcs")


#: Smallest particle diameter (px) CryoUNet accepts: below this a particle is a few pixels of noise.
MIN_DIAMETER_PX = 4.0


def check_diameter(value: float, what: str = "--diameter") -> float:
    """``value`` as a particle diameter in pixels: a finite number from :data:`MIN_DIAMETER_PX` up
    to the largest micrograph side, else :class:`CryoUNetError` naming ``what``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise CryoUNetError(f"{what} must be a number of pixels, got {value!r}") from None
    if not (MIN_DIAMETER_PX <= value <= MAX_SIDE):  # also refuses NaN
        raise CryoUNetError(f"{what} must be a particle diameter between {MIN_DIAMETER_PX:g} and "
                            f"{MAX_SIDE} pixels, got {value}")
    return value


def is_micrograph_name(path: str | os.PathLike[str]) -> bool:
    """True when the file name has one of :data:`MICROGRAPH_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in MICROGRAPH_SUFFIXES


def check_micrograph_file(path: str | os.PathLike[str]) -> str | None:
    """What makes ``path`` unusable as a micrograph, from its name and MRC header (no image data is
    read), or None when it looks readable."""
    if not is_micrograph_name(path):
        return f"is not an MRC micrograph (CryoUNet reads {', '.join(MICROGRAPH_SUFFIXES)} files)"
    return check_mrc_header(path)


def read_micrograph_list(list_file: Path) -> list[Path]:
    """The micrograph paths of an ``@list`` file: one a line, blank lines and ``#`` comments left
    out; a relative path is relative to the list file's folder (not the working folder). Bytes that
    are not UTF-8 are kept as they are (file names on Linux are bytes).

    Raises:
        CryoUNetError: the list file is missing or unreadable, or not a text file.
    """
    try:
        data = list_file.read_bytes()
    except FileNotFoundError:
        raise CryoUNetError(f"{list_file}: micrograph list file does not exist") from None
    except OSError as exc:
        raise CryoUNetError(f"{list_file}: cannot read the micrograph list ({exc.strerror or exc})") from None
    if b"\0" in data:
        raise CryoUNetError(f"{list_file}: not a text file (it holds NUL bytes), so not a micrograph list "
                            "with one path per line")
    lines = [ln.strip() for ln in os.fsdecode(data.removeprefix(b"\xef\xbb\xbf")).splitlines()]
    return [list_file.parent / ln for ln in lines if ln and not ln.startswith("#")]


def expand_micrographs(items: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Micrograph paths from folders (every file with a :data:`MICROGRAPH_SUFFIXES` suffix), globs,
    files and ``@list.txt`` files (paths relative to the list file's folder).

    Raises:
        CryoUNetError: an item matches nothing, or no micrograph is found at all.
    """
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if text.startswith("@"):
            paths += read_micrograph_list(Path(text[1:]))
            continue
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if is_micrograph_name(p))
            if not found:
                raise CryoUNetError(f"{path}: folder holds no micrographs "
                                    f"({', '.join('*' + s for s in MICROGRAPH_SUFFIXES)})")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            matches = sorted(glob.glob(text))
            if not matches:
                raise CryoUNetError(f"{text}: no such micrograph, folder or matching file")
            paths += [Path(m) for m in matches]
    if not paths:
        raise CryoUNetError("no micrographs given")
    stems = [p.stem for p in paths]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise CryoUNetError(
            f"several micrographs share the name stem {duplicated[0]!r}; output and coordinate files "
            "are matched by stem, so stems must be unique"
        )
    return paths
