"""Attack 9b, a malicious client (docs/protocol.md section 9b).

The server is honest. One of the K clients, `malicious_client` (0-indexed), triggers and
relabels to the target a fixed, seeded `poison_ratio` share of its own data, and trains
on it like any client; the other clients' passes of the round robin then have to carry
(or wear down) the backdoor. Nothing else changes: the server's side is Attack's."""
from __future__ import annotations

from typing import Any

import torch

from ..data.trigger import poison_, poison_mask
from ..training.context import RunContext
from .base import Attack

MASK_SEED_OFFSET = 4


class ClientAttack(Attack):
    name = "client"

    def prepare(self, ctx: RunContext) -> None:
        self.share = ctx.cfg.malicious_client + 1  # share 0 is the attacker's in the server-side attacks
        n = len(ctx.data.shares[self.share])
        gen = torch.Generator(device="cpu").manual_seed(ctx.cfg.seed + MASK_SEED_OFFSET)
        self.mask = poison_mask(n, ctx.cfg.poison_ratio, gen).to(ctx.device)

    def client_batch(self, ctx: RunContext, share: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = ctx.client_batch(share, idx)
        if share != self.share:
            return x, y
        # Gathers are copies: poisoning them in place leaves the stored share untouched.
        return poison_(x, y.clone(), self.mask[idx], ctx.trigger)

    def summary(self) -> dict[str, Any]:
        return {"malicious_client": self.share - 1, "poisoned_samples": int(self.mask.sum()),
                "client_samples": int(self.mask.numel())}
