"""``cryounet evaluate``: precision, recall, F1 and AP of picks against ground truth."""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from cryounet.commands._common import (MICROGRAPHS_HELP, add_overwrite, diameter, finite_number, picks_folder,
                                      positive_int, truth_folder)

name = "evaluate"
help = ("score picks against ground truth: one-to-one matching within 0.5 diameter (the radius is "
        "checked against the truth's spacing); precision, recall, F1, best F1 (tuned on this truth), AP")
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--picks", required=True, type=picks_folder, help="folder of pick files")
    parser.add_argument("--truth", required=True, type=truth_folder, help="folder of ground-truth files")
    parser.add_argument("--diameter", required=True, type=diameter,
                        help="particle diameter in pixels of these micrographs: a pick matches a truth "
                             "centre closer than half of it")
    parser.add_argument("--threshold", type=finite_number,
                        help="count only picks with at least this score, in every figure (precision, "
                             "recall, F1, best F1 and AP; default: all picks)")
    parser.add_argument("--allow-large-radius", action="store_true",
                        help="score even when the matching radius is wider than the median distance "
                             "between neighbouring truth centres (refused by default: inflated scores)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--plot", type=Path, metavar="DIR",
                        help="write pictures into DIR: the precision-recall curve (pr_curve.png) and "
                             "true/false/missed picks drawn on micrographs (<micrograph>_evaluated.png)")
    parser.add_argument("--plot-count", type=positive_int, default=3, metavar="N",
                        help="with --plot, draw the first N micrographs (default 3)")
    parser.add_argument("--micrographs", nargs="+",
                        help=f"{MICROGRAPHS_HELP}; with --plot, the micrographs to draw on (default: those "
                             "the picks folder's coordinates.star names, else same-name files beside the truth)")
    add_overwrite(parser, "an existing --json file or --plot folder")


def main(args: argparse.Namespace) -> int:
    from cryounet.evaluation.folders import load_evaluation_input, score
    from cryounet.io.atomic import write_json
    from cryounet.io.outputs import check_output_file

    if args.json:
        check_output_file(args.json, args.overwrite)
    data = load_evaluation_input(args.picks, args.truth)
    result = score(data, args.diameter, args.threshold, args.allow_large_radius)
    print("\n".join(result.lines()))
    if args.json:
        write_json(args.json, dataclasses.asdict(result))
    if args.plot:
        from cryounet.evaluation.pictures import write_evaluation_pictures

        written = write_evaluation_pictures(args.plot, data, result, args.picks, args.truth,
                                            args.micrographs, args.plot_count, args.overwrite)
        logger.info("wrote %d picture(s) into %s", len(written), args.plot)
    return 0
