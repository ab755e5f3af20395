"""The attacker's auxiliary set and its poisoned share, shared by the server-side attacks.

The auxiliary set is share 0 (the attacker's), or a seeded random N images of it with
`aux_size` (the "limited data" setting of docs/protocol.md section 9a)."""
from __future__ import annotations

import torch

from ..data.datasets import Split, limit_indices
from ..data.trigger import poison_, poison_mask
from ..training.context import RunContext

AUX_SEED_OFFSET = 7


def auxiliary_set(ctx: RunContext, prepared: bool = False) -> Split:
    """Share 0, limited to `aux_size` images. With `prepared`, `x` holds the images already
    normalised (EngineOptions.prenormalize) instead of uint8."""
    share = ctx.data.shares[0]
    x = ctx.speed.prepared.shares_x[0] if prepared and ctx.speed.prepared is not None else share.x
    n = ctx.cfg.aux_size
    if n is None or n >= len(share):
        return Split(x, share.y)
    keep = limit_indices(len(share), n, ctx.cfg.seed + AUX_SEED_OFFSET).to(share.y.device)
    return Split(x[keep], share.y[keep])


class PoisonedShare:
    """The attacker's share with a fixed, seeded set of rows to poison; batches cycle
    through it in a fresh shuffled order each pass."""

    def __init__(self, share: Split, ratio: float, generator: torch.Generator, batch_size: int) -> None:
        self.share = share
        self.mask = poison_mask(len(share), ratio, generator).to(share.y.device)
        self.generator = generator
        self.batch_size = batch_size
        self._order: list[torch.Tensor] = []
        self._ready: tuple[torch.Tensor, torch.Tensor] | None = None

    def prestamp(self, x: torch.Tensor, trigger) -> None:
        """Poison the whole share once (EngineOptions.prenormalize): `x` is the share
        normalised; the mask and the trigger never change, so every later batch is a
        plain gather with the same values `batch` would compute."""
        x, y = x.clone(), self.share.y.clone()
        self._ready = poison_(x, y, self.mask, trigger)

    def next_indices(self) -> torch.Tensor:
        if not self._order:
            perm = torch.randperm(len(self.share), generator=self.generator, device="cpu").to(self.share.y.device)
            self._order = list(perm.split(self.batch_size))
        return self._order.pop(0)

    def batch(self, norm, trigger) -> tuple[torch.Tensor, torch.Tensor]:
        return self.take(self.next_indices(), norm, trigger)

    def take(self, idx: torch.Tensor, norm, trigger) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows `idx` of the share, normalised, the masked ones poisoned."""
        if self._ready is not None:
            return self._ready[0][idx], self._ready[1][idx]
        x = norm.apply(self.share.x[idx])
        y = self.share.y[idx].clone()
        return poison_(x, y, self.mask[idx], trigger)
