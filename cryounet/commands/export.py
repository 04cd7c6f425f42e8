"""``cryounet export``: write ``model.onnx`` into model folders trained with CryoUNet 0.4 or earlier,
so that they pick on the CPU with ONNX Runtime (``pick.backend``); training now writes it itself.
Records the SHA-256 of the graph (and of the weights, in a folder that records none) in config.json."""
from __future__ import annotations

import argparse
import logging

from cryounet.commands._common import GENERAL_HELP, model_folder

name = "export"
help = ("write model.onnx (fast CPU picking without PyTorch) into model folders that lack it or record no "
        "SHA-256 of it")
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, type=model_folder,
                        help=f"model folder (repeatable; {GENERAL_HELP}); its calibration fold models are "
                             "done too")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a model.onnx that does not match the folder (its recorded SHA-256, "
                             "other weights or network, or unreadable; without it such a file is refused, "
                             "one that matches is left as it is, and one the folder records no SHA-256 "
                             "of is written again)")


def main(args: argparse.Namespace) -> int:
    from cryounet.errors import CryoUNetError
    from cryounet.inference.onnx_picker import OnnxUnusable, load_onnx_model, runtime_version
    from cryounet.io.model_folder import (ONNX_NAME, WEIGHTS_NAME, check_model_folder, picking_members,
                                          read_model_info, record_digests)
    from cryounet.models.onnx_export import export_onnx
    from cryounet.models.weights import load_model

    if runtime_version() is None:
        raise CryoUNetError("ONNX Runtime is not installed (pip install onnxruntime): nothing could use "
                            f"a {ONNX_NAME}")
    folders = picking_members(args.model, folds=True)
    for folder in folders:  # every check before anything is written
        problems = check_model_folder(folder)
        if problems:
            raise CryoUNetError("; ".join(problems))
    written = 0
    for folder in folders:
        if WEIGHTS_NAME not in read_model_info(folder).sha256:
            record_digests(folder, [WEIGHTS_NAME])  # a folder of an earlier CryoUNet: checked from now on
            logger.info("%s: recorded the SHA-256 of %s", folder, WEIGHTS_NAME)
        try:
            load_onnx_model(folder, threads=1)
        except OnnxUnusable as exc:
            if (folder / ONNX_NAME).exists() and exc.anomaly and not args.overwrite:
                raise CryoUNetError(f"{exc.reason}; pass --overwrite to replace it") from None
        else:
            logger.info("%s: %s is up to date", folder, ONNX_NAME)
            continue
        problem = export_onnx(load_model(folder).network, folder)
        if problem is not None:
            raise CryoUNetError(f"{folder}: no {ONNX_NAME} written: {problem}")
        logger.info("%s: wrote %s", folder, ONNX_NAME)
        written += 1
    logger.info("%d of %d model folder(s) exported", written, len(folders))
    return 0
