"""The ``cryounet`` command line: one sub-command per module in :mod:`cryounet.commands`.

Each command module exposes ``name``, ``help``, ``add_arguments(parser)`` and ``main(args) -> int``.
User errors (:class:`~cryounet.errors.CryoUNetError`) are printed as one ``error:`` line and give
exit code 2; anything else is a bug and keeps its traceback (exit code 1).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from cryounet import __version__
from cryounet.errors import CryoUNetError

COMMANDS = ("train", "refine", "pick", "evaluate", "postprocess", "simulate", "demo")

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    try:
        return int(args._main(args) or 0)
    except CryoUNetError as exc:
        print(f"cryounet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cryounet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
