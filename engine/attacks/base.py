"""The hooks an attack has into the split-learning protocol.

The protocol calls, per run: ``prepare`` once before training; per training step:
``server_loss`` (the server's forward from the wire, with any extra terms), then
``zero_grad``/``step`` around the backward pass for the attack's own optimizers, and
``set_lr`` once an epoch. An attack is one file that subclasses this.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ..protocol import RunContext


@dataclass
class StepLoss:
    """The loss to backpropagate and its parts, for the record."""
    total: torch.Tensor
    clean: torch.Tensor
    malicious: torch.Tensor | None = None


class Attack:
    name = "none"

    def prepare(self, ctx: "RunContext") -> None:
        """Work before training (e.g. the autoencoder's phases 1-3)."""

    def server_loss(self, ctx: "RunContext", wire: torch.Tensor, labels: torch.Tensor) -> StepLoss:
        """The server's forward on the smashed data that crossed the wire. `wire` is a
        leaf that requires grad: its .grad after backward is all the client receives."""
        loss = F.cross_entropy(ctx.server(wire), labels)
        return StepLoss(loss, loss.detach())

    def zero_grad(self) -> None:
        pass

    def step(self) -> None:
        pass

    def set_lr(self, lr: float) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        """Facts about the attack to keep in the run file."""
        return {}
