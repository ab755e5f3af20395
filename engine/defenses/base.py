"""What a client-side detector sees and what it answers (docs/protocol.md section 10).

A detector lives inside one honest client. Before training it may get a `ClientView`
(the client's own data, a copy of its own network, the architecture it trains); after
every step it gets one frozen `Observation` (tensors and numbers the client holds
anyway). It never gets the server's network, optimiser or the attack: the suite
(suite.py) builds both values and is the only caller. A detector answers per step
whether it flags the server now, and per epoch one score in [0, 1] where 1 looks
honest. It prints nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ClientView:
    """What an honest client knows before training: its index, its share (normalised
    inputs and labels), a copy of its own network as training starts, and the
    architecture and hyperparameters everyone agreed on (model, cut, shapes, batch
    size, learning rate, weight decay, seed)."""
    client: int
    inputs: torch.Tensor
    labels: torch.Tensor
    network: nn.Module
    model: str
    cut: int
    input_shape: tuple[int, int, int]
    num_classes: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int


@dataclass(frozen=True)
class Observation:
    """One step as the client saw it. `cut_grad` is the gradient the server sent back
    for the client's smashed data (one row per sample); `first_grad` the flattened
    gradient of the client's first-layer weight that it produced; `loss` the loss the server reported; `sent_labels` the
    labels the client sent (they differ from `labels` on a SplitGuard fake batch,
    `fake`). `epoch` and `step` count from 1; `step` within the client's epoch."""
    client: int
    epoch: int
    step: int
    inputs: torch.Tensor
    labels: torch.Tensor
    sent_labels: torch.Tensor
    fake: bool
    cut_grad: torch.Tensor
    first_grad: torch.Tensor
    loss: torch.Tensor


class Detector:
    """One detector in one client. Subclasses (one file each) override what they need."""
    name = ""

    def prepare(self, view: ClientView) -> None:
        """Work before training (SplitOut's honest examples)."""

    def fake_labels(self, labels: torch.Tensor) -> torch.Tensor | None:
        """Labels to send instead of `labels` for a fake batch (whose update the client
        does not apply), or None for a regular batch. Called once per step, first."""
        return None

    def observe(self, obs: Observation) -> bool:
        """Take in one step; True when the detector flags the server at this step."""
        raise NotImplementedError

    def epoch_score(self) -> float | None:
        """The score over the epoch that just ended (1 looks honest, 0 hijacked), or
        None when the epoch gave it nothing to score; starts the next epoch."""
        raise NotImplementedError

    def trace(self) -> Any:
        """What calibration needs of the epoch that just ended (docs/detectors.md,
        "Calibration"), JSON-able, or None when the detector was not asked to trace."""
        return None

    def facts(self) -> dict[str, Any]:
        """Counts worth keeping in the run file (e.g. SplitGuard's fake batches)."""
        return {}


def sigmoid(x: float) -> float:
    """The logistic function, without overflow for large |x|."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
