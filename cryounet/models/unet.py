"""The U-Net family for particle-centre probability maps.

One encoder-decoder skeleton with switchable parts: the block of each level (plain double
convolution, ResNet basic blocks, or EfficientNet-style MBConv), attention gates on the skip
connections, squeeze-excitation channel attention, and spatial self-attention at the bottleneck.
All take a ``(B, 1, H, W)`` normalised image of any size (padded internally to a multiple of
``2 ** depth`` and cropped back) and return ``(B, 1, H, W)`` logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cryounet.config import ModelConfig
from cryounet.models.blocks import AttentionGate, SelfAttention2d, make_block


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) with configurable depth, width and parts.

    Args:
        cfg: ``base_channels`` at the first level, doubled at each of ``depth`` levels down;
            ``norm``, bottleneck ``dropout``, ``blocks_per_level``, ``se`` (squeeze-excitation after
            every block), ``bottleneck_attention`` (self-attention at the bottleneck), and
            ``attention_gates`` (gates on the skip connections, also implied by ``attention``).
        attention: put an :class:`AttentionGate` on every skip connection.
        block: ``plain``, ``residual`` or ``mbconv``.
    """

    def __init__(self, cfg: ModelConfig, attention: bool = False, block: str = "plain") -> None:
        super().__init__()
        if cfg.depth < 1 or cfg.base_channels < 1:
            raise ValueError(f"depth and base_channels must be >= 1, got {cfg.depth}, {cfg.base_channels}")
        self.depth = cfg.depth
        widths = [cfg.base_channels * 2**i for i in range(cfg.depth + 1)]
        attention = attention or cfg.attention_gates
        n, se = cfg.blocks_per_level, cfg.se
        self.encoders = nn.ModuleList()
        in_ch = 1
        for w in widths[:-1]:
            # The first block sees the raw image: always a plain convolution pair.
            kind = "plain" if in_ch == 1 and block == "mbconv" else block
            self.encoders.append(make_block(kind, in_ch, w, cfg.norm, n, se))
            in_ch = w
        self.bottleneck = make_block(block, widths[-2], widths[-1], cfg.norm, n, se)
        self.context = SelfAttention2d(widths[-1]) if cfg.bottleneck_attention else nn.Identity()
        self.dropout = nn.Dropout2d(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(cfg.depth)):
            coarse, fine = widths[level + 1], widths[level]
            self.ups.append(nn.ConvTranspose2d(coarse, fine, 2, stride=2))
            self.gates.append(AttentionGate(fine, fine, fine // 2) if attention else nn.Identity())
            self.decoders.append(make_block(block, 2 * fine, fine, cfg.norm, 1, se))
        self.head = nn.Conv2d(widths[0], 1, 1)
        self.attention = attention

    @property
    def multiple(self) -> int:
        """Input sides are padded to a multiple of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if min(h, w) > max(pad_h, pad_w) else "replicate")
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.dropout(self.context(self.bottleneck(x)))
        for up, gate, decoder, skip in zip(self.ups, self.gates, self.decoders, reversed(skips)):
            x = up(x)
            if self.attention:
                skip = gate(skip, x)
            x = decoder(torch.cat([skip, x], dim=1))
        if torch.is_autocast_enabled(x.device.type):
            # Under reduced-precision autocast (pick.precision) the 1 x 1 head sums its features in
            # float32: bfloat16 logits would quantise the probability map into plateaus, and every
            # plateau pixel would be a candidate peak.
            with torch.autocast(x.device.type, enabled=False):
                return self.head(x.float())[..., :h, :w]
        return self.head(x)[..., :h, :w]


class AttentionUNet(UNet):
    """U-Net with additive attention gates on the skip connections (Oktay et al., 2018)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, attention=True)


class ResidualUNet(UNet):
    """U-Net whose levels are ResNet basic blocks (``blocks_per_level`` of them)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, block="residual")


class EfficientUNet(UNet):
    """U-Net with an EfficientNet-style encoder/decoder (MBConv blocks with squeeze-excitation)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, block="mbconv")
