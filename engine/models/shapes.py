"""Layer sizes found by a dry run, so that the networks' linear layers fit any input shape."""
from __future__ import annotations

import torch
from torch import nn


def dry_run(module: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return module(torch.zeros(2, *input_shape))
    finally:
        module.train(was_training)


def flat_features(layers: list[nn.Module], input_shape: tuple[int, ...]) -> int:
    """Number of features after running `layers` on one input: linear sizes are computed."""
    out = dry_run(nn.Sequential(*layers), input_shape)
    return int(out[0].numel())
