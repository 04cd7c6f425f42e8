"""Ordinary conditions that libraries report as generic exceptions, told in one line.

torch.save reports a full disk or a file-size limit as ``RuntimeError`` ("file write failed",
"unexpected pos"), safetensors as ``SafetensorError``, ONNX Runtime an allocation that the memory
limit refuses as its own ``RuntimeException``, and a shared library that cannot be mapped under an
address-space limit comes as ``OSError`` / ``ImportError`` ("failed to map segment from shared
object"). :func:`describe_failure` gives the command line's one-line message for each, or None for
anything else (a bug).
"""
from __future__ import annotations

import errno
import re

from cryounet.limits import address_space_limit, gib

#: Words of a write that failed because the disk is full or a file-size limit was reached.
WRITE_FAILED = ("file write failed", "unexpected pos", "no space left", "file too large",
                "os error 28", "os error 27")
#: Words of an allocation the system refused.
ALLOCATION_FAILED = ("failed to allocate memory", "bad allocation", "bad_alloc", "can't allocate memory",
                     "cannot allocate memory")
#: Modules of the libraries whose own exception types carry these conditions.
LIBRARIES = ("onnxruntime", "safetensors", "torch")
WRITE_MESSAGE = ("writing a file failed: the disk is full or a file-size limit (ulimit -f) was reached "
                 "(files already written are intact; free space or raise the limit and run again)")


def _memory_limit_words() -> str:
    limit = address_space_limit()
    return (f"this process's address-space limit (ulimit -v, or the queue's h_vmem) is {gib(limit)}"
            if limit is not None else "the machine's memory is used up")


def describe_os_failure(exc: OSError) -> str | None:
    """The message of an OS error that is not about a file the user named, or None."""
    if exc.errno == errno.EFBIG:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return (f"{where}file too large for this process's file-size limit (ulimit -f, or the "
                "queue's h_fsize): raise the limit and run again (files already written are intact)")
    return describe_library_failure(exc)


def describe_library_failure(exc: BaseException) -> str | None:
    """The message of a shared library that cannot be loaded under a memory limit, or None."""
    text = str(exc)
    if "failed to map segment" not in text and not (".so" in text and "cannot allocate memory" in text.lower()):
        return None
    library = re.search(r"([^\s:]+\.so[^\s:]*)", text)
    name = library.group(1) if library else "a shared library"
    return (f"cannot load {name}: {_memory_limit_words()}, too little to map it: raise the limit "
            "(PyTorch needs a few GiB of address space) and run again")


def describe_failure(exc: BaseException, threads_option: str = "--threads") -> str | None:
    """One line for a library exception that stands for an ordinary condition (full disk, file-size
    or memory limit, thread creation refused), or None when it is none of those."""
    if isinstance(exc, OSError):
        return describe_os_failure(exc)
    if isinstance(exc, ImportError):
        return describe_library_failure(exc)
    if not (isinstance(exc, RuntimeError) or type(exc).__module__.startswith(LIBRARIES)):
        return None
    text = str(exc).lower()
    if any(words in text for words in WRITE_FAILED):
        return WRITE_MESSAGE
    if any(words in text for words in ALLOCATION_FAILED) or (
            "could not create a primitive" in text and address_space_limit() is not None):  # oneDNN
        return (f"out of memory: {_memory_limit_words()} (use fewer {threads_option} or smaller tiles and "
                "batches: pick.tile_size, pick.batch_size, train.batch_size, or --batch-size; or raise "
                "the limit)")
    if "can't start new thread" in text or "thread creation failed" in text:
        return (f"a thread could not be started: {_memory_limit_words()} or the process limit "
                f"(ulimit -u) is reached: pass a smaller {threads_option}, or raise the limit")
    return None
