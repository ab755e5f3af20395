"""The hijack attack's discriminator on smashed data: (C, H, W) or (F,) -> one score.

Small on purpose: it runs three times per training step (its own WGAN-GP step, with a
second-order gradient for the penalty, and the score the client's gradient comes from),
so its cost is kept near the LeNet client's. No batch-coupled layers: the gradient
penalty needs each sample's score to depend on that sample only."""
from __future__ import annotations

from torch import nn

from ..models.shapes import flat_features


def make_discriminator(shape: tuple[int, ...], width: int = 16) -> nn.Sequential:
    if len(shape) == 3:
        c = shape[0]
        body: list[nn.Module] = [
            nn.Conv2d(c, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(),
        ]
    else:
        body = [nn.Flatten(), nn.Linear(int(shape[0]), 4 * width), nn.LeakyReLU(0.2)]
    features = flat_features(body, shape)
    return nn.Sequential(*body, nn.Linear(features, 1))
