"""Picking a list of micrographs into a pick folder (STAR file per micrograph, index, skipped list).

The network runs in the calling thread, one micrograph after another. With ``pick.workers`` > 0,
that many threads read and preprocess the next micrographs ahead of it and as many find the peaks
and write the STAR files behind it, so a fast device is not left waiting for the CPU work (the
results are the same as with 0, which does everything in turn).
"""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from cryounet.errors import CryoUNetError, InputFileError
from cryounet.inference.picking import BasePicker
from cryounet.io.atomic import name_too_long
from cryounet.io.coordinates import INDEX_NAME, Picks, write_star_index, write_star_picks
from cryounet.io.mrc import read_micrograph
from cryounet.io.picks_folder import (PickRecord, check_same_picking, finished_picks, model_entry, warn_if_empty,
                                      write_pick_record, write_skipped)

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


T = TypeVar("T")


class _InTurn:
    """The executor of ``workers`` = 0: each task runs at once in the calling thread."""

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever asks for the result, as a pool would
            future.set_exception(exc)
        return future


class _Run:
    """One picking run's steps: read and preprocess, the network, peaks and the STAR file, and the
    bookkeeping of what was picked or skipped."""

    def __init__(self, picker: BasePicker, output: Path, threshold: float) -> None:
        self.picker, self.output, self.threshold = picker, output, threshold
        self.summary = PickSummary(threshold=threshold)
        self.done: list[Path] = []

    def prepare(self, mic: Path):
        return self.picker.prepare(read_micrograph(mic))

    def finish(self, mic: Path, prob, spread, scale) -> Picks:
        picks = self.picker.finish(prob, spread, scale, self.threshold)
        write_star_picks(self.output / f"{mic.stem}.star", picks)
        return picks

    def failed(self, mic: Path, exc: Exception) -> None:
        logger.warning("skipping %s: %s", mic, exc)
        self.summary.failed[str(mic)] = str(exc)

    def fits(self, mic: Path) -> bool:
        problem = name_too_long(self.output, f"{mic.stem}.star")
        if problem is not None:
            self.failed(mic, InputFileError(mic, problem))
        return problem is None

    def collect(self, mic: Path, future: Future[Picks]) -> None:
        try:
            picks = future.result()
        except (InputFileError, CryoUNetError) as exc:
            self.failed(mic, exc)
            return
        self.done.append(mic)
        self.summary.picked[mic.stem] = len(picks)
        logger.debug("%s: %d picks", mic.name, len(picks))

    def stream(self, todo: Sequence[Path], workers: int, progress: bool) -> None:
        """Pick ``todo`` in order; at most ``workers`` + 1 micrographs read ahead and ``workers``
        maps behind the network, so memory stays bounded."""
        from tqdm import tqdm

        with ExitStack() as stack:
            if workers:
                readers = stack.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="cryounet-read"))
                finishers = stack.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="cryounet-peaks"))
                stack.callback(readers.shutdown, cancel_futures=True)  # on an error: no more reading
            else:
                readers = finishers = _InTurn()
            queue = (mic for mic in todo if self.fits(mic))
            ahead: deque[tuple[Path, Future]] = deque()
            behind: deque[tuple[Path, Future[Picks]]] = deque()
            bar = stack.enter_context(tqdm(total=len(todo), desc="picking", unit="mic", disable=not progress))
            while True:
                while len(ahead) <= workers and (mic := next(queue, None)) is not None:
                    ahead.append((mic, readers.submit(self.prepare, mic)))
                if not ahead:
                    break
                mic, future = ahead.popleft()
                try:
                    image, scale = future.result()
                    prob, spread = self.picker.probability(image)
                except (InputFileError, CryoUNetError) as exc:
                    self.failed(mic, exc)
                else:
                    behind.append((mic, finishers.submit(self.finish, mic, prob, spread, scale)))
                while len(behind) > workers:
                    self.collect(*behind.popleft())
                bar.update()
            while behind:
                self.collect(*behind.popleft())


def pick_micrographs(picker: BasePicker, micrographs: Sequence[Path], output: Path,
                     threshold: float | None, progress: bool = True,
                     allow_all_skipped: bool = False, workers: int | None = None,
                     shard: tuple[int, int] | None = None, listed: int | None = None,
                     resume: bool = False) -> PickSummary:
    """Pick each micrograph, write its STAR file as soon as it is done, then the index.

    ``threshold`` None picks at the picker's threshold rule (``pick.threshold``, else calibrated).
    ``workers`` (default: the picker's ``pick.workers``) threads read and preprocess ahead of the
    network and as many find peaks and write STAR files behind it; 0 does it all in turn.

    A micrograph that cannot be read, or whose STAR file name would be too long for the file system,
    is skipped with a warning (no STAR file) and listed with the reason in ``skipped.json``
    (``[{"micrograph": path, "reason": text}, ...]``). When every micrograph fails,
    :class:`CryoUNetError` is raised unless ``allow_all_skipped`` (then the index is written empty).
    The index lists the picked micrographs in the order given.

    ``pick.json`` records the models (their weights' SHA-256), the threshold, the diameter, the
    number of micrographs and ``shard`` (K, N) of a list of ``listed`` micrographs, for ``merge``.

    With ``resume`` (an interrupted pick into ``output``), micrographs whose STAR file is there are
    kept as they are, not picked again, and listed in the index with the others.
    """

    workers = picker.pick.workers if workers is None else workers
    if workers < 0:
        raise CryoUNetError(f"pick.workers must not be negative, got {workers}")
    thr = picker.threshold(threshold)
    output.mkdir(parents=True, exist_ok=True)
    record = PickRecord("pick", [model_entry(m.path, m.info.sha256) for m in picker.models], thr,
                        picker.diameter, len(micrographs), shard, listed)
    if resume:
        check_same_picking(output, record)
    write_pick_record(output, record)  # first: an interrupted run's folder says what it was picking
    finished = finished_picks(output, micrographs) if resume else {}
    run = _Run(picker, output, thr)
    run.summary.picked.update(finished)
    run.stream([mic for mic in micrographs if mic.stem not in finished], workers, progress)
    summary, done = run.summary, run.done
    write_skipped(output, summary.failed)
    picked = set(done)
    indexed = [m for m in micrographs if m in picked or m.stem in finished]
    if not indexed and not allow_all_skipped:
        raise CryoUNetError(f"none of the {len(micrographs)} micrographs could be picked "
                            f"(first problem: {next(iter(summary.failed.values()), 'none')})")
    write_star_index(output / INDEX_NAME, [(str(m), str(output / f"{m.stem}.star")) for m in indexed])
    warn_if_empty(summary.picked)
    return summary
