"""The backdoor trigger (docs/protocol.md section 3): a square of uniform [0, 1) values per channel,
drawn once from its own seed, *replacing* pixels after normalisation."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import RunConfig


@dataclass(frozen=True)
class Trigger:
    patch: torch.Tensor  # float32 (C, size, size)
    row: int
    col: int
    target: int

    @property
    def size(self) -> int:
        return int(self.patch.shape[-1])

    def to(self, device: torch.device) -> "Trigger":
        return Trigger(self.patch.to(device), self.row, self.col, self.target)


def make_trigger(channels: int, size: int, row: int, col: int, seed: int, target: int) -> Trigger:
    """The trigger drawn on the host from its own seed (the same on every device)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    return Trigger(torch.rand(channels, size, size, generator=g, device="cpu"), row, col, target)


def trigger_for(cfg: RunConfig, channels: int, device: torch.device) -> Trigger:
    assert cfg.trigger_col is not None, "resolve the config first"
    return make_trigger(channels, cfg.trigger_size, cfg.trigger_row, cfg.trigger_col,
                        cfg.trigger_seed, cfg.target).to(device)


def stamp_(x: torch.Tensor, trigger: Trigger) -> torch.Tensor:
    """Stamp the trigger into normalised images (N, C, H, W) in place; returns x."""
    s = trigger.size
    x[:, :, trigger.row:trigger.row + s, trigger.col:trigger.col + s] = trigger.patch
    return x


def stamp(x: torch.Tensor, trigger: Trigger) -> torch.Tensor:
    return stamp_(x.clone(), trigger)


def poison_(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, trigger: Trigger) -> tuple[torch.Tensor, torch.Tensor]:
    """Stamp and relabel the rows of (x, y) where `mask` is true, in place. Elementwise
    selections (torch.where) rather than masked assignment: deterministic on every
    device and no host sync to count the rows."""
    s = trigger.size
    region = x[:, :, trigger.row:trigger.row + s, trigger.col:trigger.col + s]
    region.copy_(torch.where(mask.view(-1, 1, 1, 1), trigger.patch, region))
    y.copy_(torch.where(mask, trigger.target, y))
    return x, y


def poison_mask(n: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Exactly round(ratio * n) of n samples chosen at random (seeded)."""
    k = int(round(ratio * n))
    mask = torch.zeros(n, dtype=torch.bool, device="cpu")
    mask[torch.randperm(n, generator=generator, device="cpu")[:k]] = True
    return mask
