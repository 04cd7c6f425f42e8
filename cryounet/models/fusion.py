"""Inference-only rewrites of a trained network that keep its outputs (to float32 rounding)."""
from __future__ import annotations

import logging

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

logger = logging.getLogger(__name__)


def fold_batch_norms(network: nn.Module) -> int:
    """Fold every batch normalisation that directly follows a convolution inside an
    ``nn.Sequential`` into that convolution's weights and bias, and return how many were folded.

    In eval mode a batch normalisation is a fixed per-channel affine map, so the folded
    convolution computes the same values in one pass over the feature map instead of two. The
    network must be in eval mode and is changed in place; it can no longer be trained or saved as
    a model file (its parameter names change), so only pickers call this on loaded models.
    """
    if network.training:
        raise ValueError("batch normalisations can only be folded in eval mode (call network.eval())")
    sequences = [m for m in network.modules() if isinstance(m, nn.Sequential)]
    folded = 0
    for sequence in sequences:
        names = list(sequence._modules)
        for conv_name, norm_name in zip(names, names[1:]):
            conv, norm = sequence._modules[conv_name], sequence._modules[norm_name]
            if type(conv) is not nn.Conv2d or type(norm) is not nn.BatchNorm2d:
                continue
            if norm.running_mean is None or norm.running_var is None or conv.out_channels != norm.num_features:
                continue
            sequence._modules[conv_name] = fuse_conv_bn_eval(conv, norm)
            sequence._modules[norm_name] = nn.Identity()
            folded += 1
    logger.debug("folded %d batch normalisations into their convolutions", folded)
    return folded
