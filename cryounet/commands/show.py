"""``cryounet show``: draw picks on micrographs as PNG pictures, to check them by eye."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cryounet.commands._common import MICROGRAPHS_HELP, add_overwrite, diameter, picks_folder, positive_int

name = "show"
help = ("draw picks on micrographs as PNG pictures (low-pass filtered to the particle scale, "
        "contrast-stretched, circles of the diameter coloured by score)")
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--picks", required=True, type=picks_folder, help="folder of pick files (any format)")
    parser.add_argument("--micrographs", nargs="+", required=True, help=MICROGRAPHS_HELP)
    parser.add_argument("--diameter", type=diameter,
                        help="particle diameter in pixels (circle size and the low-pass scale; default: "
                             "the one the picks were made at, which CryoUNet's pick folders record)")
    parser.add_argument("--count", type=positive_int, default=5, metavar="N",
                        help="draw the first N micrographs (default 5)")
    parser.add_argument("--output", required=True, type=Path, help="folder for <micrograph>_picks.png")
    add_overwrite(parser)


def main(args: argparse.Namespace) -> int:
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.io.outputs import claim_output_folder
    from cryounet.io.picks_folder import check_picks_folder
    from cryounet.previews import PREVIEW_PATTERNS, picks_diameter, write_pick_previews
    from cryounet.render import require_matplotlib

    require_matplotlib()
    check_picks_folder(args.picks)
    micrographs = expand_micrographs(args.micrographs)
    folder = claim_output_folder(args.output, "show", overwrite=args.overwrite, patterns=PREVIEW_PATTERNS)
    written = write_pick_previews(micrographs, args.picks, picks_diameter(args.picks, args.diameter), args.output,
                                  args.count)
    folder.complete()
    logger.info("wrote %d picture(s) of picks into %s", len(written), args.output)
    return 0
