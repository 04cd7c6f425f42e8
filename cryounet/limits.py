"""The CPUs and address space this process may use: thread counts that fit the machine.

A queue job or a container is often given fewer CPUs than the host has (an affinity mask, a cgroup
CPU quota), and an address-space limit (``ulimit -v``, SGE's ``h_vmem``). Each thread of a pool
reserves address space (its stack, and glibc a malloc arena of 64 MiB for each of the first
threads that allocate); when the limit is reached ONNX Runtime blocks for ever while it creates its
pool and libgomp aborts. :func:`fit_threads` caps ``--threads`` at the usable CPUs and
:func:`check_thread_room` refuses, in one line, a pool that cannot fit under the limit.
"""
from __future__ import annotations

import logging
import math
import os
import resource
from pathlib import Path

from cryounet.errors import CryoUNetError

logger = logging.getLogger(__name__)

#: Address space glibc reserves for one malloc arena on 64-bit systems.
ARENA_BYTES = 64 * 1024 ** 2
#: A thread's stack when RLIMIT_STACK is unlimited (glibc's default on x86-64 and arm64).
DEFAULT_STACK_BYTES = 8 * 1024 ** 2
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_dirs(root: Path, proc_cgroup: Path) -> list[tuple[str, Path]]:
    """The cgroup folders of this process, ``(controllers, folder)``: its own, then the mount's
    root (a container sees its own cgroup there)."""
    found: list[tuple[str, Path]] = []
    try:
        lines = proc_cgroup.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.lstrip("/")
        if controllers == "":  # cgroup v2
            found.append(("", root / relative))
        elif "cpu" in controllers.split(","):
            for mount in (controllers, "cpu,cpuacct", "cpu"):
                found.append(("cpu", root / mount / relative))
    return found + [("", root), ("cpu", root / "cpu,cpuacct"), ("cpu", root / "cpu")]


def _quota(kind: str, folder: Path) -> float | None:
    """CPUs allowed by one cgroup folder's quota, or None when it sets none (or cannot be read)."""
    try:
        if kind == "":
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), in CPUs,
    or None when there is none."""
    quotas = [q for kind, folder in _cgroup_dirs(root, proc_cgroup) if (q := _quota(kind, folder))]
    return min(quotas) if quotas else None


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup quota (rounded up)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def fit_threads(requested: int, option: str = "--threads") -> int:
    """The thread count to use: ``requested`` (0: every usable CPU) capped at :func:`usable_cpus`,
    said in an INFO line when capped."""
    cpus = usable_cpus()
    if requested <= 0:
        return cpus
    if requested > cpus:
        logger.info("%s %d is more than the %d CPU(s) this process may use (affinity and cgroup quota): "
                    "using %d threads", option, requested, cpus, cpus)
        return cpus
    return requested


def address_space_limit() -> int | None:
    """This process's address-space limit in bytes (``ulimit -v``, ``h_vmem``), or None."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def _address_space_used() -> int:
    """Bytes of address space this process holds now (``VmSize``)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def thread_reserve(threads: int) -> int:
    """Address space ``threads`` new threads reserve: their stacks and the malloc arenas glibc
    may give them (at most ``MALLOC_ARENA_MAX``, by default 8 per online CPU)."""
    stack, _ = resource.getrlimit(resource.RLIMIT_STACK)
    if stack == resource.RLIM_INFINITY or stack <= 0:
        stack = DEFAULT_STACK_BYTES
    try:
        arenas = int(os.environ["MALLOC_ARENA_MAX"])
    except (KeyError, ValueError):
        arenas = 8 * (os.cpu_count() or 1)
    return threads * stack + min(threads, max(arenas, 0)) * ARENA_BYTES


def gib(n: int) -> str:
    return f"{n / 1024 ** 3:.2f} GiB"


#: Address space below which loading PyTorch is refused: torch 2.x's import aborted the process
#: (std::bad_alloc, no Python exception) under ``ulimit -v 700000`` (0.67 GiB), and its first
#: convolution failed under 0.76 GiB; picking a 512 px micrograph worked under 0.86 GiB (2-core VM).
TORCH_ADDRESS_SPACE = 1024 ** 3


def check_room_for_torch() -> None:
    """Refuse to load PyTorch under an address-space limit too small for it (its import would
    abort the process without a word).

    Raises:
        CryoUNetError: naming the limit and the ways on.
    """
    limit = address_space_limit()
    if limit is not None and limit < TORCH_ADDRESS_SPACE:
        raise CryoUNetError(
            f"this process's address-space limit (ulimit -v, or the queue's h_vmem) is {gib(limit)}, too "
            f"little to load PyTorch (it needs at least {gib(TORCH_ADDRESS_SPACE)}): raise the limit "
            "(pick can run without PyTorch: --backend onnxruntime with a model.onnx)")


def check_thread_room(threads: int, option: str = "--threads") -> None:
    """Refuse a pool of ``threads`` threads that would not fit under the address-space limit.

    Raises:
        CryoUNetError: one line naming the limit, what the threads need and the largest count that
            fits.
    """
    limit = address_space_limit()
    if limit is None or threads <= 1:
        return
    free = limit - _address_space_used()
    if thread_reserve(threads) <= free:
        return
    fitting = max((n for n in range(1, threads) if thread_reserve(n) <= free), default=1)
    advice = f"pass {option} {fitting}" if fitting == 1 else f"pass {option} {fitting} or fewer"
    raise CryoUNetError(
        f"this process's address-space limit (ulimit -v, or the queue's h_vmem) is {gib(limit)} with "
        f"{gib(max(free, 0))} still free, too little for {threads} threads (about {gib(thread_reserve(threads))} "
        f"of stacks and malloc arenas): {advice}, or raise the limit")
