"""The house: engine/ knows nothing of the UI (importing all of it never imports textual, rich
or typer); neither engine/ nor sltui/ has an import circle; each has at most six modules at
its top."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def _engine_imports(top: str = "engine") -> dict[str, set[str]]:
    """module of package `top` -> the modules of `top` it imports (TYPE_CHECKING and
    function-level imports included), read from the source with ast."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / top).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        package = parts[:-1] if parts[-1] != "__init__" else parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                found.add(module)
                found |= {f"{module}.{a.name}" for a in node.names}  # `from . import x` names a module
        graph[name] = found
    return {name: {m for m in found if m in graph and m != name} for name, found in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_sees_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_engine_modules_import_no_circle():
    graph = _engine_imports()
    assert {"engine.training.protocol", "engine.attacks.base"} <= set(graph)
    assert "engine.training.context" in graph["engine.attacks.base"]  # the scan sees relative imports
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_sltui_modules_import_no_circle():
    """No circle in sltui either, function-level imports included: what the command line
    and the terminal UI share (the run store's views, starting a run on a thread, the
    reports) lives below both, and `sweep`, `arena` and `reproduce` share their options
    through sltui/cli/batch.py."""
    graph = _engine_imports("sltui")
    assert "sltui.runs.index" in graph["sltui.cli.commands"]
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)
    assert not any(m.startswith("sltui.tui") for m in graph["sltui.cli.sweep"] | graph["sltui.runs.threads"])
    assert not any(m.startswith(("sltui.cli", "sltui.tui")) for name, found in graph.items()
                   if name.startswith(("sltui.runs", "sltui.reports")) for m in found)


@pytest.mark.parametrize("package", ["engine", "sltui"])
def test_at_most_six_modules_at_a_package_top(package):
    """The house (DESIGN.md): contracts at the ground, everything else in its wing."""
    top = sorted(p.name for p in (ROOT / package).glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= 6, top


def test_no_late_imports():
    """Imports sit at the top of a module (or inside a function), never after code that
    has to run first: no `noqa: E402` in engine/ or sltui/."""
    late = [str(p.relative_to(ROOT)) for folder in ("engine", "sltui") for p in (ROOT / folder).rglob("*.py")
            if "noqa: E402" in p.read_text()]
    assert late == []
