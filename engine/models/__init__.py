"""The paper's three networks as ordered stages, split at a cut layer (docs/protocol.md section 4).

Every builder returns four stages: stages[0:3] are the layers up to cut 1, 2 and 3,
stages[3] is the rest. ``split(stages, cut)`` gives (client, server)."""
from __future__ import annotations

from torch import nn

from .lenet import lenet_stages
from .resnet9 import resnet9_stages
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


def build_split(model: str, cut: int, input_shape: tuple[int, int, int], num_classes: int) -> tuple[nn.Sequential, nn.Sequential]:
    return split(build_stages(model, input_shape, num_classes), cut)


def smashed_shape(client: nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """The shape of one sample's smashed data, found by a dry run on the meta device."""
    return tuple(dry_run(client, input_shape).shape[1:])
