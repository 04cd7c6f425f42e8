"""Picking a list of micrographs into a pick folder (STAR file per micrograph, index, skipped list)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cryounet.errors import CryoUNetError, InputFileError
from cryounet.inference.picker import Picker
from cryounet.io.coordinates import INDEX_NAME, Picks, write_star_index, write_star_picks
from cryounet.io.mrc import read_micrograph
from cryounet.io.picks_folder import warn_if_empty, write_skipped

logger = logging.getLogger(__name__)


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


def pick_micrographs(picker: Picker, micrographs: Sequence[Path], output: Path,
                     threshold: float | None, progress: bool = True,
                     allow_all_skipped: bool = False) -> PickSummary:
    """Pick each micrograph, write its STAR file as soon as it is done, then the index.

    ``threshold`` None picks at the picker's threshold rule (``pick.threshold``, else calibrated).

    A micrograph that cannot be read is skipped with a warning (no STAR file) and listed with the
    reason in ``skipped.json`` (``[{"micrograph": path, "reason": text}, ...]``). When every
    micrograph fails, :class:`CryoUNetError` is raised unless ``allow_all_skipped`` (then the
    index is written empty).
    """
    from tqdm import tqdm

    thr = picker.threshold(threshold)
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
    write_skipped(output, summary.failed)
    if not done and not allow_all_skipped:
        raise CryoUNetError(f"none of the {len(micrographs)} micrographs could be picked "
                            f"(first problem: {next(iter(summary.failed.values()), 'none')})")
    write_star_index(output / INDEX_NAME,
                     [(str(m), str(output / f"{m.stem}.star")) for m, _ in done])
    warn_if_empty(summary.picked)
    return summary
