"""``cryounet diameter``: estimate the particle diameter (px) from micrographs and, optionally, picks."""
from __future__ import annotations

import argparse
from pathlib import Path

from cryounet.commands._common import MICROGRAPHS_HELP, add_overwrite, coordinates_folder, positive_int

name = "diameter"
help = ("estimate the particle diameter in pixels from the micrographs (blob scale) and, with "
        "--coordinates, from the picks (box sizes, spacing, averaged profile)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--micrographs", required=True, nargs="+", help=MICROGRAPHS_HELP)
    parser.add_argument("--coordinates", type=coordinates_folder,
                        help="folder of coordinate files named like the micrographs (optional)")
    parser.add_argument("--max-micrographs", type=positive_int, default=6, metavar="N",
                        help="micrographs the image methods read (default 6; the spacing uses every "
                             "coordinate file)")
    parser.add_argument("--json", type=Path, help="also write the estimate and each method's figures "
                                                  "to this JSON file")
    add_overwrite(parser, "an existing --json file")


def main(args: argparse.Namespace) -> int:
    from cryounet.analysis.diameter_inputs import estimate_diameter
    from cryounet.io.atomic import write_json
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.io.outputs import check_output_file

    if args.json:
        check_output_file(args.json, args.overwrite)
    estimate = estimate_diameter(expand_micrographs(args.micrographs), args.coordinates,
                                 max_images=args.max_micrographs)
    print(estimate.report())
    if args.json:
        write_json(args.json, estimate.as_dict())
    return 0
