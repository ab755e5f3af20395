"""Choosing the torch device for a run."""
from __future__ import annotations

import platform
import sys

import torch

from ..config import ConfigError
from .cores import available_cores, cpu_threads_for
from .fallbacks import public_api_only


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible here; use --device cpu (or auto)")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict:
    from .. import __version__

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "sltui": __version__,
        "platform": platform.platform(),
        "public_api_only": public_api_only(),
    }


# The intra-op threads each run in this process may use (share_cpu_threads), None while
# nobody shares the cores. torch.set_num_threads reaches only the thread that calls it
# (OpenMP keeps the count per thread), so every run's thread reads this at each batch
# boundary and sets its own count (SpeedState.follow_thread_share).
_thread_share: int | None = None


def share_cpu_threads(concurrent_runs: int) -> int:
    """Share the cores among `concurrent_runs` runs of this process: the calling thread
    and every run's thread (at its next batch) take this many intra-op threads; returned."""
    global _thread_share
    threads = cpu_threads_for(concurrent_runs, available_cores())
    _thread_share = threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def thread_share() -> int | None:
    """The current per-run share of intra-op threads, or None when nothing shares them."""
    return _thread_share
