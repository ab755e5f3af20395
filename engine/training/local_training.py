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
    for epoch in range(epochs):
        if lr_for_epoch is not None:
            set_lr(optimizer, lr_for_epoch(epoch))
        model.train()
        total = torch.zeros((), device=device)
        batches = 0
        for idx in torch.randperm(n_samples, generator=generator, device="cpu").to(device).split(batch_size):
            check_stop()
            x, y = get_batch(idx)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            batches += 1
        loss_mean = (total / max(batches, 1)).item()
        on_epoch(epoch + 1, loss_mean)
    return loss_mean
