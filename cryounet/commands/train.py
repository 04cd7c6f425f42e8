"""``cryounet train``: learn a picker from micrographs and their coordinate files."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cryounet.commands._common import (GENERAL_HELP, MICROGRAPHS_HELP, add_device, add_overwrite,
                                      coordinates_folder, diameter, model_folder, positive_int, seed, show_progress)
from cryounet.io.model_folder import AUTO_INIT, AUTO_INIT_BELOW

name = "train"
help = "train a model from micrographs and picks (STAR, BOX or CSV/TXT, matched by file stem)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--micrographs", nargs="+", help=f"training {MICROGRAPHS_HELP}")
    parser.add_argument("--coordinates", type=coordinates_folder,
                        help="folder of coordinate files named like the micrographs")
    parser.add_argument("--diameter", type=diameter,
                        help="particle diameter in pixels of the micrographs, not Angstrom ('cryounet "
                             "diameter' estimates it)")
    parser.add_argument("--diameter-check", choices=("error", "warn", "off"), default="error",
                        help="a diameter far from what the picks and micrographs suggest (see 'cryounet "
                             "diameter') is an error (default), a warning, or not checked (off)")
    parser.add_argument("--datasets", type=Path,
                        help="JSON list of datasets to train on together, instead of --micrographs/"
                             "--coordinates/--diameter: [{\"micrographs\": [...], \"coordinates\": "
                             "DIR, \"diameter\": PX, \"valid_micrographs\": [...], "
                             "\"valid_coordinates\": DIR}, ...] (validation keys optional; "
                             "\"validate\": false instead makes a dataset training-only, none of it "
                             "held out for validation or calibration)")
    parser.add_argument("--output", required=True, type=Path, help="model folder to write")
    parser.add_argument("--valid-micrographs", nargs="+", help=f"validation {MICROGRAPHS_HELP}")
    parser.add_argument("--valid-coordinates", type=coordinates_folder, help="folder of validation coordinates")
    parser.add_argument("--epochs", type=positive_int, help="maximum epochs (overrides the config)")
    parser.add_argument("--seed", type=seed, help="random seed (overrides the config)")
    parser.add_argument("--config", type=Path, help="JSON config file (see cryounet.config)")
    parser.add_argument("--init", type=_start,
                        help=f"start from the weights of this model folder ({GENERAL_HELP}), or "
                             f"'{AUTO_INIT}': the general model when fewer than {AUTO_INIT_BELOW} micrographs are "
                             "labelled, else random weights (default: random weights)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from OUTPUT/checkpoint.pt")
    add_overwrite(parser, "the model folder")
    add_device(parser)
    parser.add_argument("--devices", metavar="LIST",
                        help="data-parallel training, one process per device: GPU indices (0,1 or "
                             "\"0 1\"; NCCL) or cpu entries (cpu,cpu; gloo), launched with torchrun on "
                             "this node; replaces --device. Under a torchrun started by a job script "
                             "(any number of nodes), each process takes its entry by local rank")


def _start(text: str) -> Path | str:
    """argparse type of ``--init``: a model folder, ``general`` or ``auto``."""
    return AUTO_INIT if text == AUTO_INIT else model_folder(text)


def main(args: argparse.Namespace) -> int:
    from cryounet.io.datasets import datasets_from_options
    from cryounet.training.run import TrainRequest, run_training

    datasets = datasets_from_options(args.micrographs, args.coordinates, args.diameter, args.valid_micrographs,
                                     args.valid_coordinates, args.datasets)
    return run_training(TrainRequest(
        datasets, args.output, config=args.config, datasets_file=args.datasets, init=args.init, epochs=args.epochs,
        seed=args.seed, resume=args.resume, overwrite=args.overwrite, device=args.device, devices=args.devices,
        threads=args.threads, diameter_check=args.diameter_check, progress=show_progress(args), argv=args._argv))
