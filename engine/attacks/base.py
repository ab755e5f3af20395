"""The hooks an attack has into the split-learning protocol.

The protocol calls, per run: ``prepare`` once before training; per training step:
``server_loss`` (the server's forward from the wire, with any extra terms), then
``zero_grad``/``step`` around the backward pass for the attack's own optimizers, and
``set_lr`` once an epoch. An attack whose extra work is independent of the innocent
client's may also offer it as a ``ConcurrentHalf`` (run on a second CPU stream). An
attack is one file that subclasses this.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ..training.protocol import RunContext


@dataclass
class StepLoss:
    """The loss to backpropagate and its parts, for the record."""
    total: torch.Tensor
    clean: torch.Tensor
    malicious: torch.Tensor | None = None


@dataclass
class ConcurrentHalf:
    """A part of every training step that does not depend on the innocent client's part,
    so that it can run on a second CPU stream (engine/speed/streams.py) at the same time.

    `run()` does that part whole: its forwards, its backward (adding into the server's
    gradients, which the innocent part adds to as well) and its own optimizers' steps,
    and returns its loss, detached. `innocent(wire, labels)` gives the innocent part's
    (loss to backpropagate, its unweighted value detached); `total(clean, other)` the
    step's loss for the record."""
    run: Callable[[], torch.Tensor]
    innocent: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    total: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Attack:
    name = "none"

    def prepare(self, ctx: "RunContext") -> None:
        """Work before training (e.g. the autoencoder's phases 1-3)."""

    def server_loss(self, ctx: "RunContext", wire: torch.Tensor, labels: torch.Tensor) -> StepLoss:
        """The server's forward on the smashed data that crossed the wire. `wire` is a
        leaf that requires grad: its .grad after backward is all the client receives."""
        loss = F.cross_entropy(ctx.server(wire), labels)
        return StepLoss(loss, loss.detach())

    def concurrent_half(self, ctx: "RunContext") -> ConcurrentHalf | None:
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
