"""Atomic file writes: write to a temporary name in the same folder, then rename.

A crash or an error half-way through never leaves a truncated file under the final name, and a file
that already existed is only replaced once the new one is complete. The temporary name
(``.<name>.<random>.tmp``) is shortened, with a hash of the full name, where it would pass the file
system's limit on name length (255 bytes) although the final name does not.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The caller writes the temporary file completely (by any library that takes a path). On an
    exception the temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(final.name), suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; the final file gets the mode any other tool would give it
        # (0666 less the umask), so colleagues and a Scipion server account can read it.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


#: Longest file name (bytes) on the file systems CryoUNet writes to (ext4, XFS, Btrfs, NFS).
NAME_MAX = 255
#: Bytes mkstemp adds to the prefix: 8 random characters and the ``.tmp`` suffix.
_TEMPORARY_EXTRA = 8 + len(".tmp")


def temporary_prefix(name: str) -> str:
    """The prefix of the temporary file for ``name``: ``.<name>.``, or, where the temporary name
    would pass :data:`NAME_MAX` bytes, the start of ``name`` and a hash of all of it."""
    prefix = f".{name}."
    if len(os.fsencode(prefix)) + _TEMPORARY_EXTRA <= NAME_MAX:
        return prefix
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    room = NAME_MAX - _TEMPORARY_EXTRA - len(f"..{digest}.")
    head = os.fsencode(name)[:room].decode("utf-8", errors="ignore")
    return f".{head}.{digest}."


def name_too_long(folder: str | os.PathLike[str], name: str) -> str | None:
    """Why the file ``name`` cannot be made in ``folder`` because of its length, or None."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = NAME_MAX
    size = len(os.fsencode(name))
    if size <= limit:
        return None
    return (f"its output file name {name!r} would be {size} bytes, more than the {limit} this file system "
            f"allows ({os.strerror(errno.ENAMETOOLONG).lower()}): give the micrograph a shorter name")


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8; file names in it that are not UTF-8, read
    with :func:`os.fsdecode`, are written back as their own bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically (indented, for people to read)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
