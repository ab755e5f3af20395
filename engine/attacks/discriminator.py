"""The hijack attack's discriminator on smashed data: D(z, y) -> one score per sample.

A small body (two stride-2 3x3 convolutions with LeakyReLU, or one hidden layer for flat
smashed data) maps z to features phi; the score is w . phi + e_y . phi, a projection
discriminator (Miyato and Koyama, 2018) conditioned on the class y that the server knows
for every batch. Small on purpose: it runs three times per training step (its own WGAN-GP
step, with a second-order gradient for the penalty, and the score the client's gradient
comes from). No batch-coupled layers: the gradient penalty needs each sample's score to
depend on that sample only."""
from __future__ import annotations

import torch
from torch import nn

from ..models.shapes import flat_features


class Discriminator(nn.Module):
    def __init__(self, shape: tuple[int, ...], num_classes: int, width: int = 16) -> None:
        super().__init__()
        if len(shape) == 3:
            c = shape[0]
            layers: list[nn.Module] = [
                nn.Conv2d(c, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                nn.Flatten(),
            ]
        else:
            layers = [nn.Flatten(), nn.Linear(int(shape[0]), 4 * width), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        features = flat_features(layers, shape)
        self.score = nn.Linear(features, 1)
        self.embed = nn.Embedding(num_classes, features)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        phi = self.body(z)
        return self.score(phi).squeeze(1) + (self.embed(y) * phi).sum(1)
