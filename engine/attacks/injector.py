"""The injector autoencoder's network: smashed data (C, H, W) -> same shape.

A conv encoder (3x3 stride-2 convs with GELU) down to a 1024-wide latent, and the
mirrored decoder (4x4 stride-2 transposed convs with GELU), cropped back to (H, W), with
a final 3x3 conv to C channels and no activation, so it can reproduce any smashed data
(ReLU outputs, ELU outputs or BatchNorm outputs)."""
from __future__ import annotations

import math

import torch
from torch import nn

LATENT = 1024


def _down(side: int, steps: int) -> int:
    for _ in range(steps):
        side = math.ceil(side / 2)
    return side


class InjectorAutoencoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], width: int = 32, latent: int = LATENT) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = (c, h, w)
        steps = 2 if min(h, w) >= 8 else 1
        chans = [c] + [width * 2 ** i for i in range(steps)]
        enc: list[nn.Module] = []
        for i in range(steps):
            enc += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1), nn.GELU()]
        self.encoder = nn.Sequential(*enc)
        self.inner = (chans[-1], _down(h, steps), _down(w, steps))
        flat = chans[-1] * self.inner[1] * self.inner[2]
        self.to_latent = nn.Sequential(nn.Flatten(), nn.Linear(flat, latent), nn.GELU())
        self.from_latent = nn.Sequential(nn.Linear(latent, flat), nn.GELU())
        dec: list[nn.Module] = []
        in_ch = chans[-1]
        for i in reversed(range(steps)):
            out_ch = chans[i] if i > 0 else width
            dec += [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1), nn.GELU()]
            in_ch = out_ch
        self.decoder = nn.Sequential(*dec)
        self.head = nn.Conv2d(width, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.to_latent(self.encoder(x))
        y = self.from_latent(z).view(x.shape[0], *self.inner)
        y = self.decoder(y)[:, :, : self.shape[1], : self.shape[2]]
        return self.head(y)
