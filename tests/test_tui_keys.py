"""Issue 31: keys never throw work away. While the new-run form or a prompt is shown, letters
go to it and never to the app's single-letter shortcuts (whatever has the focus: an input,
a select, a checkbox, a button); leaving a changed form asks first; keys typed right after
`/`, `t` or `N` land in the box that opens; the form is built once and shown again; the
browser's Home and End go to the first and last run."""
from __future__ import annotations

from textual import events
from textual.widgets import Checkbox, DataTable, Input, Label, Select

from sltui.tui.app import SlTuiApp
from sltui.tui.screens.browser import BrowserScreen
from sltui.tui.screens.new_run import NewRunScreen
from sltui.tui.screens.prompts import Confirm, TextPrompt

from test_tui_app import wait_for
from tui_helpers import write_run

SIZE = (80, 24)


def app_with_runs(tmp_path, n: int = 3) -> SlTuiApp:
    for i in range(n):
        write_run(tmp_path, f"run-{i}", seed=i + 1, created=f"2026-01-0{i + 1}T00:00:00+00:00")
    return SlTuiApp(runs_dir=tmp_path, poll_interval=3600)


def type_fast(app, keys: str) -> None:
    """Queue keys as a fast typist (or a paste) sends them: all before any is handled."""
    for ch in keys:
        name = {"/": "slash", " ": "space"}.get(ch, ch)
        app.post_message(events.Key(name, ch))


async def open_form(pilot) -> NewRunScreen:
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen))
    return pilot.app.screen


async def test_letters_on_a_select_checkbox_or_button_never_reach_the_shortcuts(tmp_path):
    app = app_with_runs(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        form = await open_form(pilot)
        for widget in (form.query_one("#f-attack", Select), form.query_one("#f-save_weights", Checkbox),
                       form.query_one("#start")):
            form.set_focus(widget)
            await pilot.pause()
            await pilot.press("b", "a", "t", "n", "q", "question_mark", "C")
            await pilot.pause()
            assert app.screen is form and len(app.screen_stack) == 3, (widget, app.screen_stack)
        # a key the focused widget binds still works: space ticks the checkbox
        box = form.query_one("#f-save_weights", Checkbox)
        before = box.value
        form.set_focus(box)
        await pilot.press("space")
        assert box.value is not before


async def test_a_changed_form_asks_before_it_is_left_and_is_shown_again_reset(tmp_path):
    app = app_with_runs(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        form = await open_form(pilot)
        await pilot.press("escape")                          # nothing changed: leaves at once
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        again = await open_form(pilot)
        assert again is form                                  # built once, shown again
        form.query_one("#f-clients", Input).value = "5"
        await pilot.pause()
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("n")                                # stay: the change is kept
        await wait_for(pilot, lambda: app.screen is form)
        assert form.query_one("#f-clients", Input).value == "5"
        app.action_browser()                                 # the palette's "Runs browser" asks too
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        await open_form(pilot)
        assert app.screen is form and form.query_one("#f-clients", Input).value == "1"   # opened afresh
        assert not form.unsaved() and form.focused is form.query_one("#f-dataset")
        # a clone fills the same form with the run's config
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        app.screen.query_one("#runs", DataTable).move_cursor(row=0)
        await pilot.press("C")
        await wait_for(pilot, lambda: app.screen is form)
        assert form.query_one("#f-dataset", Select).value == "mnist" and form.query_one("#f-seed", Input).value == "3"


async def test_the_focused_field_is_marked_without_colour(tmp_path):
    app = app_with_runs(tmp_path, 1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        form = await open_form(pilot)
        form.set_focus(form.query_one("#f-clients", Input))
        await pilot.pause()
        focused = form.query_one("#row-clients .field-label", Label)
        other = form.query_one("#row-cut .field-label", Label)
        assert focused.styles.text_style.reverse and not other.styles.text_style.reverse


async def test_keys_typed_right_after_slash_go_to_the_filter(tmp_path):
    app = app_with_runs(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and len(app.screen.rows) == 3)
        browser = app.screen
        sort, best = browser.view.sort(), browser.view.best
        type_fast(app, "/mscg")                   # m, s, c, g would toggle metrics, sort, compare, groups
        await pilot.pause(0.3)
        assert browser.query_one("#filter", Input).value == "mscg"
        assert (browser.view.sort(), browser.view.best, browser.view.grouped) == (sort, best, False)


async def test_keys_typed_as_a_prompt_opens_go_into_it_and_esc_asks_before_dropping_them(tmp_path):
    app = app_with_runs(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and len(app.screen.rows) == 3)
        type_fast(app, "tpaper q")                # q would quit, space select
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        await pilot.pause(0.3)
        prompt = app.screen
        assert prompt.query_one("#prompt-input", Input).value == "paper q"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is prompt)
        assert prompt.query_one("#prompt-input", Input).value == "paper q"
        await pilot.press("escape", "y")
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
        assert app.return_code is None               # still running: q was typed, not pressed


async def test_home_and_end_go_to_the_first_and_last_run(tmp_path):
    app = app_with_runs(tmp_path, 5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and len(app.screen.rows) == 5)
        table = app.screen.query_one("#runs", DataTable)
        await pilot.press("end")
        assert table.cursor_row == 4
        await pilot.press("home")
        assert table.cursor_row == 0
