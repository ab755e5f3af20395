"""Issue 31: text from a run folder is untrusted input. A run's name, tags, note, id and a
sweep's id reach every screen and command a user can reach, and are shown literally: no
markup parsed (`[/red]` is five characters, not a crash), no link, no style, control and
right-to-left characters escaped; and a crash inside the terminal UI exits non-zero with
one line naming its log."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from sltui import cli
from test_cli import sltui  # noqa: F401 - the fixture
from sltui.runs.annotations import add_tags, set_note
from sltui.format import clip, literal, printable
from engine.store import RunStore
from sltui.tui.app import SlTuiApp, launch
from sltui.tui.screens.arena import ArenaScreen
from sltui.tui.screens.browser import BrowserScreen
from sltui.tui.screens.compare import CompareScreen
from sltui.tui.screens.live_run import LiveRunScreen
from sltui.tui.screens.new_run import NewRunScreen
from sltui.tui.screens.prompts import Confirm, TextPrompt

from test_tui_app import wait_for
from tui_helpers import screen_lines, write_run

NAME = "[/bold] x [link=https://e.vil]y[/link] \x1b[31mred\x1b[0m \u202eRTL"
NAME_SHOWN = "[/bold] x [link=https://e.vil]y[/link] \\x1b[31mred\\x1b[0m \\u202eRTL"
TAG = "[/red]"
NOTE = "a [/x] b \x07"
NOTE_SHOWN = "a [/x] b \\x07"
RUN_A = "20261205-101010-mnist-lenet-c1-k1-hijack-e111"
RUN_B = "20261205-101011-mnist-lenet-c1-k1-hijack-f222"
RUN_EVIL = "evil-[red]x[blink]-\x1b[2J-[link=https:"      # a folder name is any text but '/'
RUN_EVIL_SHOWN = "evil-[red]x[blink]-\\x1b[2J-[link=https:"
EXAMPLE_ARENA = Path(__file__).resolve().parent.parent / "examples" / "arena" / "sweeps"


@pytest.fixture
def hostile(tmp_path) -> Path:
    """A runs folder (itself named with markup) of two seeds of one hijack setting, the
    first with a hostile name, tag and note, one run whose id is hostile, and an arena
    sweep file whose id is."""
    root = tmp_path / "r[/red]uns"
    write_run(root, RUN_A, attack="hijack", seed=1, name=NAME, created="2026-12-05T10:10:10+00:00")
    write_run(root, RUN_B, attack="hijack", seed=2, cda0=70, created="2026-12-05T10:10:11+00:00")
    write_run(root, RUN_EVIL, created="2026-12-04T00:00:00+00:00")
    store = RunStore(root)
    add_tags(store, RUN_A, [TAG])
    set_note(store, RUN_A, NOTE)
    source = sorted(EXAMPLE_ARENA.glob("*.json"))[0]
    doc = json.loads(source.read_text())
    doc["id"] = "arena-[/red]-\x1b[5m"
    (root / "sweeps").mkdir()
    (root / "sweeps" / source.name).write_text(json.dumps(doc))
    return root


# ---- the helper ---------------------------------------------------------------------
def test_literal_shows_markup_as_characters_and_escapes_control_characters():
    text = literal(NAME)
    assert text.plain == NAME_SHOWN and text.spans == [] and not text.style
    assert literal(NAME, width=12).plain == NAME_SHOWN[:11] + "…"
    assert literal("a\nb", lines=True).plain == "a\nb" and literal("a\nb").plain == "a\\nb"
    assert printable("\u200f\u202e\x1b\r") == "\\u200f\\u202e\\x1b\\r"
    assert clip("abcdef", 4) == "abc…" and clip("abc", 4) == "abc"


# ---- every command ------------------------------------------------------------------
@pytest.fixture
def literal_sltui(sltui, monkeypatch):
    """test_cli's `sltui` at 200 columns, checking that no output holds a raw escape or
    right-to-left character or a traceback."""
    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("COLUMNS", "200")
        code, out, err = sltui(*args)
        assert "Traceback" not in out + err and "\x1b" not in out + err and "\u202e" not in out + err
        return code, out, err
    return invoke


def test_every_command_prints_hostile_text_literally(literal_sltui, hostile):
    sltui = literal_sltui
    runs = ["--runs-dir", str(hostile)]
    code, out, err = sltui("runs", "tag", "e111", TAG, "[b]bold[/b]", *runs)
    assert code == 0 and f"{RUN_A}: tags {TAG} [b]bold[/b]" in out
    code, out, err = sltui("runs", "untag", "e111", "[b]bold[/b]", *runs)
    assert code == 0 and f"tags {TAG}" in out
    code, out, err = sltui("runs", "note", "e111", NOTE, *runs)
    assert code == 0 and "[/x]" in out and "\\x07" in out
    code, out, err = sltui("runs", "list", "--wide", *runs)
    assert code == 0 and NAME_SHOWN in out and TAG in out and RUN_EVIL_SHOWN in out
    code, out, err = sltui("runs", "list", "--filter", "name:link=https", "--columns", "id,name", *runs)
    assert code == 0 and len(out.splitlines()) == 2 and NAME_SHOWN in out
    code, out, err = sltui("runs", "show", "e111", *runs)
    assert code == 0
    assert f"name: {NAME_SHOWN}" in out and f"tags: {TAG}" in out and f"note: {NOTE_SHOWN}" in out
    code, out, err = sltui("runs", "show", RUN_EVIL, *runs)
    assert code == 0 and out.splitlines()[0] == RUN_EVIL_SHOWN
    code, out, err = sltui("runs", "aggregate", "--format", "table", *runs)
    assert code == 0 and "hijack" in out
    code, out, err = sltui("runs", "show", "[/x]", *runs)
    assert code == 2 and err.count("\n") == 1 and "'[/x]'" in err
    code, out, err = sltui("report", "sweep-[/x]", *runs)
    assert code == 2 and err.count("\n") == 1 and "sweep-[/x]" in err
    code, out, err = sltui("runs", "delete", RUN_EVIL, "--yes", *runs)
    assert code == 0 and out.startswith(RUN_EVIL_SHOWN + " -> ")
    code, out, err = sltui("runs", "restore", RUN_EVIL, *runs)
    assert code == 0 and out.startswith(RUN_EVIL_SHOWN + " restored")
    code, out, err = sltui("runs", "list", "--runs-dir", str(hostile / "[/x]"))
    assert code == 2 and "[/x]" in err and err.count("\n") == 1


# ---- every screen -------------------------------------------------------------------
def assert_plain(app) -> str:
    """The screen's text, after checking that nothing on it is a link."""
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            assert not (segment.style and segment.style.link), segment
    return "\n".join(screen_lines(app))


def run_row(app, run_id: str) -> int:
    table = app.screen.query_one("#runs", DataTable)
    return [str(k.value) for k in table.rows].index(run_id)


async def test_browser_run_screen_and_dialogs_show_hostile_text_literally(hostile):
    app = SlTuiApp(runs_dir=hostile, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and app.screen.rows)
        browser = app.screen
        text = assert_plain(app)
        assert RUN_EVIL_SHOWN[-4:] in text or "ttps:" in text       # the evil id's short form
        browser.query_one("#runs", DataTable).move_cursor(row=run_row(app, RUN_A))
        await pilot.pause()
        status = str(browser.query_one("#browser-status", Static).render())
        assert f"“{clip(NAME_SHOWN, 40)}” #{TAG} {NOTE_SHOWN}" in status
        assert f"#{TAG}" in assert_plain(app)
        # the tag and note prompts quote what the run holds
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        assert f"(now: {TAG})" in str(app.screen.query_one("#prompt-text", Static).render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        assert app.screen.query_one("#prompt-input", Input).value == NOTE_SHOWN
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        # the run screen: its header and config
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LiveRunScreen) and app.screen.view)
        title = app.screen.query_one("#run-title", Static).render()
        assert NAME_SHOWN in title.plain and not any(span.style and "link" in str(span.style) for span in title.spans)
        assert_plain(app)
        await pilot.press("v")
        config = app.screen.query_one("#run-config", DataTable)
        values = {str(config.get_row_at(i)[0]): str(config.get_row_at(i)[1]) for i in range(config.row_count)}
        assert values["name"] == NAME_SHOWN and "alpha" not in values     # a hijack run has no alpha
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        # deleting the run with the hostile id: the question quotes it literally
        browser.query_one("#runs", DataTable).move_cursor(row=run_row(app, RUN_EVIL))
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        assert RUN_EVIL_SHOWN in str(app.screen.query_one("#confirm-text", Static).render())
        assert_plain(app)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
    assert app.return_code in (None, 0)


async def test_compare_groups_and_arena_show_hostile_text_literally(hostile):
    app = SlTuiApp(runs_dir=hostile, poll_interval=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and len(app.screen.rows) == 3)
        table = app.screen.query_one("#runs", DataTable)
        for run_id in (RUN_A, RUN_B):
            table.move_cursor(row=run_row(app, run_id))
            await pilot.press("space")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.rows)
        labels = [str(cell) for cell in app.screen.query_one("#compare-table", DataTable).get_column("run")]
        assert any("[/bold]" in label for label in labels)
        text = assert_plain(app)
        assert "over seeds 1, 2" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        await pilot.press("g")
        await wait_for(pilot, lambda: app.screen.view.grouped and app.screen.rows)
        assert_plain(app)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ArenaScreen) and app.screen.arenas)
        text = assert_plain(app)
        assert "arena-[/red]-\\x1b[5m" in text
    assert app.return_code in (None, 0)


async def test_a_clone_of_a_hostile_run_and_hostile_typing_in_the_form(hostile):
    app = SlTuiApp(runs_dir=hostile, poll_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and app.screen.rows)
        app.screen.query_one("#runs", DataTable).move_cursor(row=run_row(app, RUN_A))
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        form = app.screen
        assert form.query_one("#f-name", Input).value == NAME_SHOWN
        form.query_one("#f-epochs", Input).value = "[/x]"
        await pilot.pause()
        error = form.query_one("#err-epochs", Static)
        assert error.display and str(error.render()) == "--epochs must be a whole number (got '[/x]')"
        assert_plain(app)
    assert app.return_code in (None, 0)


# ---- a crash ------------------------------------------------------------------------
def test_a_crash_in_the_tui_exits_non_zero_with_one_line_naming_its_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def crash(self) -> None:
        raise RuntimeError("forced [/red] crash")

    monkeypatch.setattr(BrowserScreen, "on_mount", crash)
    code = launch(runs_dir=tmp_path, headless=True)
    out, err = capsys.readouterr()
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sltui: the terminal UI stopped on RuntimeError: forced [/red] crash")
    log = Path(lines[0].rsplit("the traceback is in ", 1)[1])
    assert log.parent == tmp_path / "cache" / "sltui" / "logs"
    assert "Traceback" in log.read_text() and "forced [/red] crash" in log.read_text()
    # The command line passes the code on.
    monkeypatch.setattr("sltui.tui.app.launch", lambda **kwargs: 1)
    monkeypatch.setattr(sys, "argv", ["sltui", "--runs-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1
