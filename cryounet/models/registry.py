"""Name -> model class registry; configs refer to architectures by these names."""
from __future__ import annotations

from typing import Callable

from torch import nn

from cryounet.config import ModelConfig
from cryounet.errors import CryoUNetError
from cryounet.models.unet import AttentionUNet, EfficientUNet, ResidualUNet, UNet

ARCHITECTURES: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "unet": UNet,
    "attention_unet": AttentionUNet,
    "residual_unet": ResidualUNet,
    "efficient_unet": EfficientUNet,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the architecture named in ``cfg.architecture``."""
    try:
        factory = ARCHITECTURES[cfg.architecture]
    except KeyError:
        raise CryoUNetError(
            f"unknown architecture '{cfg.architecture}' (available: {', '.join(sorted(ARCHITECTURES))})"
        ) from None
    return factory(cfg)
