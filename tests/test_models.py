"""U-Net family models and the registry (cryounet.models)."""
from __future__ import annotations

import pytest
import torch

from cryounet.config import ModelConfig
from cryounet.errors import CryoUNetError
from cryounet.models import ARCHITECTURES, build_model
from cryounet.models.blocks import AttentionGate, norm_layer
from cryounet.models.unet import AttentionUNet, UNet

ALL = sorted(ARCHITECTURES)


def test_registry_holds_both_architectures() -> None:
    assert {"unet", "attention_unet"} <= set(ALL)
    assert type(build_model(ModelConfig(architecture="unet", base_channels=2, depth=1))) is UNet
    assert isinstance(build_model(ModelConfig(architecture="attention_unet", base_channels=2,
                                              depth=1)), AttentionUNet)


def test_unknown_architecture_lists_options() -> None:
    with pytest.raises(CryoUNetError, match="unknown architecture 'vnet'") as info:
        build_model(ModelConfig(architecture="vnet"))
    assert f"(available: {', '.join(ALL)})" in str(info.value)


@pytest.mark.parametrize("architecture", ALL)
@pytest.mark.parametrize("shape", [(2, 1, 37, 53), (1, 1, 37, 53), (3, 1, 16, 16)])
def test_forward_backward_odd_sizes(architecture: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = build_model(ModelConfig(architecture=architecture, base_channels=4, depth=3)).train()
    x = torch.randn(*shape)
    y = net(x)
    assert y.shape == shape and y.dtype == torch.float32
    y.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Every layer takes part (a skipped block would have an all-zero gradient).
    assert all(p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("architecture", ALL)
@pytest.mark.parametrize("hw", [(1, 1), (3, 3), (5, 7), (64, 48)])
def test_eval_any_size_same_shape(architecture: str, hw: tuple[int, int]) -> None:
    net = build_model(ModelConfig(architecture=architecture, base_channels=4, depth=2)).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 1, *hw))
    assert y.shape == (1, 1, *hw) and torch.isfinite(y).all()


def test_padding_crops_back_to_the_input() -> None:
    # The output at a pixel must not depend on an image being padded to a larger multiple:
    # a 37 x 53 image and the same image as the top-left of a 40 x 56 one agree away from the
    # padded border.
    torch.manual_seed(1)
    net = build_model(ModelConfig(base_channels=4, depth=2)).eval()
    big = torch.randn(1, 1, 40, 56)
    with torch.no_grad():
        small_out = net(big[..., :37, :53])
        big_out = net(big)
    assert torch.allclose(small_out[..., :20, :30], big_out[..., :20, :30], atol=1e-5)


def test_group_norm_and_dropout_variant() -> None:
    net = build_model(ModelConfig(base_channels=6, depth=2, norm="group", dropout=0.5))
    assert any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.Dropout2d) for m in net.modules())
    net.eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))  # dropout is off in eval mode


def test_multiple_and_width() -> None:
    net = build_model(ModelConfig(base_channels=5, depth=3))
    assert net.multiple == 8
    assert net.head.in_channels == 5 and net.head.out_channels == 1


def test_invalid_depth_or_width() -> None:
    with pytest.raises(ValueError, match="depth and base_channels"):
        UNet(ModelConfig(depth=0))
    with pytest.raises(ValueError, match="unknown normalisation 'layer'"):
        norm_layer("layer", 4)


def test_group_norm_groups_divide_channels() -> None:
    assert norm_layer("group", 12).num_groups == 4
    assert norm_layer("group", 7).num_groups == 1


def test_attention_gates_change_the_output() -> None:
    torch.manual_seed(2)
    cfg = ModelConfig(architecture="attention_unet", base_channels=4, depth=2)
    att = build_model(cfg).eval()
    plain = build_model(ModelConfig(architecture="unet", base_channels=4, depth=2)).eval()
    missing, unexpected = plain.load_state_dict(att.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("gates.") for k in unexpected)
    x = torch.randn(1, 1, 32, 40)
    with torch.no_grad():
        out_att, out_plain = att(x), plain(x)
        assert (out_att - out_plain).abs().max() > 1e-3  # the gates do something
        # Gates fully open (attention = 1) make the attention U-Net the plain U-Net ...
        for gate in att.gates:
            gate.psi.bias.fill_(50.0)
        assert torch.allclose(att(x), out_plain, atol=1e-5)
        # ... and closed gates (attention = 0) cut the skip connections.
        for gate in att.gates:
            gate.psi.bias.fill_(-50.0)
        closed = att(x)
        assert (closed - out_plain).abs().max() > 1e-3


def test_attention_gate_scales_skip_by_sigmoid() -> None:
    gate = AttentionGate(skip_channels=3, gate_channels=2, inter_channels=4)
    skip, g = torch.randn(2, 3, 5, 6), torch.randn(2, 2, 5, 6)
    out = gate(skip, g)
    assert out.shape == skip.shape
    ratio = out / skip
    # One attention coefficient in (0, 1) per pixel, shared by all skip channels.
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert (ratio > 0).all() and (ratio < 1).all()
