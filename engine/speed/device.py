"""Choosing the torch device for a run."""
from __future__ import annotations

import platform
import sys

import torch

from ..config import ConfigError
from .cores import available_cores, cpu_threads_for


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
    }


def share_cpu_threads(concurrent_runs: int) -> int:
    """Set torch's (process-wide) intra-op thread count for `concurrent_runs` runs; return it."""
    threads = cpu_threads_for(concurrent_runs, available_cores())
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
