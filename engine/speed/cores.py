"""How many CPU threads each of several runs may use. Torch-free (the sweep driver uses it)."""
from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may use: OMP_NUM_THREADS where set, else its CPU affinity."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def cpu_threads_for(concurrent_runs: int, cores: int) -> int:
    """Intra-op threads for each of `concurrent_runs` runs training in one process on `cores`.
    Never more threads than cores in all: OpenMP's spinning barriers make an oversubscribed
    run many times slower (see docs/benchmark.md)."""
    return max(1, cores // max(1, concurrent_runs))
