from __future__ import annotations

import torch
from torch import nn

from .shapes import flat_features


def conv_block(i: int, o: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + two conv_blocks of x."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_block(channels, channels), conv_block(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet9_stages(input_shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    c, h, _ = input_shape

    stage1 = conv_block(c, 64)
    stage2 = conv_block(64, 128, pool=True)
    stage3 = Residual(128)
    # Spatial side after the three pooling blocks: 4 on 32x32 -> MaxPool(4); 3 on 28x28 -> MaxPool(2, 1).
    side = h // 8
    head_pool = nn.MaxPool2d(4) if side % 4 == 0 else nn.MaxPool2d(2, stride=1)
    body = [conv_block(128, 256, pool=True), conv_block(256, 512, pool=True), Residual(512), head_pool, nn.Flatten()]
    features = flat_features([stage1, stage2, stage3, *body], input_shape)
    rest = nn.Sequential(*body, nn.Linear(features, num_classes))
    return [stage1, stage2, stage3, rest]
