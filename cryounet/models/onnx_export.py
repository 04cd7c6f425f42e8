"""Writing a model folder's network as ``model.onnx``, for picking on the CPU without PyTorch.

The graph is a derived copy of ``model.safetensors`` (which stays the model): batch norms folded
into the convolutions, any batch size and image size that is a multiple of the network's pooling
factor. It carries the SHA-256 of the weights it was made from and the network section of the
folder's config.json (``io.model_folder.network_signature``); its own SHA-256 is recorded in that
config.json (a graph that does not match is not used). It is only written after ONNX
Runtime reproduced PyTorch's output on a second, differently shaped input; an architecture that
does not export (the bottleneck's fused self-attention) gets no ``model.onnx`` and picks with
PyTorch.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cryounet.errors import CryoUNetError
from cryounet.io.atomic import atomic_path
from cryounet.io.model_folder import (ONNX_MULTIPLE_KEY, ONNX_NAME, ONNX_NETWORK_KEY, ONNX_WEIGHTS_KEY,
                                      network_signature, read_model_info, record_digests, weights_digest)
from cryounet.models.fusion import fold_batch_norms

logger = logging.getLogger(__name__)

#: ONNX operator set of the graphs (ONNX Runtime 1.17 and later run it).
OPSET = 17
#: Largest difference in logits between ONNX Runtime and PyTorch accepted at export (float32
#: rounding gives about 1e-6).
TOLERANCE = 1e-3
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def export_onnx(network: nn.Module, folder: str | os.PathLike[str]) -> str | None:
    """Write ``folder/model.onnx`` for the weights in ``folder/model.safetensors`` (which
    ``network`` holds) and return None; or return why not (also logged, and no ``model.onnx`` is
    left): the exporter or ONNX Runtime is not installed, or the graph does not reproduce the
    network."""
    folder = Path(folder)
    target = folder / ONNX_NAME
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime
    except ImportError as exc:
        return _without(target, f"{exc.name} is not installed")
    graph = copy.deepcopy(network).cpu().float().eval()
    graph.to(memory_format=torch.contiguous_format)
    fold_batch_norms(graph)
    m = int(getattr(graph, "multiple", 1))
    try:
        metadata = {ONNX_WEIGHTS_KEY: weights_digest(folder), ONNX_MULTIPLE_KEY: str(m),
                    ONNX_NETWORK_KEY: network_signature(read_model_info(folder, allow_incomplete=True))}
        data = _trace(graph, m, metadata)
        problem = _reproduces(graph, data, m, onnxruntime)
    except Exception as exc:  # the exporter's errors have no common type
        problem = f"the exporter failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    if problem:
        return _without(target, problem)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    record_digests(folder, [ONNX_NAME])  # the graph is used only while its bytes match this record
    logger.debug("wrote %s (%.1f MB)", target, len(data) / 1e6)
    return None


def _without(target: Path, reason: str) -> str:
    with contextlib.suppress(FileNotFoundError):
        target.unlink()  # a graph of earlier weights must not stay beside these
    with contextlib.suppress(CryoUNetError):
        record_digests(target.parent, [ONNX_NAME])  # nor its record
    logger.info("no %s in %s (%s): this model picks with PyTorch", ONNX_NAME, target.parent, reason)
    return reason


def _trace(graph: nn.Module, multiple: int, metadata: dict[str, str]) -> bytes:
    """The ONNX bytes of ``graph`` (dynamic batch and image sides), with ``metadata``."""
    import onnx

    buffer = io.BytesIO()
    example = torch.zeros(1, 1, 4 * multiple, 4 * multiple)
    axes = {0: "batch", 2: "height", 3: "width"}
    # On a failure the exporter prints the whole traced graph to stdout; the reason is logged instead.
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        # The TorchScript exporter is deprecated in favour of one that needs onnxscript, and it
        # warns about the network's padding branch, which is traced out (inputs are padded before).
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes})
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def _reproduces(graph: nn.Module, data: bytes, multiple: int, onnxruntime) -> str | None:
    """None when ONNX Runtime's logits match PyTorch's on a batch of 2 of another shape than the
    traced one; else what differs."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4  # its errors become our reason, not a red line on stderr
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 1, 6 * multiple, 9 * multiple))
                         .astype(np.float32))
    with torch.no_grad():
        expected = graph(x).numpy()
    try:
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    except Exception as exc:  # onnxruntime's own exception types
        return f"ONNX Runtime cannot run it on other sizes ({str(exc).splitlines()[0][:200]})"
    if got.shape != expected.shape:
        return f"ONNX Runtime gives shape {got.shape} instead of {expected.shape}"
    difference = float(np.max(np.abs(got - expected)))
    if not difference <= TOLERANCE:
        return f"ONNX Runtime's logits differ from PyTorch's by {difference:.3g}"
    return None
