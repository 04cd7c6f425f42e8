"""The ``cryounet`` command line: one sub-command per module in :mod:`cryounet.commands`.

Each command module exposes ``name``, ``help``, ``add_arguments(parser)`` and ``main(args) -> int``.
User errors (:class:`~cryounet.errors.CryoUNetError`, OS errors, out of memory, a full disk or a
limit of the process as libraries report them: :mod:`cryounet.failures`) are printed as one ``error:``
line and give exit code 2; anything else is a bug: one line asking to report it (exit code 1), with
the traceback under ``--verbose``. SIGTERM and SIGHUP (a queue's time limit, ``scancel``, a closed
terminal) end a command as Ctrl-C does: the command unwinds (a training keeps its last checkpoint, a
pick folder stays marked unfinished), says ``interrupted by SIGTERM`` and exits with 128 + the signal
number (143, 129; 130 for SIGINT). SIGXFSZ is ignored so that a write over ``ulimit -f`` fails with
EFBIG and is reported instead of killing the process, and PyTorch is not loaded under an
address-space limit too small for it (its import would abort the process without a word).
Errors of the command line itself (argparse's: a missing option, a bad value, arguments it does not
know) come with the sub-command's own usage, and with a hint to quote globs when the arguments they
name look like a glob the shell expanded.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import signal
import sys
import traceback
from typing import Iterator, NoReturn, Sequence

from cryounet import __version__
from cryounet.errors import CryoUNetError
from cryounet.failures import describe_failure, describe_os_failure
from cryounet.io.folders import glob_hint
from cryounet.limits import check_room_for_torch
from cryounet.process import MALLOC_SETTINGS

COMMANDS = ("train", "refine", "pick", "merge", "evaluate", "show", "diameter", "postprocess", "export",
            "simulate", "demo")

logger = logging.getLogger("cryounet")


class CommandParser(argparse.ArgumentParser):
    """A sub-command's parser: its errors come with its own usage and, when the arguments they name
    look like a glob the shell expanded, the hint to quote it."""

    argv: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        super().error(message + glob_hint(self.argv, message))


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The ``cryounet`` parser; ``argv`` (the command line to parse) lets errors point at globs."""
    parser = argparse.ArgumentParser(
        prog="cryounet", description="Deep-learning particle picking for cryo-EM micrographs."
    )
    parser.add_argument("--version", action="version", version=f"cryounet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CommandParser)
    for command in COMMANDS:
        module = importlib.import_module(f"cryounet.commands.{command}")
        cmd_parser = sub.add_parser(command, help=module.help, description=module.help)
        cmd_parser.argv = list(argv)
        module.add_arguments(cmd_parser)
        cmd_parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
        cmd_parser.add_argument("--verbose", action="store_true", help="debug logging")
        cmd_parser.set_defaults(_main=module.main, _parser=cmd_parser)
    return parser


#: Unrecognized arguments named in full in an error; more are counted.
NAMED_ARGUMENTS = 5


def parse_command_line(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; an error (printed by argparse, exit 2) comes with the sub-command's own usage
    and names what is wrong: the missing options, the unrecognized arguments (with a hint to quote
    globs when they look like one the shell expanded) or the bad value."""
    argv = list(argv)
    args, unknown = build_parser(argv).parse_known_args(argv)
    if unknown:
        named = " ".join(unknown[:NAMED_ARGUMENTS])
        more = f" ... ({len(unknown)} in all)" if len(unknown) > NAMED_ARGUMENTS else ""
        args._parser.error(f"unrecognized arguments: {named}{more}")
    args._argv = argv
    return args


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


class Interrupted(KeyboardInterrupt):
    """A termination signal (SIGTERM, SIGHUP) received: the command unwinds as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: Signals that end a command as Ctrl-C does.
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    for other in TERMINATING_SIGNALS:  # a repeat must not break the clean-up that follows
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


class TorchGuard:
    """An import hook that checks the address-space limit before ``torch`` is loaded (below
    :data:`~cryounet.limits.TORCH_ADDRESS_SPACE` its import aborts the process); it finds nothing
    itself, so the import then goes on as usual."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "torch":
            check_room_for_torch()
        return None


@contextlib.contextmanager
def process_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Interrupted`, SIGXFSZ is ignored (a write over the
    file-size limit fails with EFBIG); the previous handlers come back afterwards. Nothing is
    changed outside the main thread (signal handlers can only be set there)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = {**{s: _interrupt for s in TERMINATING_SIGNALS}, signal.SIGXFSZ: signal.SIG_IGN}
    previous = {s: signal.signal(s, handler) for s, handler in wanted.items()}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def interrupted(prefix: str, exc: KeyboardInterrupt) -> int:
    """The one line and exit code (128 + the signal number) of an interrupted command."""
    signum = getattr(exc, "signum", signal.SIGINT)
    print(f"{prefix}: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
    return 128 + int(signum)


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the file(s) and the system's words."""
    special = describe_os_failure(exc)
    if special is not None:
        return special
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
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging("--quiet" in argv, "--verbose" in argv)  # parsing may log (a file taken for its folder)
    try:
        args = parse_command_line(argv)
    except ModuleNotFoundError as exc:
        if not is_engine_module(exc):
            raise
        return report_missing_engine(exc, "cryounet")
    setup_logging(args.quiet, args.verbose)
    logger.debug("allocator settings: %s", ", ".join(
        f"{k}={os.environ.get(k, 'glibc default')}" for k in MALLOC_SETTINGS))
    prefix = f"cryounet {args.command}"
    guard = TorchGuard()
    sys.meta_path.insert(0, guard)
    try:
        with process_signals():
            return run_command(args, prefix)
    finally:
        sys.meta_path.remove(guard)


def run_command(args: argparse.Namespace, prefix: str) -> int:
    """Run the parsed command at the error boundary: every failure ends as one line."""
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
    except KeyboardInterrupt as exc:
        return interrupted(prefix, exc)
    except Exception as exc:  # noqa: BLE001 - the boundary of the process: report, never hide
        if isinstance(exc, ModuleNotFoundError) and is_engine_module(exc):
            return report_missing_engine(exc, prefix)
        if type(exc).__name__ == "OutOfMemoryError":  # torch's GPU out of memory (torch is not imported here)
            print(f"{prefix}: error: the GPU is {OUT_OF_MEMORY}", file=sys.stderr)
            return EXIT_USER_ERROR
        known = describe_failure(exc)
        if known is not None:
            print(f"{prefix}: error: {known}", file=sys.stderr)
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
