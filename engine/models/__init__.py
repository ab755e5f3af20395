"""The paper's three networks as ordered stages, split at a cut layer (docs/protocol.md section 4).

Every builder returns four stages: stages[0:3] are the layers up to cut 1, 2 and 3,
stages[3] is the rest. ``split(stages, cut)`` gives (client, server)."""
from __future__ import annotations

import torch
from torch import nn

from .lenet import lenet_stages
from .resnet9 import resnet9_stages
from .seeded import built
from .shapes import dry_run
from .stripnet import stripnet_stages

BUILDERS = {"lenet": lenet_stages, "stripnet": stripnet_stages, "resnet9": resnet9_stages}


def build_stages(model: str, input_shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    return BUILDERS[model](input_shape, num_classes)


def split(stages: list[nn.Module], cut: int) -> tuple[nn.Sequential, nn.Sequential]:
    """Client = stages up to the cut, server = the rest; they share the stage modules."""
    if cut not in (1, 2, 3):
        raise ValueError(f"cut must be 1, 2 or 3, got {cut}")
    return nn.Sequential(*stages[:cut]), nn.Sequential(*stages[cut:])


def build_split(model: str, cut: int, input_shape: tuple[int, int, int], num_classes: int, *,
                device: torch.device | str = "cpu", generator: torch.Generator | None = None,
                ) -> tuple[nn.Sequential, nn.Sequential]:
    """(client, server) of `model` on `device`, built on the CPU with initial weights
    drawn from `generator` (engine/models/seeded.py; default: the global CPU generator)."""
    stages = built(lambda: nn.Sequential(*build_stages(model, input_shape, num_classes)), device, generator)
    return split(list(stages), cut)


def smashed_shape(client: nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """The shape of one sample's smashed data, found by a dry run of two zero images
    on the client's own device."""
    return tuple(dry_run(client, input_shape).shape[1:])
