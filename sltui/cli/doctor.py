"""`sltui doctor`: print engine.training.doctor's findings, one line each, and exit 1 if a run
could not start (any error), 0 otherwise (warnings included)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.text import Text

from engine.config import DEVICES

from ..format import literal

STYLES = {"ok": "green", "warning": "yellow", "error": "bold red"}


def register(app: typer.Typer, console: Any, default_runs_dir: Callable[[Optional[Path]], Path],
             fail: Callable[[str], None], runs_dir_help: str,
             default_data_root: Callable[[Optional[str]], Optional[str]] = lambda d: d) -> None:
    """Add the doctor command to the `sltui` app."""

    @app.command("doctor")
    def doctor_command(
        data_root: Optional[str] = typer.Option(None, "--data-root", help="folder holding the datasets "
                                                "(default $SLTUI_DATA or ~/.cache/sltui/data)"),
        runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=runs_dir_help),
        device: Optional[str] = typer.Option(None, "--device", help="also train one tiny synthetic epoch on "
                                             "this device: auto, cpu or cuda"),
    ) -> None:
        """Check this machine before a first run (versions, GPUs, threads, datasets, runs folder).

        Python, torch, CUDA and each GPU, threads, the compiled kernels, the datasets under
        the data root and the runs folder: one line per finding."""
        from engine.training.doctor import diagnose

        if device is not None and device not in DEVICES:
            fail(f"--device must be one of {', '.join(DEVICES)} (got {device!r})")
        counts = {"ok": 0, "warning": 0, "error": 0}
        for finding in diagnose(default_data_root(data_root), default_runs_dir(runs_dir), device):
            counts[finding.level] += 1
            label = "  ok" if finding.level == "ok" else finding.level + ":"
            console.print(Text.assemble((label, STYLES[finding.level]), literal(f" {finding.topic}: {finding.text}")),
                          soft_wrap=True, highlight=False)
        if counts["error"]:
            console.print(f"{counts['error']} error(s), {counts['warning']} warning(s): a run could not start here",
                          highlight=False)
            raise typer.Exit(1)
        console.print(f"no errors, {counts['warning']} warning(s)", highlight=False)
