"""The `sltui` command line: the commands (commands.py), the run-config flags
(config_flags.py), the root options (root.py), headless runs (headless.py), cancellation by
signals or a closed stdout (signals.py), sweeps and aggregates (sweep.py), the
report (report.py) and `sltui doctor` (doctor.py). `main` is the console entry point."""
from .commands import main

__all__ = ["main"]
