"""``cryounet postprocess``: re-threshold and filter existing picks (cheap, no network)."""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from cryounet.commands._common import (MICROGRAPHS_HELP, add_overwrite, diameter, finite_number, non_negative,
                                      non_negative_int, picks_folder)

name = "postprocess"
help = ("filter pick files: score threshold, non-maximum suppression distance, distance to the "
        "edge, maximum particles per micrograph")
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--picks", required=True, type=picks_folder, help="folder of pick files (any format)")
    parser.add_argument("--output", required=True, type=Path, help="folder for the filtered STAR files")
    parser.add_argument("--diameter", required=True, type=diameter, help="particle diameter in pixels")
    parser.add_argument("--threshold", type=finite_number, help="keep picks with at least this score")
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
    from cryounet.errors import CryoUNetError
    from cryounet.io.coordinates import INDEX_NAME, list_coordinate_files, read_coordinates, read_star_index
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.io.mrc import micrograph_shape
    from cryounet.io.outputs import claim_output_folder, input_paths
    from cryounet.io.picks_folder import (PICK_PATTERNS, check_picks_folder, check_stems, pick_names,
                                          postprocessed_record, read_pick_record, warn_if_empty, write_picks)
    from cryounet.postprocess.filters import FilterConfig, filter_picks

    check_picks_folder(args.picks)
    if args.output.resolve() == args.picks.resolve():
        raise CryoUNetError("--output must differ from --picks (the input files would be overwritten)")
    files = list_coordinate_files(args.picks)
    if not files:
        raise CryoUNetError(f"{args.picks}: no pick files")
    check_stems(list(files.values()))
    mics = {}
    if args.micrographs:
        mics = {p.stem: p for p in expand_micrographs(args.micrographs)}
    elif args.edge_distance > 0:
        raise CryoUNetError("--edge-distance needs --micrographs (for the micrograph sizes)")
    # Micrograph names for the output index: --micrographs, else the input folder's index.
    index = read_star_index(args.picks / INDEX_NAME) if (args.picks / INDEX_NAME).is_file() else {}
    cfg = FilterConfig(args.threshold, args.nms_distance, args.edge_distance, args.max_per_micrograph)
    results, picked, before = [], {}, 0
    for stem, path in files.items():
        picks = read_coordinates(path)
        before += len(picks)
        mic = mics.get(stem)
        if args.edge_distance > 0 and mic is None:
            raise CryoUNetError(f"{path}: no micrograph named {stem} among --micrographs")
        shape = micrograph_shape(mic) if mic is not None else None
        kept = filter_picks(picks, shape, cfg)
        name = str(mic) if mic is not None else index.get(path.stem, f"{stem}.mrc")
        results.append((stem, name, kept))
        picked[stem] = len(kept)
    folder = claim_output_folder(args.output, "postprocess", overwrite=args.overwrite, patterns=PICK_PATTERNS,
                                 writes=pick_names([Path(f"{stem}.star") for stem in files]),
                                 inputs=input_paths(args.picks, args.micrographs, list(mics.values())))
    write_picks(args.output, results, postprocessed_record(read_pick_record(args.picks), dataclasses.asdict(cfg),
                                                           len(results)))
    folder.complete()
    warn_if_empty(picked)
    logger.info("kept %d of %d picks on %d micrograph(s); STAR files in %s",
                sum(picked.values()), before, len(files), args.output)
    return 0
