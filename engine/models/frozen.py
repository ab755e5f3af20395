"""A network part that never trains: the hijack's frozen copies of h, the reacting
client's own layers, the transfer check's body."""
from __future__ import annotations

from typing import Any

from torch import nn


class Frozen(nn.Module):
    """`module` with no gradients kept, in eval mode whatever train() asks, so its
    BatchNorm statistics stay as they were when it was frozen."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "Frozen":
        self.training = False
        self.module.eval()
        return self

    def forward(self, *args: Any) -> Any:
        return self.module(*args)
