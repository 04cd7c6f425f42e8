"""``cryounet merge``: merge the pick folders of the shards of one picking into one."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cryounet.commands._common import add_overwrite, picks_folder
from cryounet.errors import CryoUNetError

name = "merge"
help = "merge finished pick folders (the shards of pick --shard K/N) into one folder and index"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--picks", nargs="+", required=True, type=picks_folder,
                        help="pick folders to merge (each finished; no micrograph in two of them)")
    parser.add_argument("--output", required=True, type=Path,
                        help="folder for every <micrograph>.star, one coordinates.star and skipped.json")
    add_overwrite(parser)


def main(args: argparse.Namespace) -> int:
    from cryounet.io.outputs import claim_output_folder
    from cryounet.io.picks_folder import PICK_PATTERNS, pick_names, plan_merge, write_merge

    for folder in args.picks:
        if args.output.exists() and folder.resolve() == args.output.resolve():
            raise CryoUNetError(f"{folder}: the output folder is one of the folders to merge; merge "
                                "into a new folder")
    plan = plan_merge(args.picks)  # every check before the output folder is claimed
    folder = claim_output_folder(args.output, "merge", overwrite=args.overwrite, patterns=PICK_PATTERNS,
                                 writes=pick_names([f"{stem}.star" for _, stem, _ in plan.files]),
                                 inputs=args.picks)
    write_merge(plan, args.output)
    folder.complete()
    logger.info("merged %d folder(s): %d micrograph(s) with picks%s; index %s", len(args.picks),
                len(plan.files), f", {len(plan.skipped)} skipped" if plan.skipped else "",
                args.output / "coordinates.star")
    return 0
