"""The injector autoencoder's networks: smashed data (C, H, W) -> same shape.

InjectorAutoencoder (`--ae-variant paper`): a conv encoder (3x3 stride-2 convs with GELU)
down to a 1024-wide latent, and the mirrored decoder (4x4 stride-2 transposed convs with
GELU), cropped back to (H, W), with a final 3x3 conv to C channels and no activation, so
it can reproduce any smashed data (ReLU outputs, ELU outputs or BatchNorm outputs).

TraceAutoencoder (`--ae-variant code`): the layer plan of the autoencoder in the only
public trace of the authors' code (docs/protocol.md section 7), whose output ends in a
Tanh, so it cannot produce a value outside (-1, 1)."""
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


TRACE_WIDTH = 32
TRACE_STEPS = 3  # stride-2 stages each way: the side must be a multiple of 2**3


class TraceAutoencoder(nn.Module):
    """Encoder: three 3x3 stride-2 convolutions (C -> 32 -> 64 -> 64 channels), each but
    the last followed by a 3x3 stride-1 convolution of the same width, GELU after every
    convolution, then a linear map to a 1024-wide latent (no activation). Decoder: a
    linear map back with GELU, then three 3x3 stride-2 transposed convolutions (64 -> 64
    -> 32 -> C), the first two followed by a 3x3 stride-1 convolution, GELU after all but
    the last, and a Tanh at the output.

    That plan only fits sides divisible by 8; the trace's own shape check rejects others.
    So that it serves every (model, cut) here, a side that is not a multiple of 8 is
    zero-padded on the bottom and right up to the next one and the output cropped back:
    a no-op on the shapes the trace could run (LeNet cut 1 and 3 on 28x28 inputs)."""

    def __init__(self, shape: tuple[int, int, int], width: int = TRACE_WIDTH, latent: int = LATENT) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = (c, h, w)
        step = 2 ** TRACE_STEPS
        self.padded = (math.ceil(h / step) * step, math.ceil(w / step) * step)
        self.inner = (2 * width, self.padded[0] // step, self.padded[1] // step)
        flat = self.inner[0] * self.inner[1] * self.inner[2]

        def conv(i: int, o: int, stride: int = 1) -> nn.Conv2d:
            return nn.Conv2d(i, o, 3, stride=stride, padding=1)

        def up(i: int, o: int) -> nn.ConvTranspose2d:
            return nn.ConvTranspose2d(i, o, 3, stride=2, padding=1, output_padding=1)

        gelu = nn.GELU
        self.encoder = nn.Sequential(
            conv(c, width, 2), gelu(), conv(width, width), gelu(),
            conv(width, 2 * width, 2), gelu(), conv(2 * width, 2 * width), gelu(),
            conv(2 * width, 2 * width, 2), gelu(),
            nn.Flatten(), nn.Linear(flat, latent))
        self.from_latent = nn.Sequential(nn.Linear(latent, flat), gelu())
        self.decoder = nn.Sequential(
            up(2 * width, 2 * width), gelu(), conv(2 * width, 2 * width), gelu(),
            up(2 * width, width), gelu(), conv(width, width), gelu(),
            up(width, c), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.shape[1:]
        if (h, w) != self.padded:
            x = nn.functional.pad(x, (0, self.padded[1] - w, 0, self.padded[0] - h))
        y = self.from_latent(self.encoder(x)).view(x.shape[0], *self.inner)
        return self.decoder(y)[:, :, :h, :w]


def injector_for(variant: str, shape: tuple[int, int, int]) -> nn.Module:
    """The injector network of `--ae-variant` for smashed data of `shape`."""
    return TraceAutoencoder(shape) if variant == "code" else InjectorAutoencoder(shape)
