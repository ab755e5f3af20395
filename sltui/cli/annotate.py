"""`sltui runs note|tag|untag|delete|restore`: a run's tags and note (sltui.runs.annotations)
and the trash (sltui.runs.trash)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from engine.store import RunNotFound, RunStore

from ..runs.annotations import add_tags, remove_tags, set_note
from ..format import literal
from ..runs.index import AmbiguousRunId, resolve_run_id, run_ids
from .root import runs_dir_to_read
from ..runs.trash import RunBusy, delete_run, restore_run, trashed


def register(runs_app: typer.Typer, console: Any, default_runs_dir: Callable[[Optional[Path]], Path],
             fail: Callable[..., None], runs_dir_help: str) -> None:
    """Add the note, tag, untag, delete and restore commands to `sltui runs`."""

    def store_for(runs_dir: Optional[Path]) -> RunStore:
        return RunStore(runs_dir_to_read(runs_dir))

    def no_run(store: RunStore, run_id: str) -> None:
        fail(f"no run {run_id!r} in {store.root}; `sltui runs list` shows the ids")

    def find(store: RunStore, text: str, ids: Optional[list[str]] = None) -> str:
        """The run `text` names: its id or short id (sltui.runs.index.resolve_run_id)."""
        try:
            return resolve_run_id(run_ids(store.root) if ids is None else ids, text)
        except RunNotFound:
            no_run(store, text)
        except AmbiguousRunId as exc:
            fail(str(exc))
        raise AssertionError("unreachable")

    @runs_app.command("note")
    def note_command(
        run_id: str = typer.Argument(..., help="run id, or its short id"),
        text: str = typer.Argument(..., help="the note ('' clears it)"),
        runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=runs_dir_help),
    ) -> None:
        """Set a run's note (shown in the browser and `runs show`, searched by the filter)."""
        store = store_for(runs_dir)
        run_id = find(store, run_id)
        try:
            note = set_note(store, run_id, text)
        except RunNotFound:
            no_run(store, run_id)
        console.print(literal(f"{run_id}: note {note!r}" if note else f"{run_id}: note cleared"))

    @runs_app.command("tag")
    def tag_command(
        run_id: str = typer.Argument(..., help="run id, or its short id"),
        tags: List[str] = typer.Argument(..., help="one or more tags (one word each)"),
        runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=runs_dir_help),
    ) -> None:
        """Tag a run (filter with tag:NAME)."""
        store = store_for(runs_dir)
        run_id = find(store, run_id)
        try:
            now = add_tags(store, run_id, tags)
        except RunNotFound:
            no_run(store, run_id)
        except ValueError as exc:
            fail(str(exc))
        console.print(literal(f"{run_id}: tags {' '.join(now) or '-'}"))

    @runs_app.command("untag")
    def untag_command(
        run_id: str = typer.Argument(..., help="run id, or its short id"),
        tags: List[str] = typer.Argument(..., help="the tags to take off"),
        runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=runs_dir_help),
    ) -> None:
        """Take tags off a run."""
        store = store_for(runs_dir)
        run_id = find(store, run_id)
        try:
            now = remove_tags(store, run_id, tags)
        except RunNotFound:
            no_run(store, run_id)
        except ValueError as exc:
            fail(str(exc))
        console.print(literal(f"{run_id}: tags {' '.join(now) or '-'}"))

    @runs_app.command("delete")
    def delete_command(
        given: List[str] = typer.Argument(..., metavar="RUN_IDS...", help="run ids, or their short ids"),
        yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
        runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=runs_dir_help),
    ) -> None:
        """Move runs to the trash (RUNS/.trash/); `sltui runs restore ID` brings one back."""
        store = store_for(runs_dir)
        ids = list(dict.fromkeys(find(store, text) for text in given))
        if not yes and not typer.confirm(f"move {len(ids)} run(s) to {store.root / '.trash'}?"):
            raise typer.Exit(1)
        for run_id in ids:
            try:
                where = delete_run(store, run_id)
            except (FileExistsError, RunBusy) as exc:
                fail(str(exc))
            console.print(literal(f"{run_id} -> {where}"))

    @runs_app.command("restore")
    def restore_command(
        run_id: str = typer.Argument(..., help="id (or its end) of a run in the trash"),
        runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=runs_dir_help),
    ) -> None:
        """Bring a deleted run back from the trash."""
        store = store_for(runs_dir)
        try:
            run_id = resolve_run_id(trashed(store), run_id)
            where = restore_run(store, run_id)
        except RunNotFound:
            left = trashed(store)
            fail(f"no run {run_id!r} in {store.root / '.trash'}" + (f"; there: {', '.join(left)}" if left else " (empty)"))
        except AmbiguousRunId as exc:
            fail(f"{exc} in the trash")
        except FileExistsError as exc:
            fail(str(exc))
        console.print(literal(f"{run_id} restored to {where}"))
