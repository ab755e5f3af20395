"""What a training step works with: the run's context, the losses a step returns, and the
hooks an attack offers the protocol.

The protocol (protocol.py) and the attacks (engine/attacks/) both import this module and
not each other: an attack is handed a RunContext, and a RunContext holds the attack only
through the AttackHooks it implements."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import nn

from ..config import RunConfig
from ..data.datasets import ExperimentData
from ..data.trigger import Trigger
from ..events import Event
from ..speed.state import SpeedState


class Cancelled(Exception):
    """The stop event was set: the run ends at the next batch boundary."""


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
    and returns its loss, detached. `innocent(wire, labels)` is the server's side of the
    innocent part: its loss to backpropagate, with its unweighted value detached as
    `clean`; `total(clean, other)` the step's loss for the record."""
    run: Callable[[], torch.Tensor]
    innocent: Callable[[torch.Tensor, torch.Tensor], StepLoss]
    total: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class AttackHooks(Protocol):
    """The calls the protocol and the runner make into an attack; engine/attacks/base.py's
    Attack implements them (as no attack) and documents each."""
    name: str

    def prepare(self, ctx: RunContext) -> None: ...

    def start_epoch(self, ctx: RunContext, epoch: int) -> None: ...

    def end_epoch(self, ctx: RunContext, epoch: int) -> None: ...

    def server_trains(self) -> bool: ...

    def client_batch(self, ctx: RunContext, share: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def server_loss(self, ctx: RunContext, wire: torch.Tensor, labels: torch.Tensor) -> StepLoss: ...

    def concurrent_half(self, ctx: RunContext) -> ConcurrentHalf | None: ...

    def zero_grad(self) -> None: ...

    def step(self) -> None: ...

    def set_lr(self, lr: float) -> None: ...

    def summary(self) -> dict[str, Any]: ...


class ClientWatch(Protocol):
    """The honest clients' detectors as the protocol sees them (engine/defenses/suite.py
    ClientDefenses implements it): per client step, `begin(k, x, y)` returns the labels to
    send and None or a call `received(cut_grad, step_loss) -> apply the update?` made
    after the client's backward pass."""

    halted: bool  # the clients stopped split learning at a flag (--on-flag stop)

    def begin(self, k: int, x: torch.Tensor, y: torch.Tensor
              ) -> tuple[torch.Tensor, Callable[[torch.Tensor, StepLoss], bool] | None]: ...


@dataclass
class RunContext:
    """Everything one run's training steps need; `speed` holds how they compute."""
    cfg: RunConfig
    data: ExperimentData
    trigger: Trigger
    device: torch.device
    client: nn.Module
    server: nn.Module
    client_opts: list[torch.optim.Optimizer]
    server_opt: torch.optim.Optimizer
    attack: AttackHooks
    generator: torch.Generator
    run_id: str = ""
    emit: Callable[[Event], None] = lambda e: None
    stop: threading.Event | None = None
    speed: SpeedState = field(default_factory=SpeedState)
    defenses: ClientWatch | None = None

    def check_stop(self) -> None:
        """Called at every batch boundary: ends the run if asked to stop, and takes a
        changed share of the CPU's threads (SpeedState.follow_thread_share)."""
        if self.stop is not None and self.stop.is_set():
            raise Cancelled()
        self.speed.follow_thread_share()

    @property
    def halted(self) -> bool:
        """Split learning has ended: the honest clients stopped at a detector's flag."""
        return self.defenses is not None and self.defenses.halted

    def close(self) -> None:
        """Stop the second stream's thread (the context stays usable, on one stream)."""
        self.speed.close()

    def joined(self) -> nn.Module:
        return nn.Sequential(self.client, self.server)

    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move a freshly built network to the run's device the way the options say. The
        attack uses it for its own networks."""
        return self.speed.setup_module(module, self.device)

    def make_adam(self, params) -> torch.optim.Adam:
        return self.speed.make_adam(params, self.cfg)

    def batch_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.speed.batch_input(x)

    def autocast(self):
        return self.speed.autocast(self.device)

    def client_batch(self, share: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised images, labels) of rows `idx` of share `share` (0 = attacker)."""
        split = self.data.shares[share]
        if self.speed.prepared is not None:
            x = self.speed.prepared.shares_x[share][idx]
        else:
            x = self.data.norm.apply(split.x[idx])
        return self.batch_input(x), split.y[idx]

    def watch(self, k: int, x: torch.Tensor, y: torch.Tensor
              ) -> tuple[torch.Tensor, Callable[[torch.Tensor, StepLoss], bool] | None]:
        """(labels client `k` sends, its detectors' call after its backward pass, or None)."""
        return (y, None) if self.defenses is None else self.defenses.begin(k, x, y)
