"""Name -> model class registry; configs refer to architectures by these names."""
from __future__ import annotations

from typing import Callable

from torch import nn

from cryounet.config import ARCHITECTURES as ARCHITECTURE_NAMES
from cryounet.config import ModelConfig
from cryounet.errors import CryoUNetError
from cryounet.models.unet import AttentionUNet, EfficientUNet, ResidualUNet, UNet

#: The classes of the architectures named in :data:`cryounet.config.ARCHITECTURES`, in that order.
ARCHITECTURES: dict[str, Callable[[ModelConfig], nn.Module]] = dict(
    zip(ARCHITECTURE_NAMES, (UNet, AttentionUNet, ResidualUNet, EfficientUNet), strict=True))


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the architecture named in ``cfg.architecture``."""
    try:
        factory = ARCHITECTURES[cfg.architecture]
    except KeyError:
        raise CryoUNetError(
            f"unknown architecture '{cfg.architecture}' (available: {', '.join(sorted(ARCHITECTURES))})"
        ) from None
    return factory(cfg)
