"""``cryounet postprocess``: re-threshold and filter existing picks (cheap, no network)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cryounet.commands._common import (MICROGRAPHS_HELP, add_overwrite, diameter, non_negative, non_negative_int,
                                      picks_folder)
from cryounet.commands._types import threshold_or_rule

name = "postprocess"
help = ("filter pick files: score threshold, non-maximum suppression distance, distance to the "
        "edge, maximum particles per micrograph")
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--picks", required=True, type=picks_folder, help="folder of pick files (any format)")
    parser.add_argument("--output", required=True, type=Path, help="folder for the filtered STAR files")
    parser.add_argument("--diameter", required=True, type=diameter, help="particle diameter in pixels")
    parser.add_argument("--threshold", type=threshold_or_rule,
                        help="keep picks with at least this score, or 'otsu': the threshold read from the "
                             "scores of the picks themselves (Otsu's split on the logit scale; for a model "
                             "that never saw the protein, e.g. the general model; pick with --threshold "
                             "0.0025 first so that the low-scoring candidates are there too)")
    parser.add_argument("--nms-distance", type=non_negative,
                        help="minimum distance between picks in pixels (default: none)")
    parser.add_argument("--edge-distance", type=non_negative, default=0.0,
                        help="drop picks closer than this to an edge, in pixels (needs --micrographs)")
    parser.add_argument("--max-per-micrograph", type=non_negative_int, default=0,
                        help="keep at most this many best-scoring picks per micrograph (0: no limit)")
    parser.add_argument("--micrographs", nargs="+",
                        help=f"{MICROGRAPHS_HELP}; gives the shapes for the edge filter")
    add_overwrite(parser)


def main(args: argparse.Namespace) -> int:
    from cryounet.postprocess.run import PostprocessRequest, postprocess

    postprocess(PostprocessRequest(args.picks, args.output, args.threshold, args.nms_distance, args.edge_distance,
                                   args.max_per_micrograph, args.micrographs, args.overwrite))
    return 0
