"""``cryounet export``: write ``model.onnx`` into model folders trained with CryoUNet 0.4 or earlier,
so that they pick on the CPU with ONNX Runtime (``pick.backend``); training now writes it itself."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

name = "export"
help = "write model.onnx (fast CPU picking without PyTorch) into model folders trained with 0.4 or earlier"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, type=Path,
                        help="model folder (repeatable); its calibration fold models are done too")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a model.onnx that does not match the folder (other weights or "
                             "network, or unreadable; without it such a file is refused, and one that "
                             "matches is left as it is)")


def main(args: argparse.Namespace) -> int:
    from cryounet.errors import CryoUNetError
    from cryounet.inference.onnx_picker import OnnxUnusable, load_onnx_model, runtime_version
    from cryounet.io.model_folder import ONNX_NAME, check_model_folder, picking_members
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
        try:
            load_onnx_model(folder, threads=1)
        except OnnxUnusable as exc:
            if (folder / ONNX_NAME).exists() and not args.overwrite:
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
