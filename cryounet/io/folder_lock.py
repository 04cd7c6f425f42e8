"""An advisory lock per output folder: one run at a time writes a folder.

The lock is :func:`fcntl.flock` on ``.cryounet-output.lock`` in the folder, held from the claim to
the end of the run (the system releases it when the process ends, however it ends; a run that
ends normally removes the file). The holder's
host and PID are written in the folder's marker (:mod:`cryounet.io.outputs`), so a second run is
told who holds the folder, and a marker of an unfinished run whose lock nobody holds is known to be
left by an interrupted run.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_NAME = ".cryounet-output.lock"
#: flock's answers for a file system that has no locks (some network file systems).
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}

#: The folders this process holds, by resolved path: {path: lock file descriptor}.
_held: dict[str, int] = {}


def holder() -> dict[str, object]:
    """This process as a marker records it: ``{"host": name, "pid": number}``."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def acquire(folder: Path) -> bool:
    """Take the lock of ``folder`` (an existing folder) for this process.

    A lock this process already holds on ``folder`` belongs to an earlier claim in this process,
    whose command has ended (commands of one process run one after another): it is taken over.

    Returns:
        False when another process holds it (nothing changed), else True (also on a file system
        without locks, where a warning says the folder is not protected).
    """
    release(folder)
    for _ in range(10):
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                os.close(fd)
                raise
            logger.warning("%s: the file system does not lock files (%s): nothing stops two runs from "
                           "writing this folder at once", folder, exc.strerror or exc)
        if _same_file(fd, folder / LOCK_NAME):
            _held[str(folder.resolve())] = fd
            return True
        os.close(fd)  # the holder removed the lock file as it finished: lock the new one
    return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def release(folder: Path) -> None:
    """Release this process's lock of ``folder`` and remove the lock file (nothing when it holds
    none). The file is removed while locked, so a run that opened it before retries on a new one."""
    fd = _held.pop(str(folder.resolve()), None)
    if fd is not None:
        if _same_file(fd, folder / LOCK_NAME):
            with contextlib.suppress(OSError):
                (folder / LOCK_NAME).unlink()
        os.close(fd)  # closing the only descriptor releases the flock


def holds(folder: Path) -> bool:
    """Whether this process holds the lock of ``folder``."""
    return str(folder.resolve()) in _held
