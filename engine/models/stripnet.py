from __future__ import annotations

from torch import nn

from .seeded import SeededDropout2d
from .shapes import flat_features


def _conv_elu_bn(i: int, o: int) -> list[nn.Module]:
    return [nn.Conv2d(i, o, 3, padding=1), nn.ELU(), nn.BatchNorm2d(o)]


def stripnet_stages(input_shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    c = input_shape[0]

    stage1 = nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.ELU())
    stage2 = nn.Sequential(nn.BatchNorm2d(32))
    stage3 = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ELU())
    body = [
        nn.BatchNorm2d(32), nn.MaxPool2d(2), SeededDropout2d(0.2),
        *_conv_elu_bn(32, 64), *_conv_elu_bn(64, 64), nn.MaxPool2d(2), SeededDropout2d(0.3),
        *_conv_elu_bn(64, 128), *_conv_elu_bn(128, 128), nn.MaxPool2d(2), SeededDropout2d(0.4),
        nn.Flatten(),
    ]
    features = flat_features([stage1, stage2, stage3, *body], input_shape)
    rest = nn.Sequential(*body, nn.Linear(features, num_classes))
    return [stage1, stage2, stage3, rest]
