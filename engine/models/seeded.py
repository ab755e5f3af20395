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


def built(factory: Callable[[], M], device: torch.device | str = "cpu",
          generator: torch.Generator | None = None) -> M:
    """`factory()` built on the CPU (its weights drawn from `generator` when given, else
    from the global CPU generator) and moved to `device`."""
    with drawing_from(generator) if generator is not None else contextlib.nullcontext():
        with torch.device("cpu"):
            module = factory()
    return module.to(device)
