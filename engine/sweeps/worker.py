"""One sweep job in its own process: `python -m engine.sweeps.worker CONFIG_JSON RUN_ID RUNS_DIR`.

Writes the run file like `sltui run --headless` does. SIGINT, SIGTERM and SIGHUP end the run
as cancelled (engine/signals.py). Exit code: 0 completed, 1 failed, 130 cancelled, 2 it could not start (bad
config, missing data; the reason is the last line printed).
"""
from __future__ import annotations

import sys
import threading

from ..config import RunConfig
from ..errors import ConfigError, DataError
from ..signals import stop_on_signals
from ..store import RunStore

EXIT_CODES = {"completed": 0, "failed": 1, "cancelled": 130}


def run_point(config_json: str, run_id: str, runs_root: str, stop: threading.Event | None = None,
              threads: int | None = None) -> tuple[str, str | None]:
    """Run one config into `runs_root/run_id/run.json`; return (status, error).
    Status 'error' means it never started (no run file)."""
    import torch

    from ..training.runner import run

    if threads:
        torch.set_num_threads(threads)
    try:
        cfg = RunConfig.from_json(config_json)
        result = run(cfg, RunStore(runs_root).recorder(), stop, run_id)
    except (ConfigError, DataError, OSError) as exc:
        return "error", str(exc)
    return result.status, (result.error.splitlines()[0] if result.error else None)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m engine.sweeps.worker CONFIG_JSON RUN_ID RUNS_DIR", file=sys.stderr)
        return 2
    stop = threading.Event()
    with stop_on_signals(stop):
        status, error = run_point(argv[0], argv[1], argv[2], stop)
    print(f"{argv[1]}: {status}" + (f": {error}" if error else ""), flush=True)
    return EXIT_CODES.get(status, 2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
