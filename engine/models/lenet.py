from __future__ import annotations

from torch import nn

from .shapes import flat_features


def lenet_stages(input_shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    c = input_shape[0]

    stage1 = nn.Sequential(nn.Conv2d(c, 6, 5), nn.ReLU())
    stage2 = nn.Sequential(nn.MaxPool2d(2))
    stage3 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU())
    features = flat_features([stage1, stage2, stage3, nn.MaxPool2d(2)], input_shape)
    rest = nn.Sequential(
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(features, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )
    return [stage1, stage2, stage3, rest]
