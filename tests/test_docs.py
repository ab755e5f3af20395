"""Docs generated from the code cannot drift: the command reference is the Typer app's own
Markdown (docs/commands.md), and the README stays a short page that links it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = [sys.executable, "-m", "typer", "sltui.cli.commands", "utils", "docs", "--name", "sltui",
              "--title", "sltui command reference"]


def test_the_command_reference_is_what_the_app_says(tmp_path):
    out = tmp_path / "commands.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    done = subprocess.run(REGENERATE + ["--output", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == (ROOT / "docs" / "commands.md").read_text(), (
        "docs/commands.md is stale: write it again with `python -m typer sltui.cli.commands utils docs --name sltui "
        "--title 'sltui command reference' --output docs/commands.md`")


def test_the_readme_is_short_and_links_every_command():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    commands = re.findall(r"^## `sltui ([a-z-]+)`$", (ROOT / "docs" / "commands.md").read_text(), re.M)
    assert {"run", "sweep", "arena", "reproduce", "calibrate", "runs"} <= set(commands)
    for command in commands:
        assert f"commands.md#sltui-{command}" in readme, command


def tracked(path: Path) -> bool:
    """Whether git tracks `path` (in a checkout where the reproduction is still running, its
    newer run files are not yet in the report); True outside a git checkout."""
    done = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=ROOT, capture_output=True)
    return done.returncode == 0 or b"not a git repository" in done.stderr


def test_the_reproduction_report_and_the_readme_say_what_the_committed_runs_say(tmp_path):
    """docs/reproduction.md, examples/paper/report/cells.csv and the README's headline are
    what `sltui reproduce report` writes from the committed run files, byte for byte."""
    from engine.store import RunStore
    from sltui.reports.reproduction import build_rows, headline_sentence, write_reproduction

    paper = ROOT / "examples" / "paper"
    docs = [{**e.doc, "status": e.status} for e in RunStore(paper).entries() if e.doc is not None and tracked(e.path)]
    out = tmp_path / "report"
    write_reproduction(docs, out, tmp_path / "docs" / "reproduction.md",
                       "sltui reproduce report --runs-dir examples/paper --doc docs/reproduction.md")
    assert (out / "cells.csv").read_text() == (paper / "report" / "cells.csv").read_text()
    written = (tmp_path / "docs" / "reproduction.md").read_text().replace("../report/figures/", "")
    committed = (ROOT / "docs" / "reproduction.md").read_text().replace("../examples/paper/report/figures/", "")
    assert written == committed
    readme = (ROOT / "README.md").read_text()
    quoted = readme.split("<!-- headline -->")[1].split("<!-- /headline -->")[0]
    assert quoted == headline_sentence(build_rows(docs))
