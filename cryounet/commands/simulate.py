"""``cryounet simulate``: write a synthetic data set (micrographs, coordinates, meta.json)."""
from __future__ import annotations

import argparse
import logging

from cryounet.commands._common import (add_overwrite, diameter, non_negative, non_negative_int, positive_int,
                                       probability, seed)

logger = logging.getLogger(__name__)

#: What ``simulate`` writes (the new files of these kinds make its manifest, :mod:`cryounet.io.outputs`).
SIMULATED_PATTERNS = ("mic_*.mrc", "mic_*.star", "meta.json")

name = "simulate"
help = "write synthetic micrographs with known particle coordinates (for demos and tests)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``parser``."""
    parser.add_argument("--output", metavar="DIR", required=True,
                        help="folder for mic_NNN.mrc, mic_NNN.star and meta.json")
    parser.add_argument("--micrographs", metavar="N", type=positive_int, default=6,
                        help="number of micrographs (default 6)")
    parser.add_argument("--size", metavar="PX", type=positive_int, default=None,
                        help="side of the square micrographs in pixels (default 512)")
    parser.add_argument("--diameter", metavar="PX", type=diameter, default=None,
                        help="particle diameter in pixels (default 32)")
    parser.add_argument("--particles", metavar="N", type=non_negative_int, default=None,
                        help="particles per micrograph (default 40; fewer if they do not fit; 0 writes "
                             "particle-free micrographs with empty coordinate files)")
    parser.add_argument("--snr", metavar="F", type=float, default=None,
                        help="signal variance / noise variance (default 0.05)")
    parser.add_argument("--pixel-size", metavar="A", type=float, default=None,
                        help="pixel size in Angstrom (default 2.0)")
    parser.add_argument("--carbon-probability", metavar="P", type=probability, default=None,
                        help="chance that a micrograph shows the edge of a hole in the carbon film: a "
                             "darker, textured region behind a gently curved edge, with no particles "
                             "(default 0)")
    parser.add_argument("--carbon-darkness", metavar="F", type=non_negative, default=None,
                        help="how much darker the carbon is, in noise standard deviations (default 0.8)")
    parser.add_argument("--contamination", metavar=("MIN", "MAX"), nargs=2, type=non_negative_int,
                        default=None,
                        help="contamination blobs per micrograph (ice crystals, ethane), drawn from MIN "
                             "to MAX: dark, irregular, 1-6 diameters across, not labelled, no "
                             "particles on them (default 0 0)")
    parser.add_argument("--contamination-darkness", metavar="F", type=non_negative, default=None,
                        help="the contamination's darkness, in noise standard deviations (default 4)")
    parser.add_argument("--shape", choices=("blob", "shell"), default=None,
                        help="the protein: a solid blob, or a hollow shell whose projections are rings "
                             "(as apoferritin's) (default blob)")
    parser.add_argument("--seed", metavar="N", type=seed, default=None,
                        help="random seed; the same seed gives identical data (default 0)")
    add_overwrite(parser)


def main(args: argparse.Namespace) -> int:
    """Build the configuration from ``args``, write the data set and log a summary."""
    import json
    from pathlib import Path

    from cryounet.io.outputs import claim_output_folder
    from cryounet.simulate import SimulationConfig, simulate_dataset, simulated_names

    overrides = {
        "n_micrographs": args.micrographs,
        "size": args.size,
        "diameter_px": args.diameter,
        "particles_per_micrograph": args.particles,
        "snr": args.snr,
        "pixel_size": args.pixel_size,
        "carbon_probability": args.carbon_probability,
        "carbon_darkness": args.carbon_darkness,
        "contamination_range": tuple(args.contamination) if args.contamination else None,
        "contamination_darkness": args.contamination_darkness,
        "shape": args.shape,
        "seed": args.seed,
    }
    cfg = SimulationConfig(**{key: value for key, value in overrides.items() if value is not None})
    folder = claim_output_folder(args.output, "simulate", overwrite=args.overwrite,
                                 patterns=SIMULATED_PATTERNS, writes=simulated_names(cfg))
    paths = simulate_dataset(cfg, args.output)
    folder.complete()
    meta = json.loads((Path(args.output) / "meta.json").read_text(encoding="utf-8"))
    total = sum(meta.get("particles", []))
    logger.info(
        "wrote %d micrographs of %d px with %d particles (%s, diameter %.1f px, SNR %g, seed %d; %d with "
        "a carbon edge, %d contamination blobs) to %s", len(paths), cfg.size, total, cfg.shape,
        cfg.diameter_px, cfg.snr, cfg.seed, sum(meta.get("carbon", [])),
        sum(meta.get("contaminants", [])), args.output,
    )
    return 0
