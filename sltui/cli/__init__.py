"""The `sltui` command line: commands (main.py), the run-config flags (config_flags.py),
headless runs (headless.py), sweeps and aggregates (sweep.py) and the report (report.py).
`main` is the console entry point."""
from .main import main

__all__ = ["main"]
