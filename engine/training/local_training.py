"""Training a whole (unsplit) network on tensors: the attacker's own phase-1 networks
and the transfer check's last-layer retraining. No wire here: the attacker owns both
halves of these networks."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..speed.adam import set_lr

BatchFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, n_samples: int, get_batch: BatchFn,
        epochs: int, batch_size: int, generator: torch.Generator, device: torch.device,
        lr_for_epoch: Callable[[int], float] | None = None,
        on_epoch: Callable[[int, float], None] = lambda epoch, loss: None,
        check_stop: Callable[[], None] = lambda: None) -> float:
    """Cross-entropy training for `epochs` shuffled passes over `n_samples` indices;
    `get_batch(indices)` returns (inputs, labels); the indices are drawn on the host from
    the CPU `generator` and moved to `device`. Returns the last epoch's mean loss."""
    loss_mean = float("nan")

    def batch_loss(i: int, idx: torch.Tensor) -> torch.Tensor:
        x, y = get_batch(idx)
        return F.cross_entropy(model(x), y)

    for epoch in range(epochs):
        if lr_for_epoch is not None:
            set_lr(optimizer, lr_for_epoch(epoch))
        model.train()
        order = torch.randperm(n_samples, generator=generator, device="cpu").to(device)
        loss_mean = train_pass(optimizer, order, batch_size, batch_loss, check_stop)
        on_epoch(epoch + 1, loss_mean)
    return loss_mean


def train_pass(optimizer: torch.optim.Optimizer, order: torch.Tensor, batch_size: int,
               batch_loss: Callable[[int, torch.Tensor], torch.Tensor],
               check_stop: Callable[[], None] = lambda: None) -> float:
    """One pass over the indices `order` in batches of `batch_size`: for batch i with
    indices idx, `batch_loss(i, idx)` and an optimizer step on it. Returns the pass's
    mean loss (summed on the device, one host sync at the end). The one training pass of
    fit, the hijack attack's shadow stages and the autoencoder's injector."""
    total = torch.zeros((), device=order.device)
    batches = 0
    for i, idx in enumerate(order.split(batch_size)):
        check_stop()
        loss = batch_loss(i, idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        batches += 1
    return (total / max(batches, 1)).item()
