"""The `sltui` command line: the commands (commands.py), the run-config flags
(config_flags.py), headless runs (headless.py), sweeps and aggregates (sweep.py), the
report (report.py) and `sltui doctor` (doctor.py). `main` is the console entry point."""
from .commands import main

__all__ = ["main"]
