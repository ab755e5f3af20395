"""Subnormal floats flushed to zero on every thread that computes a run on the CPU.

As a model converges, some of its gradients and Adam's second moments fall below
float32's smallest normal number (about 1.2e-38). x86 cores handle such subnormal
operands and results in microcode, many times slower than normal arithmetic, so a long
CPU run slows down epoch after epoch (see docs/benchmark.md, "Subnormal floats").
Flushing them to zero changes only values below 1.2e-38, far under anything the
metrics can see.

The switch (the FTZ and DAZ bits of the MXCSR register) belongs to each thread, so it
must reach every thread that runs a run's torch ops:
- the run's own thread: set here, before the run's first op;
- torch's intra-op worker threads: OpenMP gives every thread that starts a parallel
  region its own team of workers, created on first use as copies of that thread's
  floating-point state. Workers created before the flag was set keep computing with
  subnormals; they cannot be reached from Python, and workers created while the flag is
  set keep flushing after it is cleared. So a run stays on its caller's thread only when
  that thread flushes already and all of its intra-op workers do too (*checked* with
  `subnormals_survive`, a parallel product whose exact result is subnormal); otherwise it
  moves to a fresh thread, whose workers are created after the flag and end with it,
  leaving the caller's threads as they were;
- the second CPU stream (engine/streams.py): its thread sets the flag when it starts.

`set_flush_denormal` is public torch API; on CPUs without these bits it returns False
and the run goes on without the flush (recorded as such).
"""
from __future__ import annotations

import threading
from typing import Callable, TypeVar

import torch

T = TypeVar("T")

# Elements per intra-op thread of the probe: above torch's parallel grain size (32768),
# so an elementwise op over the probe is split across every worker of the team.
_PROBE_PER_THREAD = 1 << 16


def subnormals_survive() -> int:
    """How many results of a product whose exact value is subnormal (1e-30 * 1e-10)
    stay non-zero when computed on the calling thread and its intra-op workers: 0 when
    every one of them flushes."""
    n = _PROBE_PER_THREAD * max(torch.get_num_threads(), 1)
    tiny = torch.full((n,), 1e-30, dtype=torch.float32, device="cpu")
    return int(torch.count_nonzero(tiny * 1e-10))


def flushing_here() -> bool:
    """Whether the calling thread alone (no workers involved) flushes subnormals."""
    tiny = torch.full((1,), 1e-30, dtype=torch.float32, device="cpu")
    return bool((tiny * 1e-10).item() == 0.0)


def set_flush(enabled: bool) -> bool:
    """Set the calling thread's flush switch; False when the CPU has none."""
    return bool(torch.set_flush_denormal(enabled))


def call_with_flush(fn: Callable[[bool], T], enabled: bool) -> T:
    """Call `fn(flushed)` with subnormals flushed (or not) on every thread it computes
    on; `flushed` says whether the flush is in force (False when not enabled or not
    supported). The caller's threads are left as they were, its intra-op workers
    included: on the calling thread only when it flushes already and so do all its
    workers; otherwise on a fresh thread with the caller's intra-op thread count, whose
    workers (created there, with the flush) end with it. (Setting the caller's switch and
    running here would create any workers it does not have yet with the switch set, and
    they would keep flushing after the switch is put back, unreachable from Python.)
    The calling thread's own switch is restored afterwards."""
    before = flushing_here()
    supported = set_flush(enabled)
    try:
        if not enabled or not supported:
            return fn(False)
        if before and subnormals_survive() == 0:
            return fn(True)
        return _call_in_fresh_thread(lambda: fn(True))
    finally:
        set_flush(before)


def _call_in_fresh_thread(fn: Callable[[], T]) -> T:
    threads = torch.get_num_threads()
    outcome: dict[str, object] = {}

    def body() -> None:
        set_flush(True)
        torch.set_num_threads(threads)
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=body, name=f"{threading.current_thread().name}-flushed", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
