"""Draw docs/tui-browser.svg: the terminal UI's runs browser over examples/runs, as
Textual's own screenshot renders it (the README shows it).

    .venv/bin/python docs/capture_tui.py [--size 100x30] [--out docs/tui-browser.svg]

Run it again after a change to the browser's look. The app is driven headless by
Textual's test pilot; nothing is trained and no run file is written."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = "examples/runs"  # relative: the browser shows the folder it reads


async def capture(size: tuple[int, int], out: Path) -> None:
    from sltui.tui.app import SlTuiApp
    from sltui.tui.screens.browser import BrowserScreen
    from textual.widgets import DataTable

    app = SlTuiApp(runs_dir=RUNS, poll_interval=3600)
    async with app.run_test(size=size) as pilot:
        for _ in range(100):  # the browser reads the runs folder in the background
            await pilot.pause(0.05)
            if isinstance(app.screen, BrowserScreen) and app.screen.query_one("#runs", DataTable).row_count:
                break
        await pilot.pause(0.3)
        app.save_screenshot(filename=out.name, path=str(out.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="100x30", help="terminal columns x rows (default 100x30)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "tui-browser.svg"), help="SVG file to write")
    args = parser.parse_args(argv)
    try:
        cols, rows = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"error: --size must look like 100x30 (got {args.size!r})", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    asyncio.run(capture((cols, rows), out))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
