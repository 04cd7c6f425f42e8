"""Micrograph file names: the suffixes CryoUNet reads and expanding folders, globs and @lists."""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable

from cryounet.errors import CryoUNetError

MICROGRAPH_SUFFIXES = (".mrc",)


def expand_micrographs(items: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Micrograph paths from folders (all ``*.mrc``), globs, files and ``@list.txt`` files.

    Raises:
        CryoUNetError: an item matches nothing, or no micrograph is found at all.
    """
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if text.startswith("@"):
            list_file = Path(text[1:])
            if not list_file.is_file():
                raise CryoUNetError(f"{list_file}: micrograph list file does not exist")
            lines = [ln.strip() for ln in list_file.read_text().splitlines()]
            paths += [Path(ln) for ln in lines if ln and not ln.startswith("#")]
            continue
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in MICROGRAPH_SUFFIXES)
            if not found:
                raise CryoUNetError(f"{path}: folder holds no micrographs (*.mrc)")
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
