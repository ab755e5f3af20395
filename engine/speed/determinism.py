"""Deterministic computation on CUDA (EngineOptions.deterministic, on by default).

The same config and seed on the same GPU must give the same metrics. On CUDA that takes:
- ``torch.use_deterministic_algorithms(True)``: ops with a deterministic kernel use it
  (convolutions, index_add, index_select's backward, ...) and any op without one raises
  instead of computing a different sum each time;
- cuDNN in deterministic mode with its benchmark (timing-based algorithm choice) off;
- ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which cuBLAS needs for reproducible matrix
  products. torch reads it once, when the process first uses cuBLAS, so it is set here
  (unless the user set it) when the engine's runner is imported, before any CUDA work.

All three switches are process-wide, not per run or thread: ``deterministic_algorithms``
turns them on while any run that asks for it is active in the process (concurrent runs,
the TUI's threads, then all compute deterministically) and restores the previous
settings when the last such run ends, so other runs and tests are left as they were.

On the CPU a run is deterministic already (each op's work is split the same way for a
given thread count; engine/streams.py adds gradients of two halves, a commutative and
exact float addition of the same two numbers): torch's switch would only add work there
(it fills every new empty tensor, ``torch.utils.deterministic.fill_uninitialized_memory``),
so CPU runs leave it alone and only record the option.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

import torch

CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = ":4096:8"

os.environ.setdefault(CUBLAS_ENV, CUBLAS_DETERMINISTIC)

_lock = threading.Lock()
_holders = 0
_saved: tuple[bool, bool, bool, bool] | None = None


def _settings() -> tuple[bool, bool, bool, bool]:
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """While the block runs (and while any other such block in the process runs):
    deterministic algorithms, cuDNN deterministic, cuDNN benchmark off. Process-wide."""
    global _holders, _saved
    if not enabled:
        yield
        return
    with _lock:
        if _holders == 0:
            _saved = _settings()
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _saved is not None:
                algorithms, warn_only, cudnn_deterministic, benchmark = _saved
                torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
                torch.backends.cudnn.deterministic = cudnn_deterministic
                torch.backends.cudnn.benchmark = benchmark
                _saved = None


def for_run(device: torch.device, enabled: bool):
    """The switches a run on `device` needs: on CUDA when `enabled`, never on the CPU."""
    return deterministic_algorithms(enabled and device.type == "cuda")
