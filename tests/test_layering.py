"""engine/ knows nothing of the UI: importing all of it never imports textual, rich or typer."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import importlib, json, pkgutil, sys
import engine
names = ["engine"] + [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
for name in names:
    importlib.import_module(name)
ui = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "rich", "typer", "textual_plotext", "plotext", "sltui"))
print(json.dumps({"modules": names, "ui": ui}))
"""


def test_engine_imports_no_ui():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"engine.training.runner", "engine.store", "engine.attacks.surrogate"} <= set(report["modules"])
    assert report["ui"] == [], f"engine pulls in UI modules: {report['ui']}"
