"""Output folders: a command writes only into a folder it may own, and removes only what it wrote.

A folder a command writes (a pick folder, a model folder, a simulated data set) carries a marker,
``.cryounet-output.json``: the command, whether its run completed, the host and PID of the run, and
its manifest, ``files``, the files the run writes (relative paths). The claim records the names
the run plans to write; completion records the ones it wrote. The policy, the same for every
command:

- the output folder must not be, hold, or lie inside an input of the run (micrographs, their
  folders, coordinates, models, pick folders, config files): refused before anything is touched;
- a folder another kind of command owns is refused whatever the flags (:data:`FOLDER_KINDS`:
  ``train`` and ``refine`` share model folders; ``pick``, ``postprocess`` and ``merge`` share pick
  folders; ``simulate`` and ``demo`` each their own);
- one run at a time: the claim takes the folder's lock (:mod:`cryounet.io.folder_lock`) for the
  whole run; a second run is refused naming the holder's host and PID; a marker of an unfinished
  run that holds no lock is named as an interrupted run;
- a missing or empty folder is created and claimed; a folder holding files is refused unless
  ``--overwrite`` (or, for the same command's unfinished run, ``--resume``) is given;
- ``--overwrite`` removes exactly the files in the earlier run's manifest; in a folder without a
  marker (or with one written before manifests), only the files this run is about to write.
  Nothing else: the user's own files and folders stay;
- ``--resume`` continues the same command's unfinished run, keeping its files; a finished run has
  nothing to resume;
- a run marks its folder complete as its last step (then releases the lock).
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from cryounet.errors import CryoUNetError
from cryounet.io import folder_lock
from cryounet.io.atomic import write_json
from cryounet.io.folder_lock import LOCK_NAME
from cryounet.io.manifest import is_glob, list_files, matches, remove_entries, remove_temporaries, safe_entry

logger = logging.getLogger(__name__)

MARKER_NAME = ".cryounet-output.json"
#: Which commands may write into a folder another one wrote: those of one kind.
FOLDER_KINDS = {"train": "model folder", "refine": "model folder", "pick": "pick folder",
                "postprocess": "pick folder", "merge": "pick folder", "simulate": "simulated data set",
                "demo": "demo folder"}
#: Commands with a ``--resume`` that continues their unfinished run.
RESUMABLE = ("train", "pick")


def read_marker(folder: str | os.PathLike[str]) -> dict | None:
    """The marker of a folder a CryoUNet command wrote (``{"command", "complete", ...}``), or None."""
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


def manifest(marker: dict | None) -> list[str] | None:
    """The files a marker lists (None for a marker written before manifests, or none)."""
    files = marker.get("files") if marker else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return [f for f in files if safe_entry(f)]


@dataclass
class OutputFolder:
    """A folder claimed by a command; :meth:`complete` marks its run finished."""

    path: Path
    command: str
    planned: set[str] = field(default_factory=set)
    patterns: tuple[str, ...] = ()
    before: set[str] = field(default_factory=set)  # files present when the run started writing

    def complete(self) -> None:
        """Mark the run complete (its last write) with the files it wrote, and release the lock."""
        written = self.written()
        write_json(self.path / MARKER_NAME, _marker(self.command, True, written))
        self.release()

    def written(self) -> list[str]:
        """The run's files: those it planned that exist, and the new files of its kinds."""
        nested = {n for n in self.planned if n.endswith("/") and (self.path / n).is_dir()}
        present = list_files(self.path, skip=nested)
        new = {f for f in present - self.before if matches(f, self.patterns)}
        return sorted(nested | (present & self.planned) | new)

    def add_nested(self, name: str) -> None:
        """Record ``name`` (a sub-folder with an output folder of its own) in the manifest now, so
        that an interrupted run's sub-folder is removed by a later ``--overwrite`` too."""
        self.planned.add(name.rstrip("/") + "/")
        write_json(self.path / MARKER_NAME, _marker(self.command, False, sorted(self.planned)))

    def release(self) -> None:
        """Release the folder's lock without marking the run complete."""
        _claimed.pop(str(self.path.resolve()), None)
        folder_lock.release(self.path)


#: The folders claimed by this process and not yet completed, by resolved path.
_claimed: dict[str, OutputFolder] = {}


def _marker(command: str, complete: bool, files: Sequence[str]) -> dict:
    return {"command": command, "complete": complete, **folder_lock.holder(), "files": list(files)}


def claim_output_folder(folder: str | os.PathLike[str], command: str, overwrite: bool = False,
                        resume: bool = False, patterns: Sequence[str] = (), writes: Iterable[str] = (),
                        inputs: Iterable[str | os.PathLike[str]] = ()) -> OutputFolder:
    """Make ``folder`` the output folder of ``command`` under the policy of this module.

    Args:
        folder: the output folder (created when missing).
        command: the CLI command writing it (``pick``, ``train``, ...), recorded in the marker.
        overwrite: the user's ``--overwrite``: remove the earlier run's files first.
        resume: continue an unfinished run of the same command (``--resume``): keep its files.
        patterns: the kinds of names ``command`` writes (exact names and globs of top-level
            entries); the exact ones are planned, and the new files they match are recorded at
            completion.
        writes: further names (relative paths) this run is about to write, e.g. ``<stem>.star``.
        inputs: the run's input files and folders; the output folder must not be, hold or lie
            inside one of them.

    Raises:
        CryoUNetError: the policy refuses the folder (the message names why and what to do).
    """
    path = Path(folder)
    if resume and overwrite:
        raise CryoUNetError("--resume continues the run in the output folder and --overwrite replaces it: "
                            "give one")
    if path.exists() and not path.is_dir():
        raise CryoUNetError(f"{path}: output path is an existing file, not a folder")
    check_not_an_input(path, inputs)
    planned = {p for p in patterns if not is_glob(p)} | set(writes)
    if path.is_dir():
        _check_owner(path, read_marker(path), command)
        if read_marker(path) is None and _entries(path):
            _refuse_unmarked(path, _entries(path), overwrite, resume)
    _writable_folder(path, "the output folder")
    if not folder_lock.acquire(path):
        raise CryoUNetError(f"{path}: output folder is in use by {_holder(read_marker(path))}; wait for "
                            "it to finish, or choose another folder")
    try:
        kept = _prepare(path, command, overwrite, resume, planned)
    except BaseException:
        folder_lock.release(path)
        raise
    claimed = OutputFolder(path, command, planned | kept, tuple(patterns))
    write_json(path / MARKER_NAME, _marker(command, False, sorted(claimed.planned)))
    claimed.before = list_files(path) - planned
    _register_nested(claimed)
    return claimed


def _prepare(path: Path, command: str, overwrite: bool, resume: bool, planned: set[str]) -> set[str]:
    """Under the lock: check the folder's state and remove what ``--overwrite`` replaces.
    Returns the earlier run's files that a resumed run keeps in its manifest."""
    marker = read_marker(path)
    _check_owner(path, marker, command)
    entries = _entries(path)
    if marker is None:
        if entries:
            _refuse_unmarked(path, entries, overwrite, resume)
            _remove_planned(path, planned)
        return set()
    interrupted = _interrupted(marker)
    if resume:
        if marker["command"] != command:
            raise CryoUNetError(f"{path}: nothing to resume: the folder holds the outputs of cryounet "
                                f"{marker['command']}, not {command}")
        if marker.get("complete") is True:
            raise CryoUNetError(f"{path}: the cryounet {command} run in this folder already finished: "
                                "nothing to resume (give --overwrite to run it again, or choose "
                                "another folder)")
        if interrupted:
            logger.warning("%s: %s; resuming it", path, interrupted)
        remove_temporaries(path, manifest(marker) or planned)
        return set(manifest(marker) or ())
    if entries and not overwrite:
        what = interrupted or f"the folder holds the outputs of an earlier cryounet {marker['command']} run"
        hint = " or --resume to continue it" if marker["command"] == command and command in RESUMABLE \
            and marker.get("complete") is not True else ""
        raise CryoUNetError(f"{path}: {what}; give --overwrite to replace them{hint}, or choose "
                            "another folder")
    if interrupted:
        logger.warning("%s: %s; --overwrite removes its files", path, interrupted)
    earlier = manifest(marker)
    if earlier is None:
        _remove_planned(path, planned)  # a marker written before manifests: as in an unmarked folder
    else:
        removed = remove_entries(path, earlier, nested=_remove_nested)
        if removed:
            logger.info("--overwrite: removed %d file(s) of the earlier cryounet %s run from %s",
                        removed, marker["command"], path)
    return set()


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name not in (MARKER_NAME, LOCK_NAME)
                  and not (p.name.startswith(MARKER_NAME + ".") and p.name.endswith(".tmp")))


def _refuse_unmarked(path: Path, entries: list[str], overwrite: bool, resume: bool) -> None:
    if resume:
        raise CryoUNetError(f"{path}: nothing to resume: no CryoUNet run wrote this folder (it holds "
                            f"{_listing(entries)}); choose the folder of the interrupted run")
    if not overwrite:
        raise CryoUNetError(f"{path}: output folder already holds files ({_listing(entries)}); give "
                            "--overwrite to replace those this command writes, or choose another folder")


def _remove_planned(path: Path, planned: set[str]) -> None:
    """``--overwrite`` where no manifest tells what an earlier run wrote: remove the files (never
    folders) with the names this run is about to write."""
    doomed = [n for n in planned if not n.endswith("/") and (path / n).is_file()]
    removed = remove_entries(path, doomed)
    if removed:
        logger.info("--overwrite: removed %d file(s) that this run writes anew from %s", removed, path)


def _remove_nested(folder: Path) -> int:
    """Remove a nested output folder of a run: its manifest's files, then its marker and lock."""
    marker = read_marker(folder)
    files = manifest(marker)
    removed = remove_entries(folder, files, nested=_remove_nested) if files is not None else 0
    if marker is not None:  # the run's outputs are gone: the folder is no output folder any more
        for name in (MARKER_NAME, LOCK_NAME):
            (folder / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()
    return removed


def _interrupted(marker: dict) -> str | None:
    """"an earlier run, pid N on HOST, was interrupted" for the marker of an unfinished run whose
    lock nobody holds (the caller holds it now), else None."""
    if marker.get("complete") is True or "pid" not in marker:
        return None
    return (f"an earlier run, pid {marker.get('pid')} on {marker.get('host', 'an unknown host')}, was "
            f"interrupted (cryounet {marker['command']})")


def _holder(marker: dict | None) -> str:
    if marker is None or "pid" not in marker:
        return "another cryounet run"
    return f"cryounet {marker['command']}, pid {marker['pid']} on {marker.get('host', 'an unknown host')}"


def _check_owner(path: Path, marker: dict | None, command: str) -> None:
    """Refuse a folder that another kind of command owns, whatever the flags."""
    if marker is None:
        return
    owner = marker["command"]
    kind = FOLDER_KINDS.get(owner, f"{owner} folder")
    if kind != FOLDER_KINDS.get(command, f"{command} folder"):
        raise CryoUNetError(f"{path}: this is a {kind} of cryounet {owner}; cryounet {command} does not "
                            f"write into it (not even with --overwrite): choose another --output folder")


def check_not_an_input(output: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse an output folder that is, holds, or lies inside one of the run's inputs."""
    forms = _forms(output)
    for item in inputs:
        source = Path(item)
        for out, src in zip(forms, _forms(source)):
            if out == src:
                relation = "is"
            elif out in src.parents:
                relation = "holds"
            elif src in out.parents and source.is_dir():
                relation = "lies inside"
            else:
                continue
            raise CryoUNetError(f"{output}: the output folder {relation} an input of this run ({source}); "
                                "nothing was changed: choose another --output folder")


def input_paths(*groups: object) -> list[Path]:
    """The paths of a run's inputs from its arguments: paths, lists of them, and micrograph
    arguments (``@list.txt`` gives the list file, a glob its matches); None is skipped."""
    found: list[Path] = []
    for group in groups:
        items = group if isinstance(group, (list, tuple, set)) else [group]
        for item in items:
            if item is None:
                continue
            text = str(item)
            path = Path(text[1:] if text.startswith("@") else text)
            if path.exists():
                found.append(path)
            elif is_glob(text):
                found += [Path(match) for match in glob.glob(text)]
    return found


def _forms(path: Path) -> tuple[Path, Path]:
    """A path made absolute as written, and with links resolved."""
    return Path(os.path.abspath(path)), path.resolve()


def _register_nested(claimed: OutputFolder) -> None:
    """Record a folder claimed inside another folder this process holds in that folder's manifest."""
    here = claimed.path.resolve()
    _claimed[str(here)] = claimed
    for parent in here.parents:
        outer = _claimed.get(str(parent))
        if outer is not None and folder_lock.holds(outer.path):
            outer.add_nested(here.relative_to(parent).as_posix())
            return


def _listing(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


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
