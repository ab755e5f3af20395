"""Snapshot tests (pytest-textual-snapshot) at fixed terminal sizes, fed pre-written run
files or a pre-filled queue so every picture is deterministic. Update them with
`pytest tests/test_tui_snapshots.py --snapshot-update` after a deliberate UI change
(and keep textual pinned: another version draws differently)."""
from __future__ import annotations

import shutil

import pytest
from textual.css.query import NoMatches
from textual.widgets import Input

from sltui.tui.app import SlTuiApp
from sltui.tui.run_manager import RunManager
from sltui.tui.runs_model import RunIndex
from sltui.tui.screens.browser import BrowserScreen

from tui_helpers import prefilled_queue, write_run


RUN_IDS = ("20250101-090000-mnist-lenet-c1-k1-none-a1b2", "20250102-090000-mnist-lenet-c2-k3-surrogate-c3d4",
           "20250103-090000-fmnist-stripnet-c3-k5-autoencoder-e5f6")


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """A runs folder at the fixed relative path 'runs' (the browser shows the path), with ids
    as the engine writes them (store.new_run_id), so the pictures show what a user sees."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    write_run(root, RUN_IDS[0], cut=1, clients=1)
    write_run(root, RUN_IDS[1], cut=2, clients=3, attack="surrogate", alpha=0.2, cda0=70)
    write_run(root, RUN_IDS[2], dataset="fmnist", model="stripnet", cut=3, clients=5,
              attack="autoencoder", status="running", epochs=2)
    (root / "20250104-broken").mkdir()
    (root / "20250104-broken" / "run.json").write_text("{")
    return root


def app_for(manager=None) -> SlTuiApp:
    return SlTuiApp(runs_dir="runs", manager=manager, poll_interval=3600)


async def settle(pilot, screen_type=None) -> None:
    for _ in range(50):
        await pilot.pause(0.05)
        if screen_type is None or isinstance(pilot.app.screen, screen_type):
            break
    await pilot.pause(0.2)


async def freeze_cursor(pilot) -> None:
    for inp in pilot.app.screen.query(Input):
        inp.cursor_blink = False
    await pilot.pause()


def test_browser(runs, snap_compare):
    async def run_before(pilot):
        await settle(pilot, BrowserScreen)
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=run_before)


def test_browser_filtered_and_selected(runs, snap_compare):
    async def run_before(pilot):
        await settle(pilot, BrowserScreen)
        await pilot.press("down", "space", "slash", *"mnist")
        await freeze_cursor(pilot)
    assert snap_compare(app_for(), terminal_size=(100, 30), run_before=run_before)


def test_new_run_form_with_error(runs, snap_compare):
    async def run_before(pilot):
        await settle(pilot, BrowserScreen)
        await pilot.press("n")
        await settle(pilot)
        form = pilot.app.screen
        form.query_one("#f-clients", Input).value = "0"
        form.query_one("#f-clients", Input).focus()
        await freeze_cursor(pilot)
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=run_before)


def test_live_run_from_queue(runs, snap_compare):
    manager = RunManager(RunIndex("runs").store)
    manager.attach("live-synthetic", prefilled_queue("live-synthetic", epochs=5, total=12))

    async def run_before(pilot):
        await settle(pilot, BrowserScreen)
        pilot.app.action_open_run("live-synthetic")
        await settle(pilot)
        await pilot.pause(0.5)
    assert snap_compare(app_for(manager), terminal_size=(100, 30), run_before=run_before)


def test_live_run_attack_phase(runs, snap_compare):
    manager = RunManager(RunIndex("runs").store)
    manager.attach("ae-synthetic", prefilled_queue("ae-synthetic", epochs=0, total=12, phase=True))

    async def run_before(pilot):
        await settle(pilot, BrowserScreen)
        pilot.app.action_open_run("ae-synthetic")
        await settle(pilot)
        await pilot.pause(0.5)
    assert snap_compare(app_for(manager), terminal_size=(80, 24), run_before=run_before)


def test_compare_with_paper_values(runs, snap_compare):
    """80x24: runs labelled by what differs between them, paper values marked (3-epoch runs)."""
    async def run_before(pilot):
        await settle(pilot, BrowserScreen)
        await pilot.press("down", "down", "space", "space", "c")
        await settle(pilot)
        await pilot.press("p")
        await pilot.pause(0.3)
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=run_before)


def test_finished_run_from_its_file(runs, snap_compare):
    async def run_before(pilot):
        await settle(pilot, BrowserScreen)
        pilot.app.action_open_run(RUN_IDS[1])
        await settle(pilot)
        await pilot.pause(0.5)
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=run_before)


def test_help(runs, snap_compare):
    async def run_before(pilot):
        await settle(pilot, BrowserScreen)
        await pilot.press("question_mark")
        await settle(pilot)
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=run_before)


def test_arena_partly_done(tmp_path, monkeypatch, snap_compare):
    """80x24: the arena view on an example arena with one run missing (its cells read 1/2)."""
    from test_tui_arena import BETA07, copy_arena, runs_of

    monkeypatch.chdir(tmp_path)
    root = copy_arena(BETA07, tmp_path / "runs")
    shutil.rmtree(runs_of(root, "hijack", ("scrutinizer", "splitout"))[0])

    async def run_before(pilot):
        await settle(pilot, BrowserScreen)
        await pilot.press("a")
        await settle(pilot)
        await pilot.pause(0.3)
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=run_before)
