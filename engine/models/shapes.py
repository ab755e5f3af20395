"""Layer sizes found by a dry run, so that the networks' linear layers fit any input shape."""
from __future__ import annotations

import torch
from torch import nn


def module_device(module: nn.Module) -> torch.device:
    """Where `module`'s weights live (the CPU for a module without any)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def dry_run(module: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """`module`'s eval-mode output for two zero images, made on the module's own device."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return module(torch.zeros(2, *input_shape, device=module_device(module)))
    finally:
        module.train(was_training)


def flat_features(layers: list[nn.Module], input_shape: tuple[int, ...]) -> int:
    """Number of features after running `layers` on one input: linear sizes are computed."""
    out = dry_run(nn.Sequential(*layers), input_shape)
    return int(out[0].numel())
