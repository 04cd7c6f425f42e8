"""``cryounet evaluate``: precision, recall, F1 and AP of picks against ground truth."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from cryounet.commands._common import add_overwrite, diameter, finite_number

name = "evaluate"
help = ("score picks against ground truth: one-to-one matching within 0.5 diameter; precision, "
        "recall, F1, best F1 over thresholds, AP")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--picks", required=True, type=Path, help="folder of pick files")
    parser.add_argument("--truth", required=True, type=Path, help="folder of ground-truth files")
    parser.add_argument("--diameter", required=True, type=diameter, help="particle diameter in pixels")
    parser.add_argument("--threshold", type=finite_number,
                        help="only count picks with at least this score (default: all picks)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    add_overwrite(parser, "an existing --json file")


def main(args: argparse.Namespace) -> int:
    from cryounet.evaluation.folders import evaluate_folders
    from cryounet.io.atomic import write_json
    from cryounet.io.outputs import check_output_file

    if args.json:
        check_output_file(args.json, args.overwrite)
    result = evaluate_folders(args.picks, args.truth, args.diameter, args.threshold)
    print(result.line())
    if args.json:
        write_json(args.json, dataclasses.asdict(result))
    return 0


