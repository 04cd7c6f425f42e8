"""Choosing the compute device: explicit, logged, and never a silent CPU fallback."""
from __future__ import annotations

import logging
from typing import Any

import torch

from cryounet.config import GPU_LARGE_MEMORY_GIB, GPU_PICK_WORKERS, GPU_TILE_SIZE, cpu_pick_settings
from cryounet.errors import CryoUNetError
from cryounet.limits import check_thread_room, fit_threads, usable_cpus

logger = logging.getLogger(__name__)


def resolve_device(spec: str | None, threads: int = 0) -> torch.device:
    """Turn a ``--device`` value into a :class:`torch.device` and log what is used; ``threads`` > 0
    sets torch's CPU threads (``--threads``). The CPU threads never exceed the CPUs this process may
    use (:func:`~cryounet.limits.fit_threads`) and must fit under its address-space limit.

    Accepted: ``auto`` (a CUDA GPU when present, else the CPU, said in the log), ``cpu``, ``cuda``,
    ``cuda:N``, or a bare GPU index ``N`` / list ``"N M"`` (as Scipion's ``%(GPU)s`` gives; the first
    is used).

    Raises:
        CryoUNetError: a GPU was asked for and is not available, or the value is not understood, or
            the threads do not fit under the address-space limit.
    """
    set_cpu_threads(threads)
    spec = "auto" if spec is None else spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda:0")
        else:
            logger.info("no CUDA GPU found: running on the CPU (slower; pass --device cuda to insist "
                        "on a GPU)")
            device = torch.device("cpu")
    elif spec == "cpu":
        device = torch.device("cpu")
    else:
        parts = spec.replace(",", " ").split()
        if not parts:  # blank: most likely an empty GPU list from a scheduler
            raise CryoUNetError(f"unknown device '{spec}' (use auto, cpu, cuda, cuda:N or a GPU index)")
        first = parts[0]
        if first.isdigit():
            first = f"cuda:{first}"
        if not (first == "cuda" or first.startswith("cuda:")):
            raise CryoUNetError(f"unknown device '{spec}' (use auto, cpu, cuda, cuda:N or a GPU index)")
        if not torch.cuda.is_available():
            raise CryoUNetError(
                f"device '{spec}' was requested but no CUDA GPU is available to this process "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                "use --device cpu to run on the CPU"
            )
        try:
            device = torch.device(first)
        except RuntimeError as exc:
            raise CryoUNetError(f"invalid device '{spec}': {exc}") from None
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise CryoUNetError(
                f"GPU {index} was requested but only {torch.cuda.device_count()} GPU(s) are visible"
            )
        device = torch.device("cuda", index)
    if device.type == "cuda":
        logger.info("using device %s (%s)", device, torch.cuda.get_device_name(device))
    else:
        logger.info("using device cpu (%d threads)", torch.get_num_threads())
    return device


def set_cpu_threads(threads: int) -> int:
    """Set torch's CPU threads: ``threads`` (0: torch's own choice) capped at the usable CPUs, and
    refused when the pool would not fit under the address-space limit; the count set."""
    count = fit_threads(threads) if threads > 0 else min(torch.get_num_threads(), usable_cpus())
    check_thread_room(count)
    if count != torch.get_num_threads():
        torch.set_num_threads(count)
    return count


def preferred_layout(network: torch.nn.Module, device: torch.device | str,
                     inference: bool = False) -> torch.nn.Module:
    """``network`` with the memory layout its convolutions run fastest in on ``device``, in place.

    On the CPU that is channels-last: oneDNN then convolves without re-laying the weights and
    feature maps out on every call (on the 2-core VM training takes about 0.8x and picking 0.7x the
    time: docs/history, "Channels-last training" and "Channels-last and bfloat16"). On a CUDA GPU, channels-last for
    ``inference`` (picking): a TTA map took 0.78-0.79x the time on an H200 (docs/history: "GPU");
    training there keeps the default layout (not measured). The values are those of the default
    layout to float32 rounding (TF32 on recent GPUs). Other devices keep the default layout.
    """
    kind = torch.device(device).type
    if kind == "cpu" or (kind == "cuda" and inference):
        network.to(memory_format=torch.channels_last)
    return network


def large_gpu(device: torch.device | str) -> bool:
    """Whether ``device`` is a CUDA GPU with at least ``GPU_LARGE_MEMORY_GIB`` of memory: such a
    GPU picks whole working images up to ``GPU_TILE_SIZE`` px and passes the symmetries of
    test-time augmentation as one batch (:func:`cryounet.inference.predict.symmetries_together`)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    return torch.cuda.get_device_properties(device.index or 0).total_memory >= GPU_LARGE_MEMORY_GIB * 1024 ** 3


def machine_pick_settings(device: torch.device | str) -> dict[str, Any]:
    """The defaults of the picking machine's settings (``PICK_MACHINE_SETTINGS``) on ``device``:
    :class:`~cryounet.config.PickConfig`'s on the CPU; on a CUDA GPU, ``GPU_PICK_WORKERS`` worker
    threads, and on a :func:`large_gpu` whole working images up to ``GPU_TILE_SIZE`` px in one pass."""
    settings = cpu_pick_settings()
    if torch.device(device).type == "cuda":
        settings["workers"] = GPU_PICK_WORKERS
        if large_gpu(device):
            settings["tile_size"] = GPU_TILE_SIZE
    return settings
