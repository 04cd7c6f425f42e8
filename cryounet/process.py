"""Set-up of an engine process before it starts: glibc's allocator settings.

PyTorch on the CPU allocates and frees tensors of tens to hundreds of MB on every forward pass. By
default glibc serves large blocks with mmap and returns freed memory to the system at once, so
every pass faults its pages in again, zeroed by the kernel: picking one 4k micrograph with
test-time augmentation spent more time in the kernel than in the network (BENCHMARKS.md, speed).
With these settings freed blocks stay in the process for reuse; peak memory is unchanged (the
same blocks are reused) while system time drops to near zero. glibc reads them only when a process
starts, so the command line re-executes itself once with them set (Linux only; a value already in
the environment wins, and ``CRYOUNET_MALLOC=system`` keeps glibc's defaults).
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

#: An mmap threshold above any tensor buffer (glibc takes it from the environment; mallopt would cap
#: it at 32 MiB, below the 43-85 MB feature maps of an 820-1150 px working image, and those then
#: stayed mmap'd: 4 GiB made TTA at 80 px 16 % faster than 32 MiB, for 55 MiB more peak memory) and
#: a trim threshold no run reaches.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(4 * 1024 ** 3),
                   "MALLOC_TRIM_THRESHOLD_": str(16 * 1024 ** 3)}
#: Environment variable that turns the tuning off (value ``system``).
OPT_OUT = "CRYOUNET_MALLOC"


def allocator_environment(environ: dict[str, str]) -> dict[str, str] | None:
    """The environment to re-execute with, or None when the process is already set up (or the
    tuning does not apply: not Linux, or turned off)."""
    if not sys.platform.startswith("linux") or environ.get(OPT_OUT) == "system":
        return None
    missing = {k: v for k, v in MALLOC_SETTINGS.items() if k not in environ}
    return {**environ, **missing} if missing else None


def reexec_with_allocator_settings(argv: Sequence[str]) -> None:
    """Replace this process by ``python -m cryounet <argv>`` with :data:`MALLOC_SETTINGS` set;
    return (and go on unchanged) when nothing is to be set or the re-execution is impossible."""
    environ = allocator_environment(dict(os.environ))
    if environ is None or not sys.executable:
        return
    try:
        os.execve(sys.executable, [sys.executable, "-m", "cryounet", *argv], environ)
    except OSError:
        return  # e.g. the interpreter cannot be run again: go on with glibc's defaults
