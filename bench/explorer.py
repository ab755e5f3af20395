"""How the explorer copes with thousands of runs: `sltui runs list`, `sltui runs aggregate`
and the terminal UI's first rows, over N synthetic run files, with and without the run
index (sltui/runs/index.py) already built; and how fast the TUI's new-run form opens, new
and as a clone (issue 31: under 0.3 s once built).

The run files are real ones (the 90-epoch runs under examples/attacks/grid) copied and
perturbed: each gets a new id, seed and creation time, its per-epoch metrics moved by a
little noise and its epochs brought to 90, so each file has the real shape and size.

    python bench/explorer.py                 # 20 and 2,000 runs, results/explorer.json
    python bench/explorer.py --sizes 20,200  # a quick look

Every measurement runs in a fresh process (`python -m sltui ...`, or the app under
Textual's headless driver): wall time from start to exit (or to the first rows drawn) and
the process's peak resident memory (wait4). `cold` = no index yet; `warm` = the index is
current (the usual case: it is kept up to date by every listing).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "examples" / "attacks" / "grid"
EPOCHS = 90

TUI_PROBE = r"""
import asyncio, json, os, resource, sys, time
t0 = float(os.environ["BENCH_T0"])
from textual.widgets import DataTable
from sltui.tui.app import SlTuiApp
from sltui.tui.screens.browser import BrowserScreen
from sltui.tui.screens.help import HelpScreen
from sltui.tui.screens.new_run import NewRunScreen

async def shown(pilot, key, screen_type):
    # Seconds from the key to its screen on top, drawn (the pilot waits for the app to idle).
    start = time.perf_counter()
    await pilot.press(key)
    while not isinstance(pilot.app.screen, screen_type):
        await pilot.pause(0)
    await pilot.pause()
    return time.perf_counter() - start

async def main():
    # As `sltui` opens it (launch): the form is built, off screen, once the runs are listed.
    app = SlTuiApp(runs_dir=sys.argv[1], poll_interval=3600, prebuild_form=True)
    async with app.run_test(size=(100, 30)) as pilot:
        first = None
        while True:
            try:
                table = app.screen.query_one("#runs", DataTable)
            except Exception:
                table = None
            if table is not None and table.row_count and first is None:
                first = time.time() - t0
                rows_first = table.row_count
            if first is not None and app.index.pending == 0:
                break
            await pilot.pause(0.01)
        every = time.time() - t0
        while not (app.is_screen_installed("new-run") and app.get_screen("new-run").is_mounted):
            await pilot.pause(0.05)
        await pilot.pause(2.5)                       # its trial showing, then idle
        form = {"form_first_s": await shown(pilot, "n", NewRunScreen)}
        reopen, clone = [], []
        for _ in range(3):
            await pilot.press("escape"); await pilot.pause(0.3)
            reopen.append(await shown(pilot, "n", NewRunScreen))
        for _ in range(3):
            await pilot.press("escape"); await pilot.pause(0.3)
            clone.append(await shown(pilot, "C", NewRunScreen))
        await pilot.press("escape"); await pilot.pause(0.3)
        helps = []
        for _ in range(3):                           # the floor: the smallest dialog, for scale
            helps.append(await shown(pilot, "question_mark", HelpScreen))
            await pilot.press("escape"); await pilot.pause(0.3)
        form.update(form_again_s=min(reopen), clone_s=min(clone), clone_first_s=clone[0], help_s=min(helps))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"first": first, "every": every, "rows": rows_first, "rss": rss, **form}))
asyncio.run(main())
"""


def templates() -> list[dict]:
    docs = []
    for path in sorted(TEMPLATES.glob("*/run.json")):
        doc = json.loads(path.read_text())
        if doc.get("status") == "completed" and len(doc.get("epochs") or []) >= 60:
            docs.append(doc)
    if not docs:
        raise SystemExit(f"no 60+ epoch run files under {TEMPLATES}")
    return docs


def synthetic_run(template: dict, i: int, rng: random.Random) -> dict:
    doc = json.loads(json.dumps(template))
    cfg = doc["config"]
    cfg["seed"] = i
    cfg["cut"] = rng.choice([1, 2, 3])
    epochs = doc["epochs"]
    while len(epochs) < EPOCHS:                       # bring every run to 90 epochs
        epochs.append({**epochs[-1], "epoch": len(epochs) + 1})
    del epochs[EPOCHS:]
    for e in epochs:
        for key in ("cda", "asr", "val_acc"):
            if isinstance(e.get(key), (int, float)):
                e[key] = min(100.0, max(0.0, e[key] + rng.gauss(0, 0.5)))
        for key in ("train_loss", "val_loss", "seconds", "samples_per_s"):
            if isinstance(e.get(key), (int, float)):
                e[key] *= 1 + rng.gauss(0, 0.02)
    doc["final"] = {**epochs[-1]}
    doc["best"] = {**max(epochs, key=lambda e: e.get("val_acc") or 0)}
    day = 1 + i // 1000
    stamp = f"202611{day:02d}-{i // 60 % 24:02d}{i % 60:02d}{rng.randrange(60):02d}"
    doc["id"] = f"{stamp}-{cfg['dataset']}-{cfg['model']}-c{cfg['cut']}-k{cfg['clients']}-{cfg['attack']}-{i:04x}"
    doc["created"] = f"2026-11-{day:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00+00:00"
    doc["pid"] = None
    return doc


def write_runs(folder: Path, n: int, seed: int = 0) -> int:
    """N run files under `folder`; returns their total size in bytes."""
    rng = random.Random(seed)
    base = templates()
    total = 0
    for i in range(n):
        doc = synthetic_run(base[i % len(base)], i, rng)
        path = folder / doc["id"] / "run.json"
        path.parent.mkdir(parents=True)
        text = json.dumps(doc, indent=1)
        path.write_text(text)
        total += len(text)
    return total


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Wall seconds and peak RSS (MB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return {"seconds": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def tui_first_rows(folder: Path) -> dict:
    """The TUI's first rows and all rows (seconds from process start), and how fast the
    new-run form opens once the browser is idle: the first time (prebuilt off screen), again
    (the best of three) and as a clone of the run under the cursor (the first and the best
    of three); seconds from the key to the form drawn; and the help dialog (`?`, a dozen
    lines of text), the floor of any screen on the same machine."""
    env = {**os.environ, "BENCH_T0": repr(time.time())}
    out = subprocess.run([sys.executable, "-c", TUI_PROBE, str(folder)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {"first_rows_s": round(got["first"], 3), "all_rows_s": round(got["every"], 3),
            "rows_at_first_paint": int(got["rows"]), "peak_rss_mb": round(got["rss"], 1),
            **{key: round(got[key], 3) for key in ("form_first_s", "form_again_s", "clone_first_s", "clone_s", "help_s")}}


def drop_index(folder: Path) -> None:
    for path in folder.glob(".index.sqlite*"):
        path.unlink()


def measure(folder: Path, repeats: int) -> dict:
    py = [sys.executable, "-m", "sltui"]
    listing = py + ["runs", "list", "--runs-dir", str(folder)]
    aggregate = py + ["runs", "aggregate", "--format", "table", "--runs-dir", str(folder)]
    out: dict = {}
    drop_index(folder)
    out["list_cold"] = timed(listing)
    out["list_warm"] = min((timed(listing) for _ in range(repeats)), key=lambda r: r["seconds"])
    out["aggregate_warm"] = min((timed(aggregate) for _ in range(repeats)), key=lambda r: r["seconds"])
    drop_index(folder)
    out["tui_cold"] = tui_first_rows(folder)
    out["tui_warm"] = min((tui_first_rows(folder) for _ in range(repeats)), key=lambda r: r["first_rows_s"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,2000", help="numbers of run files, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="warm measurements per size (the fastest is kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "explorer.json")
    args = parser.parse_args()
    results = {
        "what": "sltui runs list / runs aggregate / TUI first rows over N synthetic 90-epoch run files "
                "(copies of examples/attacks/grid); cold = no run index yet, warm = index current; "
                "wall seconds from process start, peak RSS of that process; form_* and clone_*: seconds "
                "from n (C) to the new-run form drawn, the browser idle (first: the first showing of the "
                "prebuilt form; again and clone: the best of three, clone_first: the first clone; help_s: the "
                "help dialog, the floor of any screen)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs), Python {platform.python_version()}",
        "load_average": os.getloadavg(),
        "sizes": {},
    }
    for n in map(int, args.sizes.split(",")):
        folder = Path(tempfile.mkdtemp(prefix=f"sltui-bench-{n}-"))
        try:
            size = write_runs(folder, n)
            print(f"{n} run files, {size / 1e6:.0f} MB", flush=True)
            results["sizes"][str(n)] = {"run_files_mb": round(size / 1e6, 1), **measure(folder, args.repeats)}
            print(json.dumps(results["sizes"][str(n)], indent=1), flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    sizes = results["sizes"]
    if len(sizes) >= 2:
        small, big = sizes[min(sizes, key=int)], sizes[max(sizes, key=int)]
        results["list_warm_ratio"] = round(big["list_warm"]["seconds"] / small["list_warm"]["seconds"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
