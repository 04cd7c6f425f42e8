"""The manifest of an output folder: the files a run wrote, as paths relative to the folder.

An entry ending in ``/`` names a nested output folder of the run (a fold model of ``train``), which
carries its own marker and manifest. Removing a manifest removes exactly its files (and the
temporary files of their atomic writes), then the folders that this leaves empty; never a file it
does not name, never anything outside the folder.
"""
from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

logger = logging.getLogger(__name__)

#: Names of the bookkeeping files of an output folder (its marker, lock and their temporaries).
BOOKKEEPING_PREFIX = ".cryounet-output."


def safe_entry(name: str) -> bool:
    """Whether a manifest entry is a plain path inside its folder (no ``..``, not absolute)."""
    pure = PurePosixPath(name)
    return bool(name) and not pure.is_absolute() and ".." not in pure.parts and "\\" not in name


def is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")


def list_files(folder: Path, skip: Iterable[str] = ()) -> set[str]:
    """Every file under ``folder`` (relative POSIX paths) but the folder's own bookkeeping files,
    temporaries of atomic writes, and what lies under the nested folders named in ``skip``."""
    skipped = {s.rstrip("/") for s in skip}
    found: set[str] = set()
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder).as_posix()
        prefix = "" if rel_root == "." else rel_root + "/"
        dirs[:] = [d for d in dirs if prefix + d not in skipped]
        for name in files:
            if not prefix and name.startswith(BOOKKEEPING_PREFIX):
                continue
            if name.startswith(".") and name.endswith(".tmp"):
                continue
            found.add(prefix + name)
    return found


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` (a relative path) is, or lies under, a top-level entry matching one of
    ``patterns``."""
    top = name.split("/", 1)[0]
    return any(fnmatch.fnmatchcase(top, p) for p in patterns)


def remove_temporaries(folder: Path, names: Iterable[str]) -> int:
    """Remove the temporaries of atomic writes (``.NAME.*.tmp``) of the files ``names``."""
    removed = 0
    for name in names:
        if not safe_entry(name) or name.endswith("/"):
            continue
        target = folder / name
        for tmp in target.parent.glob(f".{_escape(target.name)}.*.tmp"):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                tmp.unlink()
                removed += 1
    return removed


def _escape(name: str) -> str:
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in name)


def remove_entries(folder: Path, names: Iterable[str],
                   nested: Callable[[Path], int] | None = None) -> int:
    """Remove the manifest entries ``names`` of ``folder``: files (a folder of that name is left
    alone), nested output folders through ``nested``, then the temporaries of those files and
    the folders left empty. Returns the number of files removed."""
    names = [n for n in names if safe_entry(n)]
    removed, parents = 0, set()
    inside = folder.resolve()
    for name in names:
        target = folder / name
        if not target.parent.resolve().is_relative_to(inside):
            logger.warning("%s: not removed: it lies outside %s (a linked folder)", target, folder)
            continue
        if name.endswith("/"):
            if nested is not None and target.is_dir() and not target.is_symlink():
                removed += nested(target)
                parents.add(target)
            continue
        if target.is_symlink() or target.is_file():
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
                removed += 1
        parents.add(target.parent)
    remove_temporaries(folder, names)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        _remove_empty(parent, folder)
    return removed


def _remove_empty(path: Path, stop: Path) -> None:
    """Remove ``path`` and its parents up to (not including) ``stop`` while they are empty."""
    while path != stop and stop in path.parents:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent
