"""Pick folders: one RELION ``<stem>.star`` per micrograph, the ``coordinates.star`` index, the
``skipped.json`` list, and the warning about micrographs without picks."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.atomic import write_json
from cryounet.io.coordinates import INDEX_NAME, Picks, write_star_index, write_star_picks
from cryounet.io.outputs import is_incomplete

logger = logging.getLogger(__name__)

#: Warn when more than this fraction of micrographs yields no pick.
EMPTY_WARNING_FRACTION = 0.2
#: Machine-readable list of the micrographs a picking run skipped, written in its output folder.
SKIPPED_NAME = "skipped.json"


#: What ``pick``, ``postprocess`` and ``merge`` write in a pick folder (the new files of these kinds
#: make the manifest of :mod:`cryounet.io.outputs`).
PICK_PATTERNS = ("*.star", SKIPPED_NAME)


def pick_names(micrographs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The files picking (or filtering picks of) ``micrographs`` writes in a pick folder:
    ``<stem>.star`` each, the index and the skipped list."""
    return [f"{Path(m).stem}.star" for m in micrographs] + [INDEX_NAME, SKIPPED_NAME]


def check_picks_folder(folder: str | os.PathLike[str]) -> Path:
    """A pick folder to read: it exists, and the run that wrote it (if CryoUNet's) finished."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CryoUNetError(f"{folder}: picks folder does not exist")
    if is_incomplete(folder):
        raise CryoUNetError(f"{folder}: the run that writes this picks folder did not finish (interrupted, or "
                            "still running); run it again (with --overwrite)")
    return folder


def check_stems(paths: Sequence[Path]) -> None:
    """Refuse micrographs whose ``<stem>.star`` would be the folder's ``coordinates.star`` index."""
    clash = [str(p) for p in paths if Path(p).stem == Path(INDEX_NAME).stem]
    if clash:
        raise CryoUNetError(f"{clash[0]}: its picks would be written as {Path(clash[0]).stem}.star, the "
                            f"name of the pick folder's index; rename the micrograph")


def warn_if_empty(picked: dict[str, int]) -> None:
    """Warn loudly when many micrographs got no pick (silent zero-pick micrographs hurt)."""
    empty = [name for name, n in picked.items() if n == 0]
    if picked and len(empty) > EMPTY_WARNING_FRACTION * len(picked):
        logger.warning(
            "%d of %d micrographs have no picks (e.g. %s): the threshold may be too high, the "
            "diameter wrong, or these micrographs empty", len(empty), len(picked), ", ".join(empty[:3]))
    elif empty:
        logger.info("%d micrograph(s) have no picks: %s", len(empty), ", ".join(empty[:5]))


def finished_picks(folder: Path, micrographs: Sequence[Path]) -> dict[str, int]:
    """``{stem: number of picks}`` of the micrographs whose ``<stem>.star`` an interrupted pick into
    ``folder`` finished (STAR files are written whole, atomically; one that cannot be read is
    picked again)."""
    from cryounet.io.coordinates import read_coordinates

    finished = {}
    for mic in micrographs:
        star = folder / f"{Path(mic).stem}.star"
        if star.is_file():
            try:
                finished[Path(mic).stem] = len(read_coordinates(star))
            except (InputFileError, CryoUNetError) as exc:
                logger.warning("%s: picking it again (%s)", star, exc)
    if micrographs:
        logger.info("resuming: %d of %d micrograph(s) already picked in %s", len(finished),
                    len(micrographs), folder)
    return finished


def write_picks(output: Path, results: Sequence[tuple[str, str, Picks]]) -> None:
    """Per-micrograph ``<stem>.star`` files and the ``coordinates.star`` index.

    Args:
        output: folder to write.
        results: ``(stem, micrograph name for the index, picks)`` per micrograph.
    """
    output.mkdir(parents=True, exist_ok=True)
    entries = []
    for stem, micrograph, picks in results:
        star = output / f"{stem}.star"
        write_star_picks(star, picks)
        entries.append((micrograph, str(star)))
    write_star_index(output / INDEX_NAME, entries)


def write_skipped(folder: str | os.PathLike[str], failed: dict[str, str]) -> None:
    """Write ``skipped.json``: ``[{"micrograph": path, "reason": text}, ...]``, atomically."""
    write_json(Path(folder) / SKIPPED_NAME, [{"micrograph": mic, "reason": why} for mic, why in failed.items()])


def read_skipped(folder: str | os.PathLike[str]) -> dict[str, str]:
    """``{micrograph path: reason}`` of a pick folder's ``skipped.json`` ({} when it has none)."""
    path = Path(folder) / SKIPPED_NAME
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return {str(entry["micrograph"]): str(entry["reason"]) for entry in entries}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputFileError(path, f"not a list of skipped micrographs ({exc})") from None


def select_shard(paths: Sequence[Path], k: int, n: int) -> list[Path]:
    """Shard ``k`` (1-based) of ``n`` of a micrograph list: every n-th micrograph from the k-th, so
    the shards are disjoint, together hold every micrograph once, and each takes a share of every
    part of the list (collection order: the shards stay balanced when sizes drift)."""
    return list(paths[k - 1::n])


@dataclass
class MergePlan:
    """What merging pick folders writes: ``(STAR file, stem, micrograph name)`` per micrograph, and
    the skipped micrographs with their reasons."""

    files: list[tuple[Path, str, str]]
    skipped: dict[str, str]


def plan_merge(folders: Sequence[Path]) -> MergePlan:
    """Check and list the finished pick folders (the shards of one picking) to merge; writes nothing.

    Raises:
        CryoUNetError: a folder is missing or unfinished, or two folders hold the same micrograph.
    """
    from cryounet.io.coordinates import read_star_index

    owner: dict[str, Path] = {}
    plan = MergePlan([], {})
    for folder in folders:
        folder = check_picks_folder(folder)
        index = folder / INDEX_NAME
        if not index.is_file():
            raise CryoUNetError(f"{folder}: not a pick folder (no {INDEX_NAME})")
        for stem, micrograph in read_star_index(index).items():
            if stem in owner:
                raise CryoUNetError(f"{stem}.star is in both {owner[stem]} and {folder}: the shards "
                                    "overlap (pick each shard of one list, --shard K/N)")
            if not (folder / f"{stem}.star").is_file():
                raise CryoUNetError(f"{folder}: its index names {stem}.star, which is missing")
            owner[stem] = folder
            plan.files.append((folder / f"{stem}.star", stem, micrograph))
        plan.skipped.update(read_skipped(folder))
    return plan


def write_merge(plan: MergePlan, output: Path) -> None:
    """Write a merged pick folder: every STAR file (atomically), one ``skipped.json``, then the one
    ``coordinates.star`` index over all of them."""
    from cryounet.io.atomic import write_bytes_atomic

    output.mkdir(parents=True, exist_ok=True)
    entries = []
    for star, stem, micrograph in plan.files:
        target = output / f"{stem}.star"
        write_bytes_atomic(target, star.read_bytes())
        entries.append((micrograph, str(target)))
    write_skipped(output, plan.skipped)
    write_star_index(output / INDEX_NAME, entries)
