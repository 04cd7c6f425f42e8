"""Output folders: a command writes only into a folder it owns, or with an explicit ``--overwrite``.

A folder a command writes (a pick folder, a model folder, a simulated data set) carries a marker,
``.cryounet-output.json``, naming the command and whether its run completed. The policy, the same
for every command:

- a missing or empty folder (or one holding only a marker) is created and claimed;
- a folder holding anything else (the user's own files, or an earlier run's outputs) is refused
  with a message that names it, unless ``--overwrite`` is given;
- with ``--overwrite``, the previous run's outputs are removed first, so nothing stale survives:
  everything in a folder an earlier CryoUNet run owns, or, in an unmarked folder, the files the
  command itself writes (its ``patterns``); other files of the user stay;
- ``train --resume`` continues in a folder an interrupted ``train`` owns;
- a run marks its folder complete as its last step, and a model folder whose training did not
  complete is refused by :func:`cryounet.io.model_folder.read_model_info`.

Temporary files that a killed run left behind (``.NAME.*.tmp`` of :mod:`cryounet.io.atomic`) are
removed whenever a command claims its folder again.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryounet.errors import CryoUNetError
from cryounet.io.atomic import write_json

logger = logging.getLogger(__name__)

MARKER_NAME = ".cryounet-output.json"
#: What a folder of an earlier run may hold that a re-claim removes (temporaries of atomic writes).
TEMPORARY_GLOB = ".*.tmp"


def read_marker(folder: str | os.PathLike[str]) -> dict | None:
    """The marker of a folder a CryoUNet command wrote (``{"command", "complete"}``), or None."""
    path = Path(folder) / MARKER_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("command"), str) else None


def is_incomplete(folder: str | os.PathLike[str]) -> bool:
    """True when a CryoUNet run claimed ``folder`` and did not mark it complete."""
    marker = read_marker(folder)
    return marker is not None and marker.get("complete") is not True


def remove_temporaries(folder: Path) -> int:
    """Remove the temporary files of atomic writes a killed run left in ``folder``."""
    removed = 0
    for path in folder.glob(TEMPORARY_GLOB):
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    if removed:
        logger.info("%s: removed %d temporary file(s) left by an interrupted run", folder, removed)
    return removed


@dataclass
class OutputFolder:
    """A folder claimed by a command; :meth:`complete` marks its run finished."""

    path: Path
    command: str

    def complete(self) -> None:
        """Mark the run complete (its last write)."""
        write_json(self.path / MARKER_NAME, {"command": self.command, "complete": True})


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _listing(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def claim_output_folder(folder: str | os.PathLike[str], command: str, overwrite: bool = False,
                        resume: bool = False, patterns: Sequence[str] = ()) -> OutputFolder:
    """Make ``folder`` the output folder of ``command`` under the policy of this module.

    Args:
        folder: the output folder (created when missing).
        command: the CLI command writing it (``pick``, ``train``, ...), recorded in the marker.
        overwrite: the user's ``--overwrite``: remove an earlier run's outputs first.
        resume: continue an interrupted run of the same command (``train --resume``): keep its files.
        patterns: globs of the files ``command`` writes; in a folder without a marker, ``--overwrite``
            removes only these.

    Raises:
        CryoUNetError: the path is a file, the folder cannot be written, or it holds files and
            neither ``overwrite`` nor (for its own interrupted run) ``resume`` allows writing.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise CryoUNetError(f"{path}: output path is an existing file, not a folder")
    _writable_folder(path, "the output folder")
    marker = read_marker(path)
    entries = sorted(p.name for p in path.iterdir() if p.name != MARKER_NAME)
    if resume:
        if marker is not None and marker.get("command") != command:
            raise CryoUNetError(f"{path}: nothing to resume: the folder holds the outputs of cryounet "
                                f"{marker['command']}, not {command}")
        remove_temporaries(path)
    elif entries:
        owner = f"cryounet {marker['command']}" if marker else None
        if not overwrite:
            what = (f"holds the outputs of an earlier {owner} run" if owner else
                    f"already holds files ({_listing(entries)})")
            hint = " or --resume to continue it" if command == "train" and marker and \
                marker.get("command") == "train" and not marker.get("complete") else ""
            raise CryoUNetError(f"{path}: output folder {what}; give --overwrite to replace them{hint}, "
                                "or choose another folder")
        if marker is not None:
            doomed = [path / name for name in entries]
        else:
            doomed = sorted({p for pattern in patterns for p in path.glob(pattern) if p.name != MARKER_NAME})
        for item in doomed:
            _remove(item)
        if doomed:
            logger.info("--overwrite: removed %d output(s) of an earlier run from %s", len(doomed), path)
    write_json(path / MARKER_NAME, {"command": command, "complete": False})
    return OutputFolder(path, command)


def check_output_file(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check that a single output file (``evaluate --json``) may be written: its folder exists or
    can be made and is writable, and an existing file is only replaced with ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise CryoUNetError(f"{path}: is a folder, not a file")
    if path.exists() and not overwrite:
        raise CryoUNetError(f"{path}: file exists; give --overwrite to replace it")
    _writable_folder(path.parent, "the folder")
    return path


def _writable_folder(path: Path, what: str) -> None:
    """Create ``path`` when missing and check that files can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CryoUNetError(f"{path}: cannot create {what} ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CryoUNetError(f"{path}: {what} is not writable")
