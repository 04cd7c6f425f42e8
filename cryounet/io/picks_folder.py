"""Pick folders: one RELION ``<stem>.star`` per micrograph, the ``coordinates.star`` index, the
``skipped.json`` list, the ``pick.json`` record of what made them, and the warning about
micrographs without picks."""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cryounet import __version__
from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.atomic import write_json
from cryounet.io.coordinates import INDEX_NAME, Picks, is_folder_index, write_star_index, write_star_picks
from cryounet.io.folders import input_folder
from cryounet.io.model_folder import WEIGHTS_NAME, file_digest
from cryounet.io.outputs import is_incomplete

logger = logging.getLogger(__name__)

#: Warn when more than this fraction of micrographs yields no pick.
EMPTY_WARNING_FRACTION = 0.2
#: Machine-readable list of the micrographs a picking run skipped, written in its output folder.
SKIPPED_NAME = "skipped.json"


#: Record of what made a pick folder (:class:`PickRecord`), written by ``pick``, ``merge`` and
#: ``postprocess``.
RECORD_NAME = "pick.json"
RECORD_FORMAT = "cryounet-picks"
RECORD_VERSION = 1

#: What ``pick``, ``postprocess`` and ``merge`` write in a pick folder (the new files of these kinds
#: make the manifest of :mod:`cryounet.io.outputs`).
PICK_PATTERNS = ("*.star", SKIPPED_NAME, RECORD_NAME)


def pick_names(micrographs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The files picking (or filtering picks of) ``micrographs`` writes in a pick folder:
    ``<stem>.star`` each, the index, the skipped list and the record."""
    return [f"{Path(m).stem}.star" for m in micrographs] + [INDEX_NAME, SKIPPED_NAME, RECORD_NAME]


def check_picks_folder(folder: str | os.PathLike[str]) -> Path:
    """A pick folder to read: it exists (its ``coordinates.star`` stands for it), and the run that
    wrote it (if CryoUNet's) finished."""
    folder = input_folder(folder, "picks folder", is_folder_index)
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


def write_picks(output: Path, results: Sequence[tuple[str, str, Picks]], record: PickRecord | None = None) -> None:
    """Per-micrograph ``<stem>.star`` files, the record (when given) and the ``coordinates.star`` index.

    Args:
        output: folder to write.
        results: ``(stem, micrograph name for the index, picks)`` per micrograph.
        record: what made the picks (``pick.json``).
    """
    output.mkdir(parents=True, exist_ok=True)
    entries = []
    for stem, micrograph, picks in results:
        star = output / f"{stem}.star"
        write_star_picks(star, picks)
        entries.append((micrograph, str(star)))
    if record is not None:
        write_pick_record(output, record)
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
class PickRecord:
    """What made a pick folder (``pick.json``): what ``merge`` checks before joining shards.

    Attributes:
        command: the command that wrote the folder (``pick``, ``merge``, ``postprocess``).
        models: the model folders that picked (an ensemble's fold models included), each
            ``{"folder": path, "weights_sha256": hex}``; empty for picks made by other software.
        threshold: the probability threshold the picks were cut at (None: unknown).
        diameter_px: the particle diameter picked at (None: unknown).
        micrographs: micrographs this folder was asked to pick (picked or skipped).
        shard: ``(K, N)`` of ``pick --shard K/N``, None for a whole list.
        listed: micrographs in the whole list the shard was drawn from (before sharding).
        postprocess: the filters ``postprocess`` applied (empty when none).
    """

    command: str
    models: list[dict[str, str | None]]
    threshold: float | None
    diameter_px: float | None
    micrographs: int
    shard: tuple[int, int] | None = None
    listed: int | None = None
    postprocess: dict[str, Any] = field(default_factory=dict)
    cryounet_version: str = __version__

    def to_json(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "format_version": RECORD_VERSION,
                "cryounet_version": self.cryounet_version, "command": self.command,
                "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
                "listed": self.listed, "micrographs": self.micrographs, "threshold": self.threshold,
                "diameter_px": self.diameter_px, "models": self.models, "postprocess": self.postprocess}

    def describe_models(self) -> str:
        return ", ".join(f"{m['folder']} (weights {str(m['weights_sha256'])[:12]})" for m in self.models) \
            or "no CryoUNet model"


def model_entry(folder: str | os.PathLike[str], recorded: dict[str, str]) -> dict[str, str | None]:
    """A model of :attr:`PickRecord.models`: its folder and its weights' SHA-256 (the recorded one,
    else the file's, None when there is no file)."""
    path = Path(folder)
    digest = recorded.get(WEIGHTS_NAME)
    if digest is None and (path / WEIGHTS_NAME).is_file():
        digest = file_digest(path / WEIGHTS_NAME)
    return {"folder": str(path.resolve()), "weights_sha256": digest}


def check_same_picking(folder: str | os.PathLike[str], record: PickRecord) -> None:
    """Refuse to resume a pick folder that other models, another threshold or another diameter
    started (its ``pick.json``), naming what differs; a folder without a record passes."""
    earlier = read_pick_record(folder)
    if earlier is None:
        return
    differences = [what for what, a, b in (
        ("models", [m["weights_sha256"] for m in earlier.models], [m["weights_sha256"] for m in record.models]),
        ("threshold", earlier.threshold, record.threshold), ("diameter", earlier.diameter_px, record.diameter_px),
        ("shard", earlier.shard, record.shard)) if a != b]
    if differences:
        raise CryoUNetError(f"{folder}: --resume continues a pick with the same settings, but the "
                            f"{' and '.join(differences)} differ from those its {RECORD_NAME} records "
                            f"({earlier.describe_models()}, threshold {earlier.threshold}); pick into another "
                            "folder, or replace this one with --overwrite")


def write_pick_record(folder: str | os.PathLike[str], record: PickRecord) -> None:
    write_json(Path(folder) / RECORD_NAME, record.to_json())


def read_pick_record(folder: str | os.PathLike[str]) -> PickRecord | None:
    """The ``pick.json`` of a pick folder, or None when it has none (picked by an earlier CryoUNet,
    or by other software).

    Raises:
        InputFileError: the record exists but cannot be read.
    """
    path = Path(folder) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ValueError(f"format is not '{RECORD_FORMAT}'")
        shard = data.get("shard")
        k, n = (int(x) for x in shard.split("/")) if shard is not None else (0, 0)
        models = [{"folder": str(m["folder"]), "weights_sha256": m.get("weights_sha256")} for m in data["models"]]
        return PickRecord(
            command=str(data["command"]), models=models,
            threshold=None if data.get("threshold") is None else float(data["threshold"]),
            diameter_px=None if data.get("diameter_px") is None else float(data["diameter_px"]),
            micrographs=int(data["micrographs"]), shard=None if shard is None else (k, n),
            listed=None if data.get("listed") is None else int(data["listed"]),
            postprocess=dict(data.get("postprocess") or {}),
            cryounet_version=str(data.get("cryounet_version", "")))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputFileError(path, f"not a readable pick record ({exc})") from None


def postprocessed_record(source: PickRecord | None, filters: dict[str, Any], micrographs: int) -> PickRecord:
    """The record of ``postprocess``'s output: the input's (models, shard) with the filters added and
    the threshold the picks are now cut at (the higher of the two)."""
    threshold = filters.get("threshold")
    if source is None:
        return PickRecord("postprocess", [], threshold, None, micrographs, postprocess=dict(filters))
    if source.threshold is not None:
        threshold = source.threshold if threshold is None else max(source.threshold, threshold)
    applied = {**source.postprocess, **{k: v for k, v in filters.items() if v is not None}}
    return PickRecord("postprocess", source.models, threshold, source.diameter_px, micrographs,
                      source.shard, source.listed, applied)


@dataclass
class MergePlan:
    """What merging pick folders writes: ``(STAR file, stem, micrograph name)`` per micrograph, and
    the skipped micrographs with their reasons."""

    files: list[tuple[Path, str, str]]
    skipped: dict[str, str]
    record: PickRecord | None = None


def plan_merge(folders: Sequence[Path]) -> MergePlan:
    """Check and list the finished pick folders (the shards of one picking) to merge; writes nothing.

    Raises:
        CryoUNetError: a folder is missing, unfinished or has no record; two folders hold the same
            micrograph; the shards are not all of one split (one missing, one twice) or were not
            picked alike (models, threshold, diameter, post-processing): see :func:`check_shards`.
    """
    from cryounet.io.coordinates import read_star_index

    owner: dict[str, Path] = {}
    plan = MergePlan([], {})
    records = {}
    for folder in folders:
        folder = check_picks_folder(folder)
        if folder in records:
            raise CryoUNetError(f"{folder} is given twice")
        index = folder / INDEX_NAME
        if not index.is_file():
            raise CryoUNetError(f"{folder}: not a pick folder (no {INDEX_NAME})")
        records[folder] = _required_record(folder)
        entries = read_star_index(index)
        listed = len(entries) + len(read_skipped(folder))
        if listed != records[folder].micrographs:
            raise CryoUNetError(f"{folder}: its index and {SKIPPED_NAME} list {listed} micrograph(s), its "
                                f"{RECORD_NAME} {records[folder].micrographs}: files of the folder are "
                                "missing; pick it again")
    plan.record = check_shards(records)
    for folder in records:
        for stem, micrograph in read_star_index(folder / INDEX_NAME).items():
            if stem in owner:
                raise CryoUNetError(f"{stem}.star is in both {owner[stem]} and {folder}: the shards "
                                    "overlap (pick each shard of one list, --shard K/N)")
            if not (folder / f"{stem}.star").is_file():
                raise CryoUNetError(f"{folder}: its index names {stem}.star, which is missing")
            owner[stem] = folder
            plan.files.append((folder / f"{stem}.star", stem, micrograph))
        plan.skipped.update(read_skipped(folder))
    return plan


def _required_record(folder: Path) -> PickRecord:
    record = read_pick_record(folder)
    if record is None:
        raise CryoUNetError(f"{folder}: no {RECORD_NAME} (picked by an earlier CryoUNet, or not by CryoUNet), so "
                            "merge cannot check that the shards are complete and picked alike; pick it "
                            "again with this version")
    return record


def _shard_name(folder: Path, record: PickRecord) -> str:
    return f"{folder} ({'whole list' if record.shard is None else '%d/%d' % record.shard})"


def check_shards(records: dict[Path, PickRecord]) -> PickRecord:
    """Check that pick folders can merge, and return the merged folder's record: picked alike (the
    same models, threshold, diameter and post-processing) and, when sharded, the shards of one split
    of one list, each once, none missing. Folders picked without ``--shard`` (several whole lists)
    merge when picked alike.

    Raises:
        CryoUNetError: naming the folders and what differs, or the missing shard.
    """
    (first, base), *others = records.items()
    for folder, record in others:
        for what, mine, theirs in (
                ("models", _model_keys(base), _model_keys(record)),
                ("threshold", base.threshold, record.threshold),
                ("diameter", base.diameter_px, record.diameter_px),
                ("post-processing", base.postprocess, record.postprocess)):
            if not _same(mine, theirs):
                shown = {"models": (base.describe_models(), record.describe_models())}.get(what, (mine, theirs))
                raise CryoUNetError(f"{first} and {folder} were not picked alike: {what} {shown[0]} and "
                                    f"{shown[1]}; merge only the shards of one picking")
    sharded = {folder: r for folder, r in records.items() if r.shard is not None}
    if sharded and len(sharded) < len(records):
        whole = next(f for f in records if f not in sharded)
        raise CryoUNetError(f"{_shard_name(whole, records[whole])} and "
                            f"{_shard_name(*next(iter(sharded.items())))}: a shard cannot merge with a whole list")
    if sharded:
        _check_split(sharded)
    return PickRecord("merge", base.models, base.threshold, base.diameter_px,
                      sum(r.micrographs for r in records.values()), None,
                      base.listed if sharded else None, base.postprocess)


def _check_split(records: dict[Path, PickRecord]) -> None:
    """Every shard of one split of one list, each once."""
    (first, base), *others = records.items()
    seen: dict[int, Path] = {}
    for folder, record in records.items():
        if record.shard[1] != base.shard[1] or record.listed != base.listed:
            raise CryoUNetError(f"{_shard_name(first, base)} and {_shard_name(folder, record)} are shards of "
                                f"different splits ({base.listed} and {record.listed} micrographs listed)")
        k = record.shard[0]
        if k in seen:
            raise CryoUNetError(f"{seen[k]} and {folder} both hold shard {k}/{base.shard[1]}")
        seen[k] = folder
    n = base.shard[1]
    missing = [k for k in range(1, n + 1) if k not in seen]
    if missing:
        raise CryoUNetError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(f'{k}/{n}' for k in missing)} "
                            f"missing: merging {len(records)} of {n} ("
                            + ", ".join(_shard_name(f, r) for f, r in records.items())
                            + "); add the folder picked with --shard " + f"{missing[0]}/{n}")


def _model_keys(record: PickRecord) -> list[str]:
    return sorted(str(m["weights_sha256"] or m["folder"]) for m in record.models)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def write_merge(plan: MergePlan, output: Path) -> None:
    """Write a merged pick folder: every STAR file (atomically), one ``skipped.json``, the record,
    then the one ``coordinates.star`` index over all of them."""
    from cryounet.io.atomic import write_bytes_atomic

    output.mkdir(parents=True, exist_ok=True)
    entries = []
    for star, stem, micrograph in plan.files:
        target = output / f"{stem}.star"
        write_bytes_atomic(target, star.read_bytes())
        entries.append((micrograph, str(target)))
    write_skipped(output, plan.skipped)
    if plan.record is not None:
        write_pick_record(output, plan.record)
    write_star_index(output / INDEX_NAME, entries)
