"""The ``cryounet`` command line: one sub-command per module in :mod:`cryounet.commands`.

Each command module exposes ``name``, ``help``, ``add_arguments(parser)`` and ``main(args) -> int``.
User errors (:class:`~cryounet.errors.CryoUNetError`, OS errors, out of memory) are printed as one
``error:`` line and give exit code 2; anything else is a bug: one line asking to report it (exit code
1), with the traceback under ``--verbose``.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import traceback
from typing import Sequence

from cryounet import __version__
from cryounet.errors import CryoUNetError
from cryounet.process import MALLOC_SETTINGS

COMMANDS = ("train", "refine", "pick", "merge", "evaluate", "postprocess", "export", "simulate", "demo",
            "diameter")

logger = logging.getLogger("cryounet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryounet", description="Deep-learning particle picking for cryo-EM micrographs."
    )
    parser.add_argument("--version", action="version", version=f"cryounet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        module = importlib.import_module(f"cryounet.commands.{command}")
        cmd_parser = sub.add_parser(command, help=module.help, description=module.help)
        module.add_arguments(cmd_parser)
        cmd_parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
        cmd_parser.add_argument("--verbose", action="store_true", help="debug logging")
        cmd_parser.set_defaults(_main=module.main)
    return parser


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("cryounet")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


#: Exit code of an expected failure (a bad file, value or environment), said in one line.
EXIT_USER_ERROR = 2
#: Exit code of an unexpected exception (a bug).
EXIT_BUG = 1
#: Top-level modules of the ``engine`` extra: the base install (the torch-free part Scipion's own
#: environment holds) lacks them.
ENGINE_MODULES = frozenset({"torch", "albumentations", "cv2", "tqdm"})
OUT_OF_MEMORY = ("out of memory (use smaller tiles or batches: pick.tile_size, pick.batch_size, "
                 "train.batch_size, or --batch-size)")


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the file(s) and the system's words."""
    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        what = "no space left on the device (files already written are intact; free space and run again)"
    files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"{' -> '.join(files)}: {what}" if files else what


def is_engine_module(exc: ModuleNotFoundError) -> bool:
    """True when the missing module is one of the ``engine`` extra's."""
    return (exc.name or "").split(".")[0] in ENGINE_MODULES


def report_missing_engine(exc: ModuleNotFoundError, prefix: str) -> int:
    """The one error line (and exit code) of an environment that holds only the engine's torch-free
    base."""
    print(f"{prefix}: error: {sys.executable} has the CryoUNet base install without the engine's "
          f"dependencies (no module {exc.name!r}): install them with pip install 'cryounet[engine]' (a "
          f"GPU site installs its CUDA build of torch first), or run cryounet from the environment "
          f"that has them", file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every expected failure (CryoUNetError, an OS error, running out of
    memory) ends as one ``cryounet CMD: error: ...`` line and exit code 2; an unexpected exception
    is a bug: one line asking to report it (exit code 1), with its traceback under ``--verbose``."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except ModuleNotFoundError as exc:
        if not is_engine_module(exc):
            raise
        return report_missing_engine(exc, "cryounet")
    args._argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging(args.quiet, args.verbose)
    logger.debug("allocator settings: %s", ", ".join(
        f"{k}={os.environ.get(k, 'glibc default')}" for k in MALLOC_SETTINGS))
    prefix = f"cryounet {args.command}"
    try:
        return int(args._main(args) or 0)
    except CryoUNetError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        print(f"{prefix}: error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError:
        print(f"{prefix}: error: {OUT_OF_MEMORY}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the boundary of the process: report, never hide
        if isinstance(exc, ModuleNotFoundError) and is_engine_module(exc):
            return report_missing_engine(exc, prefix)
        if type(exc).__name__ == "OutOfMemoryError":  # torch's GPU out of memory (torch is not imported here)
            print(f"{prefix}: error: the GPU is {OUT_OF_MEMORY}", file=sys.stderr)
            return EXIT_USER_ERROR
        if args.verbose:
            traceback.print_exc()
        print(f"{prefix}: internal error: {type(exc).__name__}: {exc}. This is a bug in CryoUNet "
              f"{__version__}: please report it with the command line"
              f"{'' if args.verbose else ' and the output of the same command with --verbose'}.",
              file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
