"""Two CPU streams: independent halves of the work on two threads, one core each.

On a small CPU, torch's intra-op threads split each op of a LeNet step in two, and the
small ops scale poorly (see docs/benchmark.md). The surrogate attack's step has two
independent halves, the innocent client's and the surrogate's (see
engine/attacks/surrogate.py), and evaluation has independent batches; running them on two
threads with one intra-op thread each keeps both cores on whole ops. torch releases the
GIL inside its kernels, as do the compiled loops of engine/speed/kernels.py.

Results do not depend on which thread finishes first: each half computes exactly what it
would alone, gradients that two halves add into one parameter are a + b (commutative,
exact), and per-batch evaluation sums are combined in batch order.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

import torch

from . import device_check
from .flush import set_flush

T = TypeVar("T")


class CpuStreams:
    """The calling thread plus one worker thread, each with torch threads // 2 intra-op
    threads while a `parallel()` block runs. Use from one thread at a time. With `flush`,
    the worker thread flushes subnormal floats like the run's thread (engine/speed/flush.py):
    it sets the switch before its first op, so its own intra-op workers inherit it.
    With `check_devices`, the worker thread runs under the device check like the run's
    thread (engine/speed/device_check.py)."""

    def __init__(self, threads: int, flush: bool = False, check_devices: bool = False) -> None:
        self.threads = threads
        self.threads_each = max(threads // 2, 1)
        self._inside = False
        self._worker_threads = self.threads_each
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="sltui-stream", initializer=self._start_worker,
                                          initargs=(self.threads_each, flush, check_devices))

    @staticmethod
    def _start_worker(threads: int, flush: bool, check_devices: bool) -> None:
        set_flush(flush)
        torch.set_num_threads(threads)
        if check_devices:
            device_check.check_this_thread()

    def set_threads(self, threads: int) -> None:
        """A new thread count for the calling thread (outside `parallel()`), halved for
        each stream inside it; the worker thread takes its half before its next task."""
        self.threads, self.threads_each = threads, max(threads // 2, 1)
        torch.set_num_threads(self.threads_each if self._inside else threads)

    @contextlib.contextmanager
    def parallel(self) -> Iterator["CpuStreams"]:
        """While open, the calling thread runs with its share of the intra-op threads."""
        torch.set_num_threads(self.threads_each)
        self._inside = True
        try:
            yield self
        finally:
            self._inside = False
            torch.set_num_threads(self.threads)

    def submit(self, fn: Callable[[], T]) -> "Future[T]":
        """Run `fn` on the worker thread (inside `parallel()`)."""
        return self._worker.submit(self._with_worker_threads, fn)

    def _with_worker_threads(self, fn: Callable[[], T]) -> T:
        if self._worker_threads != self.threads_each:
            self._worker_threads = self.threads_each
            torch.set_num_threads(self._worker_threads)
        return fn()

    def map(self, fn: Callable[[T], object], items: Sequence[T]) -> list:
        """[fn(item) for item in items], the second half of the items on the worker
        thread and the first half here; results in item order."""
        half = (len(items) + 1) // 2
        with self.parallel():
            later = self.submit(lambda: [fn(item) for item in items[half:]])
            first = [fn(item) for item in items[:half]]
            return first + later.result()

    def close(self) -> None:
        self._worker.shutdown(wait=True)


def streams_for(device: torch.device, enabled: bool, flush: bool = False,
                check_devices: bool = False) -> CpuStreams | None:
    """Two streams for a CPU run with at least two intra-op threads, when enabled."""
    threads = torch.get_num_threads()
    if not enabled or device.type != "cpu" or threads < 2:
        return None
    return CpuStreams(threads, flush, check_devices)
