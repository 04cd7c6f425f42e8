"""Whether this machine can have a CUDA GPU, known without importing torch.

Part of the engine's torch-free ground: the Scipion plugin asks it (through its door,
``cryounet_plugin.engine``) to choose its forms' "use the GPU" default without loading torch in
Scipion's environment.
"""
from __future__ import annotations

import sys
from pathlib import Path

#: The NVIDIA kernel driver's version file: every CUDA GPU needs that driver, in a container too.
NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")


def cuda_impossible(platform: str | None = None, driver_file: Path = NVIDIA_DRIVER_FILE) -> bool:
    """True when this machine certainly has no CUDA GPU: Linux without the NVIDIA driver. False
    means it may have one (elsewhere than Linux nothing is known without torch)."""
    platform = sys.platform if platform is None else platform
    return platform.startswith("linux") and not driver_file.exists()
