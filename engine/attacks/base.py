"""The hooks an attack has into the split-learning protocol.

The protocol calls, per run: ``prepare`` once before training; per epoch: ``start_epoch``
and ``set_lr`` before it, ``end_epoch`` after its metrics; per training step:
``client_batch`` (the data a client trains on), ``server_loss`` (the server's forward from
the wire, with any extra terms), then ``zero_grad``/``step`` around the backward pass for
the attack's own optimizers. An attack whose extra work is independent of the innocent
client's may also offer it as a ``ConcurrentHalf`` (run on a second CPU stream). An
attack is one file that subclasses this.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..training.context import ConcurrentHalf, RunContext, StepLoss


class Attack:
    """No attack: the plain server. Each attack subclasses it (one file each) and
    overrides the hooks it needs (training/context.py AttackHooks lists them)."""
    name = "none"

    def prepare(self, ctx: RunContext) -> None:
        """Work before training (e.g. the autoencoder's phases 1-3)."""

    def start_epoch(self, ctx: RunContext, epoch: int) -> None:
        """Before 0-indexed training epoch `epoch` (e.g. the hijack attack's Steal and
        Finetune stages once its honest warm-up is over)."""

    def end_epoch(self, ctx: RunContext, epoch: int) -> None:
        """After epoch `epoch`'s metrics were emitted (e.g. the hijack attack's Implant losses)."""

    def server_trains(self) -> bool:
        """Whether the server's network is in training mode during split learning (its
        BatchNorm statistics move); an attack that freezes it says no."""
        return True

    def client_batch(self, ctx: RunContext, share: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (normalised images, labels) client `share` (1..K) trains on for rows `idx`:
        its own data, unless the attack is a client's (engine/attacks/client.py)."""
        return ctx.client_batch(share, idx)

    def server_loss(self, ctx: RunContext, wire: torch.Tensor, labels: torch.Tensor) -> StepLoss:
        """The server's forward on the smashed data that crossed the wire. `wire` is a
        leaf that requires grad: its .grad after backward is all the client receives."""
        loss = F.cross_entropy(ctx.server(wire), labels)
        return StepLoss(loss, loss.detach())

    def concurrent_half(self, ctx: RunContext) -> ConcurrentHalf | None:
        """The part of each step that can run beside the innocent client's, or None (the
        step then runs whole through ``server_loss``). Must be the same math."""
        return None

    def zero_grad(self) -> None:
        pass

    def step(self) -> None:
        pass

    def set_lr(self, lr: float) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        """Facts about the attack to keep in the run file."""
        return {}
