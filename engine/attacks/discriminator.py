"""The hijack attack's discriminator on smashed data: D(z, y) -> one score per sample.

The smashed data is average-pooled to at most MAX_FEATURES values (LeNet's cut 1, 6x24x24,
becomes 6x12x12; cuts 2 and 3 stay whole), flattened and mapped by two 32-wide layers with
LeakyReLU(0.2) to features phi; the score is w . phi + e_y . phi, a projection
discriminator (Miyato and Koyama, 2018) conditioned on the class y, which the server knows
for every batch. With `conditional=False` (`--hijack-critic plain`) the score is w . phi
alone, FSHA's unconditional critic, and the labels are ignored. Small on purpose: it runs three times per training step (its own WGAN-GP
step, whose penalty needs a second-order gradient, and the score the client's gradient
comes from), so its cost stays near the LeNet client's. No batch-coupled layers: the
gradient penalty needs each sample's score to depend on that sample only."""
from __future__ import annotations

import math

import torch
from torch import nn

MAX_FEATURES = 1024
WIDTH = 32


def pool_for(shape: tuple[int, ...], limit: int = MAX_FEATURES) -> nn.Module:
    """The smallest average pooling that brings (C, H, W) down to at most `limit` values."""
    if len(shape) != 3:
        return nn.Identity()
    c, h, w = shape
    k = 1
    while c * math.ceil(h / k) * math.ceil(w / k) > limit and k < max(h, w):
        k += 1
    return nn.Identity() if k == 1 else nn.AvgPool2d(k, ceil_mode=True)


class Discriminator(nn.Module):
    def __init__(self, shape: tuple[int, ...], num_classes: int, width: int = WIDTH,
                 conditional: bool = True) -> None:
        super().__init__()
        self.conditional = conditional
        self.pool = pool_for(shape)
        with torch.no_grad():
            features = int(self.pool(torch.zeros(1, *shape, device="cpu")).numel())
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(features, width), nn.LeakyReLU(0.2),
                                  nn.Linear(width, width), nn.LeakyReLU(0.2))
        self.score = nn.Linear(width, 1)
        self.embed = nn.Embedding(num_classes, width) if conditional else None

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of z; y (the classes) is required by the conditional critic, ignored by the plain one."""
        phi = self.body(self.pool(z))
        score = self.score(phi).squeeze(1)
        if self.embed is None:
            return score
        if y is None:
            raise ValueError("the conditional discriminator needs the labels")
        return score + (self.embed(y) * phi).sum(1)
