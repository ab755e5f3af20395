"""The explorer at real size, driven as a user drives it: the committed example run files,
the browser, keys; what is checked is what shows on the screen."""
from __future__ import annotations

import shutil

import pytest
from textual.widgets import DataTable

from engine.store import RunStore
from sltui.format import fmt_pct
from sltui.tui.app import SlTuiApp
from sltui.tui.screens.browser import BrowserScreen
from sltui.tui.screens.compare import CompareScreen

from test_tui_app import wait_for
from tui_helpers import EXAMPLE_RUNS, screen_lines


@pytest.fixture
def example_runs(tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(EXAMPLE_RUNS, root)
    return root


def browser_order(app) -> list[str]:
    return [str(k.value) for k in app.screen.query_one("#runs", DataTable).rows]


async def open_compare(pilot, picks: int, first: int = 0) -> list[str]:
    """Browser, `picks` runs selected with space from row `first` on, then `c`: the ids picked."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, BrowserScreen) and browser_order(pilot.app))
    ids = browser_order(pilot.app)[first:first + picks]
    await pilot.press(*["down"] * first, *["space"] * picks, "c")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
    return ids


def assert_whole(lines: list[str], docs: list[dict], labels: list[str]) -> None:
    """Each run's line shows the start of its label, its status and its final CDA and ASR,
    each whole (a separate word on the line, not cut)."""
    for doc, label in zip(docs, labels):
        first_word = label.split()[0]
        candidates = [line.split() for line in lines if first_word in line.split() and doc["status"] in line.split()]
        want = {fmt_pct(doc["final"]["cda"]), fmt_pct(doc["final"]["asr"])}
        assert any(want <= set(words) for words in candidates), (label, doc["status"], want, "\n".join(lines))
        shown = " ".join(" ".join(lines).split())
        assert all(word in shown.split() for word in label.split()), (label, shown)


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 30)])
@pytest.mark.parametrize("paper", [False, True])
async def test_compare_two_runs_shows_every_value_whole(example_runs, size, paper):
    """Two runs of one setting that differ in alpha (labels α=0.5 / α=0.09): labels,
    statuses, CDA and ASR whole as soon as compare opens, and after `p`."""
    app = SlTuiApp(runs_dir=example_runs, poll_interval=3600)
    async with app.run_test(size=size) as pilot:
        ids = await open_compare(pilot, 2, first=1)
        if paper:
            await pilot.press("p")
            await pilot.pause(0.3)
        screen = app.screen
        docs = [RunStore(example_runs).load(i) for i in ids]
        assert_whole(screen_lines(app), docs, screen.labels)
        assert {label.split()[0] for label in screen.labels} == {"α=0.5", "α=0.09"}


@pytest.mark.parametrize("size", [(80, 24), (120, 30)])
async def test_compare_many_runs_wraps_labels_not_values(example_runs, size):
    """Four runs whose labels are long: a label goes onto several lines, its status and
    metrics stay on the screen, whole."""
    app = SlTuiApp(runs_dir=example_runs, poll_interval=3600)
    async with app.run_test(size=(size[0], 60)) as pilot:
        ids = await open_compare(pilot, 4, first=4)
        docs = [RunStore(example_runs).load(i) for i in ids]
        readable = [d for d in docs if d.get("final")]
        labels = [label for label, d in zip(app.screen.labels, docs) if d.get("final")]
        assert_whole(screen_lines(app), readable, labels)
        assert all(len(line.rstrip()) <= size[0] for line in screen_lines(app))


async def test_form_labels_never_run_into_their_values(tmp_path):
    """At 80 columns, with the hijack attack's and two detectors' fields shown, every
    label is followed by a space before its value (`hijack warmup epochs  2`)."""
    from textual.widgets import Input, Select

    from sltui.tui.form_model import SPECS, visible
    from sltui.tui.screens.new_run import NewRunScreen

    app = SlTuiApp(runs_dir=tmp_path, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        app.screen.query_one("#f-attack", Select).value = "hijack"
        app.screen.query_one("#f-defenses", Input).value = "splitguard,scrutinizer"
        await pilot.pause(0.3)
        form = app.screen.query_one("#form")
        seen = {}
        for y in range(0, 120, 10):
            form.scroll_to(y=y, animate=False)
            await pilot.pause(0.1)
            for line in screen_lines(app):
                for spec in SPECS:
                    if line.startswith(" " + spec.label) and len(line) > len(spec.label) + 1:
                        seen.setdefault(spec.label, line[len(spec.label) + 1])
        shown = [s.label for s in SPECS if visible(s.name, "hijack", "patch", ("splitguard", "scrutinizer"))]
        assert "hijack warmup epochs" in seen and "scrutinizer threshold" in seen
        assert all(seen[label] == " " for label in shown if label in seen), seen


async def test_seeds_grouped_show_the_aggregate_numbers_and_open_into_their_runs(example_runs):
    """g: one row per setting with n and mean ± std, the numbers `sltui runs aggregate`
    prints (engine.sweeps.aggregate); enter lists the group's runs; esc goes back; a
    selected group compares its runs."""
    from engine.sweeps.aggregate import aggregate
    from sltui.format import fmt_mean_std
    from sltui.runs.index import RunIndex

    docs = [{**e.doc, "status": e.status} for e in RunIndex(example_runs, persist=False).scan() if e.doc]
    groups = aggregate(docs)
    app = SlTuiApp(runs_dir=example_runs, poll_interval=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and browser_order(app))
        await pilot.press("g")
        await wait_for(pilot, lambda: len(browser_order(app)) == len(groups))
        table = app.screen.query_one("#runs", DataTable)
        for g in groups:
            spread = g["n"] > 1
            row = [str(cell) for cell in table.get_row(g["group"])]
            assert fmt_mean_std(g["cda_mean"], g["cda_std"] if spread else None) in row
            assert fmt_mean_std(g["asr_mean"], g["asr_std"] if spread else None) in row
        settings = [str(table.get_cell(key, "setting")) for key in browser_order(app)]
        assert len(set(settings)) == len(settings)          # no two groups read alike
        pair = next(g for g in groups if g["n"] == 2)
        row = browser_order(app).index(pair["group"])
        await pilot.press(*["down"] * row, "enter")
        await wait_for(pilot, lambda: sorted(browser_order(app)) == sorted(pair["runs"]))
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(browser_order(app)) == len(groups))
        browser = app.screen
        browser.query_one("#runs").move_cursor(row=browser_order(app).index(pair["group"]))
        await pilot.press("space", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert sorted(app.screen.run_ids) == sorted(pair["runs"])


async def test_tag_note_and_delete_from_the_browser(example_runs):
    """t and N write the run's notes file (read back here), the filter finds the tag, the
    status line shows tag and note; d asks, n keeps the run, y moves it to runs/.trash; u
    asks and brings it back."""
    from sltui.runs.annotations import read_annotations
    from sltui.tui.screens.prompts import Confirm, TextPrompt

    app = SlTuiApp(runs_dir=example_runs, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and browser_order(app))
        run_id = browser_order(app)[0]
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        await pilot.press(*"paper best", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        await pilot.press(*"kept for the paper", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        assert read_annotations(example_runs / run_id) == {"tags": ["paper", "best"], "note": "kept for the paper"}
        await wait_for(pilot, lambda: "#paper #best kept for the paper" in " ".join(" ".join(screen_lines(app)).split()))
        await pilot.press("slash", *"tag:paper", "enter")
        await wait_for(pilot, lambda: browser_order(app) == [run_id])
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        assert (example_runs / run_id / "run.json").is_file()
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await wait_for(pilot, lambda: browser_order(app) == [])
        assert not (example_runs / run_id).exists()
        assert (example_runs / ".trash" / run_id / "run.json").is_file()
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await wait_for(pilot, lambda: browser_order(app) == [run_id])
        assert (example_runs / run_id / "run.json").is_file() and not (example_runs / ".trash" / run_id).exists()


async def test_malformed_filter_says_why_and_keeps_the_last_good_one(example_runs):
    import json
    deep = sum(json.loads(p.read_text())["config"]["cut"] >= 3 for p in example_runs.glob("*/run.json"))
    app = SlTuiApp(runs_dir=example_runs, poll_interval=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and browser_order(app))
        await pilot.press("slash", *"cut>=3")
        await wait_for(pilot, lambda: len(browser_order(app)) == deep)
        app.screen.query_one("#filter").value = "cut>=3 asr>"      # pasted: one change
        await pilot.pause(0.3)
        text = " ".join(" ".join(screen_lines(app)).split())
        assert "needs a value" in text and len(browser_order(app)) == deep


@pytest.mark.parametrize("runs", ["runs", "arena"])
async def test_browser_at_80x24_says_each_runs_setting(tmp_path, runs):
    """Each visible row at 80x24 names the run's dataset, model, cut (c3), K (K3) and
    attack, and its id's suffix, whole."""
    root = tmp_path / "runs"
    shutil.copytree(EXAMPLE_RUNS.parent / runs, root)
    docs = {p.parent.name: __import__("json").loads(p.read_text()) for p in root.glob("*/run.json")}
    app = SlTuiApp(runs_dir=root, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and browser_order(app))
        lines = screen_lines(app)
        shown = browser_order(app)[:len(lines) - 5]             # the rows on the screen
        for run_id in shown[:15]:
            cfg = docs[run_id]["config"]
            want = [cfg["dataset"], cfg["model"], f"c{cfg['cut']}", f"K{cfg['clients']}", cfg["attack"]]
            # The id as its shortest unique suffix: at least its last 4 characters, more where
            # another run's id ends the same way.
            assert any(all(w in line.split() for w in want)
                       and any(len(word) >= 4 and run_id.endswith(word) for word in line.split())
                       for line in lines), (want, run_id, "\n".join(lines))


async def test_best_metrics_and_log_loss_toggles(example_runs):
    """m shows the best-validation CDA of each run where the final one was; l puts the
    run screen's loss chart on a log scale and back."""
    from sltui.tui.screens.live_run import LiveRunScreen
    from sltui.tui.widgets.charts import MetricChart

    docs = {d["id"]: d for d in (RunStore(example_runs).load(p.parent.name) for p in example_runs.glob("*/run.json"))}
    app = SlTuiApp(runs_dir=example_runs, poll_interval=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and browser_order(app))
        differs = next(i for i, d in docs.items() if d.get("best") and d["best"]["cda"] != d["final"]["cda"])
        cell = lambda: str(app.screen.query_one("#runs").get_cell(differs, "cda"))  # noqa: E731
        assert cell() == fmt_pct(docs[differs]["final"]["cda"])
        await pilot.press("m")
        await wait_for(pilot, lambda: cell() == fmt_pct(docs[differs]["best"]["cda"]))
        assert "best CDA" in " ".join(screen_lines(app))
        app.action_open_run(differs)
        await wait_for(pilot, lambda: isinstance(app.screen, LiveRunScreen))
        chart = app.screen.query_one("#chart-loss", MetricChart)
        await pilot.press("l")
        assert chart.log_y
        await pilot.press("l")
        assert not chart.log_y
