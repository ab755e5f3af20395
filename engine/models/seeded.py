"""Networks built on the host from a generator of their own, then moved to their device.

torch's layers initialise their weights from torch's global CPU generator and take no
generator of their own. So that a run's networks (and an attack's) get their initial
weights from the run's own seeded ``torch.Generator`` without reseeding, or leaving
changed, the process's global random state, ``drawing_from(generator)`` lends that
generator's state to the global CPU generator while the layers are built and takes the
advanced state back afterwards; ``torch.random.fork_rng`` puts the global state back as
it was. A lock keeps concurrent runs of one process (the TUI's threads) from drawing
from each other's generators meanwhile.

Networks are built on the CPU (explicitly, whatever the thread's default device) and
moved to the run's device before anyone can use them, so the same seed gives the same
initial weights on every device (CUDA's generators draw different numbers).

Dropout draws random numbers during training, too: the models use ``SeededDropout2d``,
whose masks come from a CPU generator of the network's own, which ``built`` derives from
the build's generator (without advancing it). So a run draws from no global generator
at all, and two runs in one process (the TUI's threads) never change each other's
numbers.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)

# Held while the global CPU generator is lent to a build (or seeded by the runner).
GLOBAL_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def drawing_from(generator: torch.Generator) -> Iterator[None]:
    """Inside the block, draws from torch's global CPU generator come from `generator`
    (which advances as if it had been used); the global state is restored on exit."""
    if generator.device.type != "cpu":
        raise ValueError("layers initialise on the CPU: pass a CPU generator")
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.set_rng_state(generator.get_state())
        try:
            yield
        finally:
            generator.set_state(torch.get_rng_state())


class SeededDropout2d(nn.Dropout2d):
    """nn.Dropout2d (whole channels zeroed with probability p, the rest scaled by
    1/(1-p)) whose masks are drawn on the CPU from `self.generator`, a generator of the
    network's own (set by `built`), and moved to the input's device: the same masks on
    every device. Without a generator it is nn.Dropout2d itself (torch's global generator)."""

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            return super().forward(x)
        if not self.training or self.p == 0:
            return x
        if self.p >= 1:
            return x * 0
        keep = 1.0 - self.p
        mask = torch.empty(x.shape[0], x.shape[1], *([1] * (x.dim() - 2)), device="cpu")
        mask.bernoulli_(keep, generator=self.generator).div_(keep)
        return x * mask.to(device=x.device, dtype=x.dtype, non_blocking=True)


def seed_dropout(module: nn.Module, generator: torch.Generator) -> None:
    """Give `module`'s SeededDropout2d layers one generator of their own, seeded from a copy
    of `generator`'s state (which does not advance)."""
    layers = [m for m in module.modules() if isinstance(m, SeededDropout2d)]
    if not layers:
        return
    copy = torch.Generator(device="cpu")
    copy.set_state(generator.get_state())
    own = torch.Generator(device="cpu").manual_seed(int(torch.randint(0, 2**62, (), generator=copy, device="cpu")))
    for layer in layers:
        layer.generator = own


def built(factory: Callable[[], M], device: torch.device | str = "cpu",
          generator: torch.Generator | None = None) -> M:
    """`factory()` built on the CPU (its weights drawn from `generator` when given, else
    from the global CPU generator) and moved to `device`; with `generator`, its dropout
    layers draw from a generator derived from it (seed_dropout)."""
    with drawing_from(generator) if generator is not None else contextlib.nullcontext():
        with torch.device("cpu"):
            module = factory()
    if generator is not None:
        seed_dropout(module, generator)
    return module.to(device)
