"""Picking a list of micrographs and writing RELION coordinate files plus an index."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cryounet.errors import CryoUNetError, InputFileError
from cryounet.inference import Picker
from cryounet.io.atomic import write_text_atomic
from cryounet.io.coordinates import INDEX_NAME, Picks, write_star_index, write_star_picks
from cryounet.io.mrc import read_micrograph

logger = logging.getLogger(__name__)

#: Warn when more than this fraction of micrographs yields no pick.
EMPTY_WARNING_FRACTION = 0.2
#: Machine-readable list of the micrographs a picking run skipped, written in its output folder.
SKIPPED_NAME = "skipped.json"


@dataclass
class PickSummary:
    """What a picking run produced."""

    picked: dict[str, int] = field(default_factory=dict)  # micrograph stem -> number of picks
    failed: dict[str, str] = field(default_factory=dict)  # micrograph path -> problem
    threshold: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.picked.values())

    @property
    def empty(self) -> list[str]:
        return [name for name, n in self.picked.items() if n == 0]


def warn_if_empty(picked: dict[str, int]) -> None:
    """Warn loudly when many micrographs got no pick (silent zero-pick micrographs hurt)."""
    empty = [name for name, n in picked.items() if n == 0]
    if picked and len(empty) > EMPTY_WARNING_FRACTION * len(picked):
        logger.warning(
            "%d of %d micrographs have no picks (e.g. %s): the threshold may be too high, the "
            "diameter wrong, or these micrographs empty", len(empty), len(picked), ", ".join(empty[:3]))
    elif empty:
        logger.info("%d micrograph(s) have no picks: %s", len(empty), ", ".join(empty[:5]))


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


def pick_micrographs(picker: Picker, micrographs: Sequence[Path], output: Path,
                     threshold: float | None, progress: bool = True,
                     allow_all_skipped: bool = False) -> PickSummary:
    """Pick each micrograph, write its STAR file as soon as it is done, then the index.

    A micrograph that cannot be read is skipped with a warning (no STAR file) and listed with the
    reason in ``skipped.json`` (``[{"micrograph": path, "reason": text}, ...]``). When every
    micrograph fails, :class:`CryoUNetError` is raised unless ``allow_all_skipped`` (then the
    index is written empty).
    """
    from tqdm import tqdm

    thr = picker.calibrated_threshold if threshold is None else threshold
    summary = PickSummary(threshold=thr)
    output.mkdir(parents=True, exist_ok=True)
    done: list[tuple[Path, Picks]] = []
    for mic in tqdm(micrographs, desc="picking", unit="mic", disable=not progress):
        try:
            image = read_micrograph(mic)
            result = picker.pick_image(image, thr)
        except (InputFileError, CryoUNetError) as exc:
            logger.warning("skipping %s: %s", mic, exc)
            summary.failed[str(mic)] = str(exc)
            continue
        write_star_picks(output / f"{mic.stem}.star", result.picks)
        done.append((mic, result.picks))
        summary.picked[mic.stem] = len(result.picks)
        logger.debug("%s: %d picks", mic.name, len(result.picks))
    write_text_atomic(output / SKIPPED_NAME, json.dumps(
        [{"micrograph": mic, "reason": why} for mic, why in summary.failed.items()], indent=2) + "\n")
    if not done and not allow_all_skipped:
        raise CryoUNetError(f"none of the {len(micrographs)} micrographs could be picked "
                            f"(first problem: {next(iter(summary.failed.values()), 'none')})")
    write_star_index(output / INDEX_NAME,
                     [(str(m), str(output / f"{m.stem}.star")) for m, _ in done])
    warn_if_empty(summary.picked)
    return summary
