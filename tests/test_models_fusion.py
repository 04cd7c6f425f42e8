"""Inference rewrites of trained networks (cryounet.models.fusion)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cryounet.config import ModelConfig
from cryounet.models import ARCHITECTURES, build_model
from cryounet.models.fusion import fold_batch_norms


def _trained_statistics(network: nn.Module) -> nn.Module:
    """Give every batch normalisation non-trivial running statistics and affine parameters, as
    training would, so that a wrong fold changes the output."""
    generator = torch.Generator().manual_seed(1)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))
    return network.eval()


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_folding_keeps_the_output_and_removes_every_batch_norm(architecture: str) -> None:
    torch.manual_seed(0)
    network = _trained_statistics(build_model(ModelConfig(architecture=architecture, base_channels=4,
                                                          depth=2, attention_gates=True, se=True)))
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in network.modules())
    x = torch.randn(2, 1, 40, 36)
    with torch.no_grad():
        before = network(x)
        folded = fold_batch_norms(network)
        after = network(x)
    assert folded == norms > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in network.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert fold_batch_norms(network) == 0  # nothing left: a second picker changes nothing


def test_group_norm_networks_are_left_alone() -> None:
    network = build_model(ModelConfig(base_channels=4, depth=2, norm="group")).eval()
    state = {k: v.clone() for k, v in network.state_dict().items()}
    assert fold_batch_norms(network) == 0
    assert all(torch.equal(state[k], v) for k, v in network.state_dict().items())


def test_a_batch_norm_after_something_else_is_not_folded() -> None:
    network = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.BatchNorm2d(3)).eval()
    assert fold_batch_norms(network) == 0
    assert isinstance(network[2], nn.BatchNorm2d)


def test_training_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(build_model(ModelConfig(base_channels=4, depth=2)).train())
