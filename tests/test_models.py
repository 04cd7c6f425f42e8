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


# ------------------------------------------------------------ accuracy programme: model options
from torch import nn  # noqa: E402

from cryounet.models.blocks import (ConvBlock, MBConvBlock, ResidualBlock,  # noqa: E402
                                    SelfAttention2d, SqueezeExcitation, make_block)


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _count(net: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


def test_squeeze_excitation_scales_each_channel_by_a_gate_in_0_1() -> None:
    torch.manual_seed(0)
    se = SqueezeExcitation(8)
    x = torch.randn(3, 8, 5, 7) + 0.1  # no exact zeros: the ratio below is defined everywhere
    out = se(x)
    assert out.shape == x.shape
    gate = out / x
    # One gate per (image, channel): constant over the pixels, strictly between 0 and 1.
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-5)
    assert (gate > 0).all() and (gate < 1).all()
    # The gate depends on the image (global pooling of that image, not a fixed scale).
    assert (gate[0, :, 0, 0] - gate[1, :, 0, 0]).abs().max() > 1e-4


def test_squeeze_excitation_with_hand_set_weights() -> None:
    se = SqueezeExcitation(4, reduction=2)
    with torch.no_grad():
        se.fc1.weight.zero_()
        se.fc1.bias.zero_()
        se.fc2.weight.zero_()
        se.fc2.bias.copy_(torch.tensor([0.0, 2.0, -2.0, 50.0]))
    x = torch.randn(2, 4, 3, 3)
    expected = x * torch.sigmoid(torch.tensor([0.0, 2.0, -2.0, 50.0])).view(1, 4, 1, 1)
    assert torch.allclose(se(x), expected, atol=1e-6)
    assert torch.allclose(se(x)[:, 0], 0.5 * x[:, 0])  # sigmoid(0) = 1/2
    assert se.fc1.out_channels == 2  # channels // reduction, at least 2
    assert SqueezeExcitation(3, reduction=4).fc1.out_channels == 2


@pytest.mark.parametrize("training", [True, False])
def test_residual_block_identity_shortcut(training: bool) -> None:
    torch.manual_seed(0)
    block = ResidualBlock(6, 6)
    assert isinstance(block.shortcut, nn.Identity)
    with torch.no_grad():
        for m in block.body:
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
    block.train(training)
    x = torch.randn(2, 6, 9, 11)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(x), atol=1e-6)
    # With different widths the shortcut is a projection (1x1 convolution + normalisation).
    wider = ResidualBlock(3, 6)
    assert isinstance(wider.shortcut, nn.Sequential)
    assert isinstance(wider.shortcut[0], nn.Conv2d) and wider.shortcut[0].kernel_size == (1, 1)
    assert wider(torch.randn(1, 3, 5, 5)).shape == (1, 6, 5, 5)


def test_mbconv_block_structure_and_residual() -> None:
    torch.manual_seed(0)
    block = MBConvBlock(4, 4, expand=4)
    depthwise = [m for m in block.body if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 1 and depthwise[0].groups == depthwise[0].in_channels == 16
    assert _count(block, SqueezeExcitation) == 1 and isinstance(block.shortcut, nn.Identity)
    x = torch.randn(2, 4, 7, 9)
    assert block(x).shape == x.shape
    # The last normalisation zeroed: the body contributes nothing, the block is the identity
    # (no activation after the sum, unlike the residual block).
    with torch.no_grad():
        block.body[-1].weight.zero_()
        block.body[-1].bias.zero_()
    block.eval()
    with torch.no_grad():
        assert torch.allclose(block(x), x, atol=1e-6)
    proj = MBConvBlock(4, 8)
    assert isinstance(proj.shortcut, nn.Sequential) and proj(x).shape == (2, 8, 7, 9)


def test_self_attention_preserves_shape_and_is_residual() -> None:
    torch.manual_seed(0)
    att = SelfAttention2d(8, heads=4).eval()
    assert att.attention.num_heads == 4
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        y = att(x)
        assert y.shape == x.shape and not torch.allclose(y, x)
        att.attention.out_proj.weight.zero_()
        att.attention.out_proj.bias.zero_()
        assert torch.equal(att(x), x)
    # Heads fall back to a divisor of the channels.
    assert SelfAttention2d(6, heads=4).attention.num_heads == 2
    assert SelfAttention2d(3, heads=4).attention.num_heads == 1


def test_self_attention_mixes_distant_positions() -> None:
    torch.manual_seed(0)
    att = SelfAttention2d(4).eval()
    x = torch.randn(1, 4, 6, 6)
    x2 = x.clone()
    x2[..., 5, 5] += 3.0  # change one corner pixel
    with torch.no_grad():
        diff = (att(x2) - att(x))[..., 0, 0]  # the opposite corner sees it
    assert diff.abs().max() > 1e-5


def test_make_block_count_se_and_unknown_kind() -> None:
    single = make_block("residual", 3, 5, "batch")
    assert isinstance(single, ResidualBlock)
    three = make_block("residual", 3, 5, "batch", count=3)
    assert isinstance(three, nn.Sequential) and len(three) == 3
    assert all(isinstance(b, ResidualBlock) for b in three)
    assert three[0].body[0].in_channels == 3 and three[1].body[0].in_channels == 5
    assert isinstance(three[0].shortcut, nn.Sequential) and isinstance(three[2].shortcut, nn.Identity)
    with_se = make_block("plain", 1, 4, "group", count=2, se=True)
    assert [type(m) for m in with_se] == [ConvBlock, ConvBlock, SqueezeExcitation]
    assert with_se(torch.randn(1, 1, 8, 8)).shape == (1, 4, 8, 8)
    assert isinstance(make_block("mbconv", 4, 4, "batch", count=0), MBConvBlock)  # at least one
    with pytest.raises(ValueError, match="unknown block 'dense' \\(plain, residual, mbconv\\)"):
        make_block("dense", 1, 4, "batch")


_TINY = {"base_channels": 4, "depth": 2}


@pytest.mark.parametrize("architecture", ALL)
def test_model_flags_change_parameters_and_modules(architecture: str) -> None:
    from cryounet.models.blocks import AttentionGate as Gate

    def build(**flags) -> nn.Module:
        return build_model(ModelConfig(architecture=architecture, **_TINY, **flags))

    base = build()
    n = _n_params(base)
    se = build(se=True)
    assert _count(se, SqueezeExcitation) > _count(base, SqueezeExcitation)
    assert _n_params(se) > n
    context = build(bottleneck_attention=True)
    assert _count(base, SelfAttention2d) == 0 and _count(context, SelfAttention2d) == 1
    assert _n_params(context) > n
    gated = build(attention_gates=True)
    assert _count(gated, Gate) == 2  # one per skip connection (depth 2)
    if architecture == "attention_unet":  # already gated: the flag changes nothing
        assert _n_params(gated) == n
    else:
        assert _count(base, Gate) == 0 and _n_params(gated) > n
    deeper = build(blocks_per_level=2)
    assert _n_params(deeper) > n
    block_type = {"unet": ConvBlock, "attention_unet": ConvBlock, "residual_unet": ResidualBlock,
                  "efficient_unet": MBConvBlock}[architecture]
    assert isinstance(deeper.bottleneck, nn.Sequential) and len(deeper.bottleneck) == 2
    assert all(isinstance(b, block_type) for b in deeper.bottleneck)
    assert _count(deeper, block_type) > _count(base, block_type)


def test_architectures_use_their_block_kind() -> None:
    residual = build_model(ModelConfig(architecture="residual_unet", **_TINY))
    assert _count(residual, ResidualBlock) == 5 and _count(residual, ConvBlock) == 0
    efficient = build_model(ModelConfig(architecture="efficient_unet", **_TINY))
    # The first encoder level sees the raw image (1 channel): a plain convolution pair.
    assert isinstance(efficient.encoders[0], ConvBlock)
    assert _count(efficient, MBConvBlock) == 4 and _count(efficient, SqueezeExcitation) == 4


_FLAG_SETS = [
    {"se": True},
    {"bottleneck_attention": True},
    {"attention_gates": True},
    {"blocks_per_level": 2},
    {"se": True, "bottleneck_attention": True, "attention_gates": True, "blocks_per_level": 2},
]


@pytest.mark.parametrize("flags", _FLAG_SETS, ids=lambda f: "+".join(f))
@pytest.mark.parametrize("architecture", ALL)
def test_flags_forward_backward_odd_size(architecture: str, flags: dict) -> None:
    torch.manual_seed(0)
    net = build_model(ModelConfig(architecture=architecture, **_TINY, **flags)).train()
    x = torch.randn(2, 1, 37, 53)
    y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # Every part takes part. (The tiny squeeze-excitation MLPs have 2 hidden ReLU units that
        # can be inactive for every image at initialisation; their gate bias still learns.)
        if not name.endswith(("fc1.weight", "fc1.bias", "fc2.weight")):
            assert p.grad.abs().sum() > 0, name
    net.eval()
    with torch.no_grad():
        z = net(torch.randn(1, 1, 37, 53))
    assert z.shape == (1, 1, 37, 53) and torch.isfinite(z).all()


@pytest.mark.parametrize("architecture", ["residual_unet", "efficient_unet", "unet"])
def test_flagged_model_round_trips_through_model_folder(architecture: str, tmp_path) -> None:
    from cryounet.config import CryoUNetConfig
    from cryounet.io.model_folder import ModelInfo
    from cryounet.models.weights import load_model, save_model

    cfg = CryoUNetConfig().updated({"model": {
        "architecture": architecture, **_TINY, "se": True, "bottleneck_attention": True,
        "attention_gates": True, "blocks_per_level": 2, "norm": "batch"}})
    torch.manual_seed(3)
    net = build_model(cfg.model)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    net.eval()
    save_model(tmp_path / "m", net, ModelInfo(cfg, 30.0, 0.4))
    loaded = load_model(tmp_path / "m")
    assert loaded.info.config.model == cfg.model
    assert type(loaded.network) is type(net)
    x = torch.randn(2, 1, 37, 53)
    with torch.no_grad():
        assert torch.equal(net(x), loaded.network(x))
    # The flags are part of the architecture: a folder saved with them does not load without them.
    from cryounet.errors import InputFileError
    from cryounet.models.weights import load_weights
    plain = build_model(ModelConfig(architecture=architecture, **_TINY))
    with pytest.raises(InputFileError, match="do not match the architecture"):
        load_weights(plain, tmp_path / "m" / "model.safetensors")
