"""Which picker picks: the device first, then the pick settings composed once for it, then the
backend that runs the networks (ONNX Runtime on the CPU when every network has a matching graph,
else PyTorch, the reason logged).

Nothing here imports torch unless PyTorch picks or the device cannot be known without it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryounet.config import PickConfig, cpu_pick_settings, load_config
from cryounet.device_probe import cuda_impossible
from cryounet.errors import CryoUNetError
from cryounet.inference.picking import BasePicker
from cryounet.io.model_folder import picking_members, read_model_info

logger = logging.getLogger(__name__)

#: Pick settings the command line may give (None: not given).
OPTIONS = ("batch_size", "tta", "precision", "workers", "folds", "backend")


@dataclass
class PickRequest:
    """What to pick with, as the command line gives it.

    Attributes:
        models: the model folders (several: an ensemble).
        device: ``--device`` (auto, cpu, cuda, cuda:N, N).
        threads: ``--threads`` (0: every CPU this process may use).
        config: a JSON file whose ``pick`` section overrides the models' pick settings.
        options: settings of :data:`OPTIONS` given on the command line.
        diameter: the particle diameter to pick at (px), None for the models' own.
    """

    models: list[Path]
    device: str | None = "auto"
    threads: int = 0
    config: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    diameter: float | None = None

    @property
    def device_spec(self) -> str:
        return "auto" if self.device is None else self.device.strip().lower()


@dataclass
class ChosenPicker:
    """The picker, and every model folder it picks with (fold models included)."""

    picker: BasePicker
    members: list[Path]


def make_picker(request: PickRequest) -> ChosenPicker:
    """The picker ``request`` asks for, on the device it names (see the module docstring).

    Raises:
        CryoUNetError: a model that cannot be used, a device that is absent, or ``backend``
            onnxruntime where ONNX Runtime cannot pick.
    """
    explicit_onnx = request.options.get("backend") == "onnxruntime"
    if explicit_onnx and request.device_spec not in ("cpu", "auto"):
        raise CryoUNetError(f"--backend onnxruntime cannot pick here: ONNX Runtime picks on the CPU only, and "
                            f"--device {request.device} asks for a GPU")
    on_cpu = request.device_spec == "cpu" or (request.device_spec == "auto" and (cuda_impossible() or explicit_onnx))
    device = "cpu" if on_cpu else _torch_device(request)
    on_cpu = on_cpu or getattr(device, "type", device) == "cpu"
    pick_cfg = pick_settings(request, cpu_pick_settings() if on_cpu else _gpu_settings(device))
    if pick_cfg.backend == "onnxruntime" and not on_cpu:  # asked for in --config, not on the command line
        raise CryoUNetError(f"pick.backend onnxruntime cannot pick here: ONNX Runtime picks on the CPU only, "
                            f"and the device is {device} (pass --device cpu)")
    members = _members(request.models, pick_cfg.folds)
    picker = _onnx_picker(request, pick_cfg, members) if on_cpu and pick_cfg.backend != "torch" else None
    if picker is None:
        torch_device = _torch_device(request) if isinstance(device, str) else device
        picker = _torch_picker(request, pick_cfg, members, torch_device)
    logger.info("picking with tile_size %d, batch_size %d, %d worker thread(s), %s",
                pick_cfg.tile_size, pick_cfg.batch_size, pick_cfg.workers, pick_cfg.precision)
    return ChosenPicker(picker, members)


def pick_settings(request: PickRequest, machine: dict[str, Any]) -> PickConfig:
    """The pick settings, composed once: the first model's rules, the picking machine's settings,
    then ``--config``'s and the command line's."""
    cfg = read_model_info(request.models[0]).config.updated({"pick": machine})
    if request.config is not None:
        cfg = load_config(request.config, base=cfg)
    for option, value in request.options.items():
        if value is not None:
            setattr(cfg.pick, option, value)
    return cfg.pick


def _torch_device(request: PickRequest):
    from cryounet.device import resolve_device

    return resolve_device(request.device, request.threads)


def _gpu_settings(device) -> dict[str, Any]:
    from cryounet.device import machine_pick_settings

    return machine_pick_settings(device)


def _members(given: list[Path], folds: bool) -> list[Path]:
    """The model folders to pick with: the given ones, then their calibration fold models."""
    extra = [path for path in picking_members(given, folds) if path not in set(given)]
    if extra:
        logger.info("with %d calibration fold model(s) of %s: an ensemble of %d networks "
                    "(--no-folds: the given model(s) alone)", len(extra),
                    ", ".join(str(p) for p in given), len(given) + len(extra))
    return list(given) + extra


def _onnx_unusable(pick_cfg: PickConfig) -> str | None:
    """Why ONNX Runtime cannot pick with these settings on this machine, or None."""
    if pick_cfg.precision != "float32":
        return f"ONNX Runtime picks in float32, and pick.precision is {pick_cfg.precision}"
    from cryounet.inference.onnx_picker import runtime_version

    return "ONNX Runtime is not installed (pip install onnxruntime)" if runtime_version() is None else None


def _onnx_picker(request: PickRequest, pick_cfg: PickConfig, members: list[Path]) -> BasePicker | None:
    """An ONNX Runtime picker, or None (PyTorch picks; the reason is logged). ``backend``
    onnxruntime raises instead of falling back."""
    from cryounet.inference.onnx_picker import OnnxPicker, OnnxUnusable, load_onnx_model, runtime_version
    from cryounet.limits import fit_threads

    reason, anomaly = _onnx_unusable(pick_cfg), False
    if reason is None:
        threads = fit_threads(request.threads)
        try:
            models = [load_onnx_model(path, threads) for path in members]
        except OnnxUnusable as exc:
            reason, anomaly = str(exc), exc.anomaly
    if reason is not None:
        if pick_cfg.backend == "onnxruntime":
            raise CryoUNetError(f"--backend onnxruntime cannot pick here: {reason}")
        logger.log(logging.WARNING if anomaly else logging.INFO, "picking with PyTorch: %s", reason)
        return None
    if request.device_spec == "auto" and not cuda_impossible():
        logger.info("--backend onnxruntime: running on the CPU although this machine may have a CUDA GPU")
    logger.info("using device cpu (%d threads, ONNX Runtime %s; --backend torch for PyTorch)", threads,
                runtime_version())
    return OnnxPicker(models, pick_cfg, diameter=request.diameter)


def _torch_picker(request: PickRequest, pick_cfg: PickConfig, members: list[Path], device) -> BasePicker:
    """A PyTorch picker on ``device``."""
    from cryounet.inference.picker import Picker
    from cryounet.inference.predict import check_precision
    from cryounet.models.weights import load_model

    models = [load_model(path, device) for path in members]
    check_precision(device, pick_cfg.precision)
    if pick_cfg.precision != "float32":
        logger.info("forward passes in %s (autocast); probabilities in float32", pick_cfg.precision)
    return Picker(models, pick_cfg, device, diameter=request.diameter)
