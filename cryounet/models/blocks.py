"""Reusable building blocks of the U-Net family."""
from __future__ import annotations

import torch
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Batch or group normalisation for ``channels`` feature maps."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"unknown normalisation '{kind}' (batch or group)")


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by normalisation and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al., 2018).

    The decoder's coarser features (``gate``) decide, per pixel, how much of the encoder's skip
    features (``skip``) pass to the decoder.

    Shape:
        skip: ``(B, Cs, H, W)``; gate: ``(B, Cg, H, W)`` (already upsampled); output like ``skip``.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int) -> None:
        super().__init__()
        inter = max(1, inter_channels)
        self.theta = nn.Conv2d(skip_channels, inter, 1, bias=False)
        self.phi = nn.Conv2d(gate_channels, inter, 1, bias=True)
        self.psi = nn.Conv2d(inter, 1, 1, bias=True)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        attention = torch.sigmoid(self.psi(torch.relu(self.theta(skip) + self.phi(gate))))
        return skip * attention


class SqueezeExcitation(nn.Module):
    """Channel attention (Hu et al., 2018): global pooling -> bottleneck MLP -> channel gates."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(2, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(-2, -1), keepdim=True)))))
        return x * gate


class ResidualBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with an identity (or 1x1) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            norm_layer(norm, out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                          norm_layer(norm, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class MBConvBlock(nn.Module):
    """EfficientNet's inverted residual: 1x1 expand, 3x3 depthwise, squeeze-excitation, 1x1 project."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch", expand: int = 4) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            norm_layer(norm, hidden),
            nn.SiLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            norm_layer(norm, hidden),
            nn.SiLU(inplace=True),
            SqueezeExcitation(hidden, reduction=4 * expand),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            norm_layer(norm, out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                          norm_layer(norm, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over all positions of a feature map, with a residual connection.

    Used at the U-Net bottleneck, where the map is small (1/2**depth of the input per side).
    """

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        heads = next(h for h in (heads, 2, 1) if channels % h == 0)
        self.norm = nn.GroupNorm(1, channels)
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        out, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


def make_block(kind: str, in_channels: int, out_channels: int, norm: str, count: int = 1,
               se: bool = False) -> nn.Module:
    """``count`` blocks of a kind (``plain``, ``residual`` or ``mbconv``), optionally followed by
    squeeze-excitation."""
    factories = {"plain": ConvBlock, "residual": ResidualBlock, "mbconv": MBConvBlock}
    if kind not in factories:
        raise ValueError(f"unknown block '{kind}' ({', '.join(factories)})")
    layers: list[nn.Module] = []
    for i in range(max(1, count)):
        layers.append(factories[kind](in_channels if i == 0 else out_channels, out_channels, norm))
    if se:
        layers.append(SqueezeExcitation(out_channels))
    return nn.Sequential(*layers) if len(layers) > 1 else layers[0]
