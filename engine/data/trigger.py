"""The backdoor trigger (docs/protocol.md sections 3 and 9c), one of three kinds, all drawn
once from the trigger's own seed and applied to *normalised* images (N, C, H, W):

- ``patch`` (the paper's): a square of uniform [0, 1) values per channel that *replaces*
  pixels after normalisation;
- ``blend``: x' = (1 - alpha) * x + alpha * P in pixel space, P a uniform-noise image;
- ``sig``: x' = clip(x + v, 0, 1) in pixel space, v[i, j] = delta * sin(2 pi j f / W).

Blend and sig are defined on pixels in [0, 1] before normalisation; stamping maps a
normalised image back to pixels with the dataset's mean and std, applies the trigger and
normalises again (blend is linear, so that is one multiply-add on normalised values).

The random values come from numpy's legacy generator seeded with the trigger seed, drawn
as the authors' code draws them (``np.random.seed(56)``, then ``np.random.random(C)`` for
each pixel of the square, row by row: the numbers of ``RandomState(56).random((8, 8, C))``),
so the default patch is the authors' exact pattern; ``rng="torch"`` draws them from a
torch generator instead (sltui's pattern before 2026-12, which older run files used)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..config import CIFAR_LIKE, RunConfig


@dataclass(frozen=True)
class Trigger:
    patch: torch.Tensor  # float32 (C, size, size): the patch kind's values
    row: int
    col: int
    target: int
    kind: str = "patch"
    pattern: torch.Tensor | None = None  # blend: the noise image P normalised; sig: v in pixel units (C, H, W)
    blend_alpha: float = 0.2
    mean: torch.Tensor | None = None  # (C, 1, 1) of the dataset's normalisation (sig only)
    std: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.patch.shape[-1])

    def to(self, device: torch.device) -> "Trigger":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return replace(self, patch=self.patch.to(device), pattern=move(self.pattern),
                       mean=move(self.mean), std=move(self.std))


def make_trigger(channels: int, size: int, row: int, col: int, seed: int, target: int, *,
                 kind: str = "patch", side: int = 28, mean: tuple[float, ...] = (0.0,),
                 std: tuple[float, ...] = (1.0,), blend_alpha: float = 0.2, sig_delta: float = 20 / 255,
                 sig_freq: float = 6.0, rng: str = "numpy", device: torch.device | str = "cpu") -> Trigger:
    """A trigger of `kind` for images of `channels` x `side` x `side` normalised with
    (`mean`, `std`). Random values come from a generator of `rng` ("numpy" or "torch")
    seeded with `seed`, so the global RNGs are untouched and the same seed gives the same
    trigger."""
    device = torch.device(device)
    draw = _uniform_draws(rng, seed)
    patch = draw(channels, size, size)
    m = torch.tensor(mean, dtype=torch.float32, device="cpu").view(-1, 1, 1).expand(channels, 1, 1).clone()
    s = torch.tensor(std, dtype=torch.float32, device="cpu").view(-1, 1, 1).expand(channels, 1, 1).clone()
    pattern: torch.Tensor | None = None
    if kind == "blend":
        noise = draw(channels, side, side)
        pattern = (noise - m) / s
    elif kind == "sig":
        cols = torch.arange(side, dtype=torch.float32, device="cpu")
        wave = sig_delta * torch.sin(2 * math.pi * cols * sig_freq / side)
        pattern = wave.view(1, 1, side).expand(channels, side, side).clone()
    elif kind != "patch":
        raise ValueError(f"unknown trigger kind {kind!r}")
    trig = Trigger(patch, row, col, target, kind, pattern, blend_alpha, m, s)
    return trig.to(device)


def _uniform_draws(rng: str, seed: int):
    """A function (channels, rows, cols) -> float32 tensor of uniform [0, 1) values, each
    call continuing one generator seeded with `seed`. numpy fills pixel by pixel (rows,
    then columns, then channels), the order of the authors' loop."""
    if rng == "numpy":
        state = np.random.RandomState(seed)

        def draw(channels: int, rows: int, cols: int) -> torch.Tensor:
            values = state.random_sample((rows, cols, channels))
            return torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1))).to(torch.float32)
        return draw
    if rng == "torch":
        g = torch.Generator(device="cpu").manual_seed(seed)
        return lambda channels, rows, cols: torch.rand(channels, rows, cols, generator=g, device="cpu")
    raise ValueError(f"unknown trigger generator {rng!r}")


def trigger_for(cfg: RunConfig, channels: int, device: torch.device,
                mean: tuple[float, ...] = (0.0,), std: tuple[float, ...] = (1.0,)) -> Trigger:
    """The run's trigger; `mean`/`std` are the dataset's normalisation (blend and sig work
    in pixel space)."""
    assert cfg.trigger_col is not None, "resolve the config first"
    side = 32 if cfg.dataset in CIFAR_LIKE else 28
    return make_trigger(channels, cfg.trigger_size, cfg.trigger_row, cfg.trigger_col, cfg.trigger_seed,
                        cfg.target, kind=cfg.trigger, side=side, mean=mean, std=std,
                        blend_alpha=cfg.blend_alpha, sig_delta=cfg.sig_delta, sig_freq=cfg.sig_freq,
                        rng=cfg.trigger_rng, device=device)


def stamp_(x: torch.Tensor, trigger: Trigger) -> torch.Tensor:
    """Apply the trigger to normalised images (N, C, H, W) in place; returns x."""
    if trigger.kind == "patch":
        s = trigger.size
        x[:, :, trigger.row:trigger.row + s, trigger.col:trigger.col + s] = trigger.patch
    elif trigger.kind == "blend":
        assert trigger.pattern is not None
        x.mul_(1 - trigger.blend_alpha).add_(trigger.pattern, alpha=trigger.blend_alpha)
    else:  # sig: back to pixels, add the sine, clip, normalise again
        assert trigger.pattern is not None and trigger.mean is not None and trigger.std is not None
        x.mul_(trigger.std).add_(trigger.mean).add_(trigger.pattern).clamp_(0.0, 1.0)
        x.sub_(trigger.mean).div_(trigger.std)
    return x


def stamp(x: torch.Tensor, trigger: Trigger) -> torch.Tensor:
    return stamp_(x.clone(), trigger)


def poison_(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, trigger: Trigger) -> tuple[torch.Tensor, torch.Tensor]:
    """Stamp (with the trigger's kind) and relabel the rows of (x, y) where `mask` is true,
    in place. Elementwise selections (torch.where) rather than masked assignment:
    deterministic on every device and no host sync to count the rows."""
    x.copy_(torch.where(mask.view(-1, 1, 1, 1), stamp(x, trigger), x))
    y.copy_(torch.where(mask, trigger.target, y))
    return x, y


def poison_mask(n: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Exactly round(ratio * n) of n samples chosen at random (seeded)."""
    k = int(round(ratio * n))
    mask = torch.zeros(n, dtype=torch.bool, device="cpu")
    mask[torch.randperm(n, generator=generator, device="cpu")[:k]] = True
    return mask
