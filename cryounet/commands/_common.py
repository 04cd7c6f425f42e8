"""Argument helpers shared by the sub-commands."""
from __future__ import annotations

import argparse
import logging
import sys

from cryounet.io.micrographs import MICROGRAPH_SUFFIXES

MICROGRAPHS_HELP = (f"micrographs: folders (all {', '.join('*' + s for s in MICROGRAPH_SUFFIXES)}), files, "
                    "globs (quote them) or @LIST.txt files with one path per line")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (GPU if present, else CPU, logged), cpu, cuda, cuda:N or a GPU "
                             "index N; asking for a GPU that is absent is an error")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on an interactive terminal, unless --quiet (logs keep the per-epoch lines)."""
    return (not getattr(args, "quiet", False) and sys.stderr.isatty()
            and logging.getLogger("cryounet").level <= logging.INFO)
