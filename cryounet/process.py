"""Set-up of an engine process before it starts: glibc's allocator settings and an import path
without the working folder.

PyTorch on the CPU allocates and frees tensors of tens to hundreds of MB on every forward pass. By
default glibc serves large blocks with mmap and returns freed memory to the system at once, so
every pass faults its pages in again, zeroed by the kernel: picking one 4k micrograph with
test-time augmentation spent more time in the kernel than in the network (docs/history: "Adaptive
tiling and allocator settings").
With these settings freed blocks stay in the process for reuse; peak memory is unchanged (the
same blocks are reused) while system time drops to near zero. glibc reads them only when a process
starts, so the command line re-executes itself once with them set (Linux only; a value already in
the environment wins, and ``CRYOUNET_MALLOC=system`` keeps glibc's defaults).

``python -m`` puts the working folder first on the import path, so a ``random.py`` or ``numpy/`` in a
data folder would be imported instead of the real module. The re-execution therefore runs with an
isolated path (``-P`` and ``PYTHONSAFEPATH=1``, which its children such as torchrun's inherit; Python
3.10 lacks both, and :func:`strip_working_folder` removes the entry there), and ``python -m cryounet``
run directly drops the entry before it imports anything else.
"""
from __future__ import annotations

import os
import sys

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


def package_home() -> str:
    """The folder that holds the ``cryounet`` package being run."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def working_folder_is_home() -> bool:
    """True when the ``cryounet`` package being run lies in the working folder (a source checkout
    run from its root without installing it): that folder must then stay on the import path."""
    try:
        return os.path.samefile(package_home(), os.getcwd())
    except OSError:
        return False


def reexec_command(argv: list[str]) -> list[str]:
    """The command line of the re-execution: ``python -P -m cryounet <argv>`` (no ``-P`` before
    Python 3.11, or when the package is only found in the working folder)."""
    safe = ["-P"] if sys.version_info >= (3, 11) and not working_folder_is_home() else []
    return [sys.executable, *safe, "-m", "cryounet", *argv]


def reexec_with_allocator_settings(argv: list[str]) -> None:
    """Replace this process by ``python -P -m cryounet <argv>`` with :data:`MALLOC_SETTINGS` set;
    return (and go on unchanged) when nothing is to be set or the re-execution is impossible."""
    environ = allocator_environment(dict(os.environ))
    if environ is None or not sys.executable:
        return
    if not working_folder_is_home():
        environ.setdefault("PYTHONSAFEPATH", "1")
    try:
        os.execve(sys.executable, reexec_command(argv), environ)
    except OSError:
        return  # e.g. the interpreter cannot be run again: go on with glibc's defaults


def strip_working_folder() -> None:
    """Remove the working folder that ``python -m`` put first on ``sys.path`` (unless the
    interpreter already left it out, or the package is only found there)."""
    if getattr(sys.flags, "safe_path", False) or not sys.path or working_folder_is_home():
        return
    first = sys.path[0]
    try:
        same = first == "" or os.path.samefile(first, os.getcwd())
    except OSError:
        same = False
    if same:
        del sys.path[0]
