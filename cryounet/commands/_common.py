"""Argument helpers shared by the sub-commands."""
from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Callable

from cryounet.commands._types import checked
from cryounet.config import MAX_SEED
from cryounet.errors import CryoUNetError
from cryounet.io.coordinates import is_folder_index
from cryounet.io.folders import folder_of
from cryounet.io.micrographs import MICROGRAPH_SUFFIXES, check_diameter
from cryounet.io.model_folder import GENERAL_NAME, resolve_model

MICROGRAPHS_HELP = (f"micrographs: folders (all {', '.join('*' + s for s in MICROGRAPH_SUFFIXES)}), files, "
                    "globs (quote them) or @LIST.txt files with one path per line (a relative path "
                    "is relative to the list file's folder)")


#: How a model option names the general model (appended to its help).
GENERAL_HELP = (f"'{GENERAL_NAME}' names the general model shipped with CryoUNet (a folder of that name: "
                f"./{GENERAL_NAME})")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (GPU if present, else CPU, logged), cpu, cuda, cuda:N or a GPU "
                             "index N; asking for a GPU that is absent is an error")
    parser.add_argument("--threads", type=non_negative_int, default=0, metavar="N",
                        help="CPU threads (default 0: every CPU this process may use); never more "
                             "than the CPUs its affinity and cgroup quota allow (capped, said in the "
                             "log), and refused when the threads do not fit under an address-space "
                             "limit (ulimit -v, h_vmem); a queue job or a shared node should give what "
                             "it was allotted")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on an interactive terminal, unless --quiet (logs keep the per-epoch lines)."""
    return (not getattr(args, "quiet", False) and sys.stderr.isatty()
            and logging.getLogger("cryounet").level <= logging.INFO)


def add_overwrite(parser: argparse.ArgumentParser, what: str = "the output folder") -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help=f"write into {what} although it holds files: the outputs of an earlier run "
                             "are removed first (without it, a folder that is not empty is refused)")


# ---------------------------------------------------------------- checked argument types
def _number(kind: type, check: Callable[[float], bool], requirement: str) -> Callable[[str], float]:
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {requirement}, got {text!r}") from None
        if not (math.isfinite(value) and check(value)):
            raise argparse.ArgumentTypeError(f"expected {requirement}, got {text!r}")
        return value
    convert.__name__ = requirement  # argparse names the type in its messages
    return convert


finite_number = _number(float, lambda v: True, "a finite number")
non_negative = _number(float, lambda v: v >= 0, "a number >= 0")
positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1")
non_negative_int = _number(int, lambda v: v >= 0, "a whole number >= 0")
probability = _number(float, lambda v: 0 <= v <= 1, "a probability from 0 to 1")
seed = _number(int, lambda v: 0 <= v <= MAX_SEED, f"a random seed, a whole number from 0 to {MAX_SEED}")


#: A particle diameter in pixels (:func:`check_diameter`).
diameter = checked(lambda text: check_diameter(text, "the diameter"), "diameter")
#: A model folder: a path, or ``general`` for the shipped general model.
model_folder = checked(resolve_model, "model folder")


def _folder(what: str) -> Callable[[str], Path]:
    """argparse type of a folder of coordinate files: its ``coordinates.star`` index stands for it;
    another file is refused, naming the folder to give (:func:`folder_of`)."""
    def convert(text: str) -> Path:
        try:
            return folder_of(text, what, is_folder_index)
        except CryoUNetError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


picks_folder = _folder("picks folder")
coordinates_folder = _folder("coordinates folder")
truth_folder = _folder("ground-truth folder")


def shard(text: str) -> tuple[int, int]:
    """argparse type of ``K/N``: shard K (1-based) of N."""
    k, sep, n = text.partition("/")
    try:
        k_i, n_i = int(k), int(n)
    except ValueError:
        k_i = n_i = 0
    if not sep or not 1 <= k_i <= n_i:
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N (shard K of N), got {text!r}")
    return k_i, n_i
