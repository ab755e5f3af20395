"""The TUI's pure modules: run manager, form model, reference lookup, run tables."""
from __future__ import annotations

import csv
import threading

import pytest

from engine.config import ConfigError, RunConfig
from engine.events import RunFailed
from sltui import reference
from sltui.tui import form_model
from sltui.tui import runs_model
from sltui.tui.run_manager import RunManager, RunState

from tui_helpers import IdleThread, prefilled_queue, write_run


# ---- run manager ------------------------------------------------------------
def test_drain_folds_events_into_state():
    manager = RunManager(store=None)
    manager.attach("r1", prefilled_queue("r1", epochs=3, total=10, phase=True))
    assert manager.drain() == {"r1"}
    state = manager.get("r1")
    assert state.status == "running" and state.total_epochs == 10
    assert [e["epoch"] for e in state.epochs] == [1, 2, 3]
    assert state.phase is None                      # an epoch arrived after the phase
    assert state.eta_seconds() == pytest.approx(7 * 2.0)
    assert manager.drain() == set()                 # nothing new


def test_phase_progress_is_shown_until_training_starts():
    manager = RunManager(store=None)
    manager.attach("r1", prefilled_queue("r1", epochs=0, total=5, phase=True))
    manager.drain()
    state = manager.get("r1")
    assert (state.phase, state.phase_epoch, state.phase_epochs) == ("phase3-autoencoder", 4, 10)


def test_finish_failure_and_start_error():
    state = RunState("r", {})
    state.apply(RunFailed(run_id="r", error="boom"))
    assert state.status == "failed" and state.error == "boom" and not state.active

    class StartError:  # the shape of sltui.runs.threads.StartError
        def __init__(self, error):
            self.error = error
    state = RunState("s", {})
    state.apply(StartError(ValueError("no such data")))
    assert state.status == "failed" and "no such data" in state.error


def test_done_sentinel_ends_a_silent_run():
    manager = RunManager(store=None)
    q = prefilled_queue("r1", epochs=1, total=3)
    q.put(object())
    manager.attach("r1", q)
    manager.drain()
    assert manager.get("r1").status == "failed"


def test_cancel_and_shutdown_join_threads():
    stop = threading.Event()
    thread = IdleThread(stop)
    thread.start()
    q = prefilled_queue("r1", epochs=1, total=3)
    manager = RunManager(store=None)
    manager.attach("r1", q, stop, thread)
    manager.drain()
    assert [s.run_id for s in manager.active()] == ["r1"]
    assert manager.shutdown(timeout=5) == []
    assert stop.is_set() and not thread.is_alive()
    assert manager.get("r1").cancel_requested


def test_start_uses_the_starter_and_never_imports_the_engine_itself():
    seen = {}

    def starter(cfg, store, sink, stop, run_id=None):
        seen["cfg"] = cfg
        return IdleThread(stop), "fake-id"
    manager = RunManager(store="S", starter=starter, share_threads=lambda n: None)
    run_id = manager.start(RunConfig(dataset="synthetic"))
    assert run_id == "fake-id" and manager.get("fake-id").config["dataset"] == "synthetic"
    assert manager.get("fake-id").status == "starting"


def test_concurrent_runs_share_the_cores_and_get_them_back():
    shares: list[int] = []
    stops: list[threading.Event] = []

    def starter(cfg, store, sink, stop, run_id=None):
        stops.append(stop)
        thread = IdleThread(stop)
        thread.start()
        return thread, f"run-{len(stops)}"
    manager = RunManager(store="S", starter=starter, share_threads=shares.append)
    manager.start(RunConfig(dataset="synthetic"))
    manager.start(RunConfig(dataset="synthetic"))
    assert shares == [1, 2]                         # the second run halves each run's threads
    stops[0].set()                                  # run 1 ends: its thread stops,
    manager._runs["run-1"].queue.put(object())      # then its end-of-stream sentinel
    manager.drain()
    assert shares == [1, 2, 1]                      # run 2 takes the whole machine back
    manager.shutdown(timeout=5)


def test_cpu_threads_never_outnumber_the_cores():
    from engine.speed.device import cpu_threads_for

    assert [cpu_threads_for(runs, cores=8) for runs in (1, 2, 3, 8, 9)] == [8, 4, 2, 1, 1]
    assert cpu_threads_for(2, cores=2) == 1 and cpu_threads_for(1, cores=2) == 2


# ---- form model ---------------------------------------------------------------
def test_every_config_field_has_a_form_field():
    names = [s.name for s in form_model.SPECS]
    assert sorted(names) == sorted(RunConfig().to_dict()) and len(set(names)) == len(names)
    assert names[names.index("attack") + 1] == "alpha"     # attack fields right under the attack


def test_form_roundtrip_gives_back_the_config():
    cfg = RunConfig(dataset="synthetic", attack="surrogate", alpha=0.2, lr_milestones=(3, 5), epochs=7)
    built, errors = form_model.build(form_model.to_text(cfg))
    assert errors == {} and built == cfg


def test_parse_error_is_attached_to_its_field():
    values = form_model.to_text(RunConfig())
    values["clients"] = "three"
    cfg, errors = form_model.build(values)
    assert cfg is None and errors == {"clients": "--clients must be a whole number (got 'three')"}


def test_validation_message_is_the_clis():
    values = form_model.to_text(RunConfig())
    values["alpha"] = "1.5"
    cfg, errors = form_model.build(values)
    with pytest.raises(ConfigError) as cli:
        RunConfig(alpha=1.5).replace()
    assert errors == {"alpha": str(cli.value)}


def test_attack_fields_are_visible_only_for_their_attack():
    assert form_model.visible("alpha", "surrogate") and not form_model.visible("alpha", "none")
    assert form_model.visible("ae_share", "autoencoder") and not form_model.visible("ae_share", "surrogate")
    assert form_model.visible("dataset", "none")


def test_new_attack_and_trigger_fields_show_only_where_they_apply():
    for name in ("hijack_beta", "hijack_gp", "hijack_d_lr", "hijack_warmup_epochs", "hijack_train_h"):
        assert form_model.visible(name, "hijack") and not form_model.visible(name, "surrogate")
    assert form_model.visible("malicious_client", "client") and not form_model.visible("malicious_client", "hijack")
    # Fields that several attacks use show for each of them.
    assert all(form_model.visible("poison_ratio", a) for a in ("surrogate", "hijack", "client"))
    assert not form_model.visible("poison_ratio", "none") and not form_model.visible("aux_size", "client")
    assert form_model.visible("blend_alpha", "none", "blend") and not form_model.visible("blend_alpha", "none", "sig")
    assert form_model.visible("sig_freq", "client", "sig") and not form_model.visible("sig_freq", "client", "patch")
    assert form_model.visible("trigger", "none")
    order = [s.name for s in form_model.SPECS]
    attack_at = order.index("attack")
    assert all(order.index(n) > attack_at for n in ("hijack_beta", "malicious_client", "aux_size"))
    assert order.index("blend_alpha") == order.index("trigger") + 1


def test_form_rejects_bad_attack_values_on_their_field():
    values = form_model.to_text(RunConfig(attack="hijack"))
    values["hijack_beta"] = "1.5"
    cfg, errors = form_model.build(values)
    assert cfg is None and "--hijack-beta" in errors["hijack_beta"]


def test_run_screen_shows_a_phase_reported_after_the_last_epoch():
    from sltui.tui.screens.live_run import view_of_doc

    epochs = [{"epoch": 1, "cda": 90.0}, {"epoch": 2, "cda": 91.0}]
    implant = {"epochs": 8, "history": [{"epoch": 1, "loss": 3.5, "after_epoch": 2}]}
    doc = {"status": "running", "epochs": epochs, "phases": {"hijack-implant": implant}}
    assert view_of_doc(doc)["phase"] == ("hijack-implant", 1, 8, 3.5)
    # A training epoch ended since: the charts are the news, not the phase.
    doc["epochs"] = epochs + [{"epoch": 3, "cda": 92.0}]
    assert view_of_doc(doc)["phase"] is None
    # Files written before `after_epoch` existed: phases show only before training.
    old = {"status": "running", "epochs": [], "phases": {"phase1-clean": {"epochs": 3, "history": [{"epoch": 1, "loss": 1.0}]}}}
    assert view_of_doc(old)["phase"] == ("phase1-clean", 1, 3, 1.0)


def test_config_from_a_stored_run_dict():
    stored = RunConfig(dataset="synthetic").to_dict() | {"future_field": 1}
    assert form_model.config_from_dict(stored).dataset == "synthetic"
    assert form_model.config_from_dict({"cut": 9}) is None


# ---- reference ----------------------------------------------------------------
def test_reference_lookup_per_attack():
    sur = reference.lookup(dict(dataset="mnist", model="lenet", clients=3, cut=2, attack="surrogate", alpha=0.2))
    assert (sur.cda, sur.asr, sur.source) == (98.99, pytest.approx(83.07095344), "results_mnist.csv")
    clean = reference.lookup(dict(dataset="cifar10-jpeg", model="resnet9", clients=1, cut=1, attack="none"))
    assert clean.cda == 86.48 and clean.source == "results_clean_training.csv"
    ae = reference.lookup(dict(dataset="fmnist", model="stripnet", clients=7, cut=3, attack="autoencoder"))
    assert ae.source == "results_autoencoder.csv"
    assert reference.lookup(dict(dataset="synthetic", model="lenet", clients=1, cut=1, attack="none")) is None
    assert reference.lookup(dict(dataset="mnist", model="lenet", clients=2, cut=1, attack="none")) is None


def test_reference_csvs_are_shipped_in_the_package():
    names = {p.name for p in reference.REFERENCE_DIR.glob("*.csv")}
    assert {"results_clean_training.csv", "results_autoencoder.csv", "results_mnist.csv",
            "results_fmnist.csv", "results_cifar10.csv"} <= names


# ---- run tables -----------------------------------------------------------------
def test_sort_and_filter_rows():
    rows = [{"id": "a", "cut": 2, "dataset": "mnist"}, {"id": "b", "cut": None, "dataset": "fmnist"},
            {"id": "c", "cut": 1, "dataset": "cifar10"}]
    assert [r["id"] for r in runs_model.sort_rows(rows, "cut")] == ["c", "a", "b"]
    assert [r["id"] for r in runs_model.sort_rows(rows, "cut", reverse=True)] == ["a", "c", "b"]
    assert [r["id"] for r in rows if runs_model.matches(r, "MNIST")] == ["a", "b"]
    assert [r["id"] for r in rows if runs_model.matches(r, "mnist a")] == ["a"]


def test_index_lists_unreadable_files_and_rereads_changes(tmp_path):
    write_run(tmp_path, "good")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    index = runs_model.RunIndex(tmp_path)
    rows = {r["id"]: r for r in map(runs_model.browser_row, index.scan())}
    assert rows["bad"]["status"] == "unreadable" and rows["good"]["status"] == "completed"
    write_run(tmp_path, "bad")
    assert {runs_model.browser_row(e)["status"] for e in index.scan()} == {"completed"}


def test_compare_keeps_differing_fields_and_exports(tmp_path):
    write_run(tmp_path, "r1", model="lenet", cut=2, clients=3, attack="surrogate", alpha=0.2)
    write_run(tmp_path, "r2", model="lenet", cut=2, clients=3, attack="surrogate", alpha=0.5)
    docs = [e.doc for e in runs_model.RunIndex(tmp_path).scan()]
    columns, rows = runs_model.compare_rows(sorted(docs, key=lambda d: d["id"]))
    assert columns == ["id", "status", "alpha", "final_cda", "final_asr", "best_cda", "best_asr",
                       "paper_cda", "paper_asr"]
    assert rows[0]["paper_cda"] == 98.99 and rows[0]["final_cda"] == 95.0
    path = runs_model.write_csv(tmp_path / "out.csv", columns, rows)
    read = list(csv.DictReader(path.open()))
    assert [r["id"] for r in read] == ["r1", "r2"] and read[1]["alpha"] == "0.5"


def test_compare_summarises_seeds_of_one_setting(tmp_path):
    for seed, cda0 in ((1, 70.0), (2, 74.0)):
        write_run(tmp_path, f"a{seed}", seed=seed, cda0=cda0, attack="surrogate", alpha=0.09)
    write_run(tmp_path, "b1", seed=1, attack="surrogate", alpha=0.5)
    docs = [e.doc for e in runs_model.RunIndex(tmp_path).scan()]
    lines = runs_model.seed_summary(docs)
    assert lines == ["alpha 0.09 over seeds 1, 2: CDA 87.00 ± 2.83  ASR 70.00 ± 0.00"]   # 70+15, 74+15
    assert runs_model.seed_summary([d for d in docs if d["id"] != "a2"]) == []


def test_several_runs_at_once_are_drained_independently():
    manager = RunManager(store=None)
    manager.attach("a", prefilled_queue("a", epochs=2, total=5))
    manager.attach("b", prefilled_queue("b", epochs=1, total=3, finished=True))
    assert manager.drain() == {"a", "b"}
    assert [s.run_id for s in manager.active()] == ["a"]
    assert manager.get("b").status == "completed" and len(manager.get("a").epochs) == 2


# ---- narrow tables and labels ---------------------------------------------------------
GENERATED = ["20261124-133627-mnist-lenet-c3-k1-surrogate-8eac", "20261124-133627-mnist-lenet-c1-k1-none-1f2e",
             "20251124-133627-fmnist-lenet-c1-k1-none-8eac", "my-own-name"]


def test_short_ids_keep_what_tells_runs_apart():
    labels = runs_model.short_ids(GENERATED)
    assert labels[GENERATED[1]] == "1124-133627…1f2e" and labels["my-own-name"] == "my-own-name"
    # A year apart with the same suffix would look alike: both stay whole.
    assert labels[GENERATED[0]] == GENERATED[0] and labels[GENERATED[2]] == GENERATED[2]
    assert len(set(labels.values())) == len(GENERATED)


def test_short_run_ids_are_the_fewest_last_characters_no_other_id_ends_with():
    from sltui.runs.index import resolve_run_id, short_run_ids

    labels = short_run_ids(GENERATED)
    assert labels[GENERATED[1]] == "1f2e" and labels["my-own-name"] == "name"
    # Two ids end in 8eac: each keeps a few more characters, and only those two do.
    assert labels[GENERATED[0]] == "te-8eac" and labels[GENERATED[2]] == "none-8eac"   # not inside a short word
    assert all(run_id.endswith(label) for run_id, label in labels.items())
    assert len(set(labels.values())) == len(GENERATED)
    # every short id names its run, and only its run
    assert all(resolve_run_id(GENERATED, label) == run_id for run_id, label in labels.items())
    # An id that is the end of another stays whole.
    assert short_run_ids(["a-b", "b"]) == {"a-b": "a-b", "b": "b"}


def test_short_run_ids_of_runs_that_differ_only_in_time_stay_short():
    from sltui.runs.index import resolve_run_id, short_run_ids

    # Same setting and random part, another time: the end of the id would have to reach
    # back to the time; the time's end and the random part tell them apart instead.
    ids = ["20261202-010756-mnist-lenet-c3-k1-hijack-b578", "20261202-013308-mnist-lenet-c3-k1-hijack-b578",
           "20261202-013308-mnist-lenet-c1-k1-none-77aa"]
    labels = short_run_ids(ids)
    assert labels == {ids[0]: "6-b578", ids[1]: "8-b578", ids[2]: "77aa"}
    assert all(resolve_run_id(ids, label) == run_id for run_id, label in labels.items())


def test_resolve_run_id_says_when_an_end_is_ambiguous_or_names_no_run():
    from engine.store import RunNotFound
    from sltui.runs.index import AmbiguousRunId, resolve_run_id

    with pytest.raises(AmbiguousRunId, match="is the end of 2 run ids"):
        resolve_run_id(GENERATED, "8eac")
    with pytest.raises(RunNotFound):
        resolve_run_id(GENERATED, "zzzz")
    assert resolve_run_id(GENERATED, GENERATED[0]) == GENERATED[0]     # a whole id is itself


def test_browser_layout_fits_the_width_and_never_cuts_ids():
    rows = [{"id": run_id, "status": "interrupted", "dataset": "mnist", "model": "lenet", "cut": 1, "clients": 1,
             "attack": "surrogate", "alpha": 0.09, "cda": 98.1, "asr": 60.5, "seconds": 28.0} for run_id in GENERATED]
    every = [c.key for c in runs_model.BROWSER_COLUMNS if c.key != "name"]   # no run has a name
    columns, cells = runs_model.browser_layout(rows, 400)
    assert [c.key for c in columns] == every and [c["id"] for c in cells] == GENERATED
    assert {c["seconds"] for c in cells} == {"28s"}
    # At 75 whole ids leave no room; with short ids every column fits.
    columns, cells = runs_model.browser_layout(rows, 75)
    assert [c.key for c in columns] == every and [c["id"] for c in cells] != GENERATED
    for width in (75, 60, 30):
        columns, cells = runs_model.browser_layout(rows, width)
        keys = [c.key for c in columns]
        assert keys[:2] == ["id", "status"] and (len(keys) < len(every) or width == 75)
        assert len({c["id"] for c in cells}) == len(GENERATED)                 # never two alike
        assert all(c["id"] == runs_model.short_run_ids(GENERATED)[r] for c, r in zip(cells, GENERATED))
        dropped = [c for c in runs_model.BROWSER_COLUMNS if c.key not in keys and c.key in every]
        assert not dropped or min(c.priority for c in dropped) >= max(c.priority for c in columns)


def test_run_labels_name_what_differs():
    docs = [{"id": "a", "config": {"cut": 1, "seed": 2, "attack": "surrogate", "alpha": 0.5}},
            {"id": "b", "config": {"cut": 3, "seed": 2, "attack": "surrogate", "alpha": 0.5}},
            {"id": "c", "config": {"cut": 1, "seed": 1, "attack": "none", "alpha": 0.09}}]
    # alpha differs, but the clean run does not use it; the attack is named by its value.
    assert runs_model.run_labels(docs) == ["cut=1 seed=2 surrogate α=0.5", "cut=3 seed=2 surrogate α=0.5",
                                           "cut=1 seed=1 none"]
    same = [{"id": GENERATED[0], "config": {"cut": 1}}, {"id": GENERATED[1], "config": {"cut": 1}}]
    assert runs_model.run_labels(same) == ["1124-133627…8eac", "1124-133627…1f2e"]
    twins = [{"id": "x", "config": {"cut": 1, "seed": 1}}, {"id": "y", "config": {"cut": 1, "seed": 1}},
             {"id": "z", "config": {"cut": 3, "seed": 1}}]
    assert runs_model.run_labels(twins) == ["cut=1 x", "cut=1 y", "cut=3"]


def test_paper_values_marked_when_the_epochs_differ(tmp_path):
    write_run(tmp_path, "short", epochs=3, cut=2, clients=3, attack="surrogate", alpha=0.2)
    write_run(tmp_path, "full", epochs=90, cut=2, clients=3, attack="surrogate", alpha=0.2)
    docs = sorted((e.doc for e in runs_model.RunIndex(tmp_path).scan()), key=lambda d: d["id"])
    _, rows = runs_model.compare_rows(docs)
    assert [runs_model.paper_differs(r) for r in rows] == [False, True]          # full, short
    assert runs_model.paper_footnote(rows) == f"{runs_model.PAPER_MARK} not like for like: the paper trained 90 epochs, the run 3"
    assert runs_model.paper_footnote(rows[:1]) == ""
    assert reference.lookup(dict(dataset="cifar10", model="resnet9", clients=1, cut=1, attack="none")).epochs == 140


def test_chart_legend_numbers_the_series_when_names_do_not_fit():
    from sltui.tui.widgets.charts import legend_names
    names = ["cut=1 seed=2", "cut=3 seed=2 surrogate α=0.5 poison_ratio=0.3"]
    assert legend_names(names[:1], 40) == names[:1]
    assert legend_names(names, 40) == ["1", "2"]
    assert legend_names(names, 200) == names


def test_browser_rows_rebuild_only_on_change_and_group_by_setting(tmp_path):
    from sltui.tui.browser_model import BrowserRows

    for seed in (1, 2):
        write_run(tmp_path, f"a{seed}", seed=seed, attack="surrogate", alpha=0.09)
    write_run(tmp_path, "b1", cut=3)
    index = runs_model.RunIndex(tmp_path, persist=False)
    view = BrowserRows()
    assert view.update(index.scan(), index.version) and len(view.rows) == 3
    assert not view.update(index.scan(), index.version)             # nothing changed: nothing rebuilt
    view.query_text = "cut>=3"
    assert view.update(index.scan(), index.version) and [r["id"] for r in view.rows] == ["b1"]
    view.query_text, view.grouped = "", True
    view.update(index.scan(), index.version)
    assert sorted(r["n"] for r in view.rows) == [1, 2]
    pair = next(r for r in view.rows if r["n"] == 2)
    assert sorted(view.compare_ids({pair["id"]})) == ["a1", "a2"]
    assert view.open_group(pair["id"]) and view.update(index.scan(), index.version)
    assert sorted(r["id"] for r in view.rows) == ["a1", "a2"]
    assert view.close_group() and view.grouped


def test_the_browser_at_80_columns_over_the_example_runs_shows_setting_cda_and_asr():
    """Issue 31: over examples/runs and examples/arena together (880-odd runs, some of them
    sharing the random part of their ids) and a run with a very long name, every row at
    80x24 shows its short id, status, setting, CDA and ASR."""
    from pathlib import Path

    from sltui.runs.index import RunIndex, resolve_run_id

    examples = Path(__file__).resolve().parent.parent / "examples"
    entries = [e for folder in ("runs", "arena") for e in RunIndex(examples / folder, persist=False).scan()]
    rows = [runs_model.browser_row(e) for e in entries]
    rows.append({**rows[0], "id": "20261205-101010-mnist-lenet-c1-k1-hijack-e111", "name": "n" * 5000})
    assert len(rows) > 800
    ids = [r["id"] for r in rows]
    short = runs_model.short_run_ids(ids)
    # the browser's table: 80 columns less its scrollbar and selection mark
    columns, cells = runs_model.browser_layout(rows, 80 - 2 - 3, runs_model.BROWSER_COLUMNS, short)
    assert [c.key for c in columns][:5] == ["id", "status", "setting", "cda", "asr"]
    assert all(cell["setting"] != "-" for cell in cells)
    # '-' only for the runs that have no metric (two interrupted before their first epoch)
    assert all((cell["cda"] == "-") == (row.get("cda") is None) and (cell["asr"] == "-") == (row.get("asr") is None)
               for cell, row in zip(cells, rows))
    assert max(len(cell["id"]) for cell in cells) <= 9 and len({cell["id"] for cell in cells}) == len(cells)
    assert all(resolve_run_id(ids, cell["id"]) == run_id for cell, run_id in zip(cells, ids))


def test_the_over_seeds_line_follows_final_or_best(tmp_path):
    for seed, cda0 in ((1, 70.0), (2, 74.0)):
        write_run(tmp_path, f"a{seed}", seed=seed, cda0=cda0, attack="surrogate", alpha=0.09)
    docs = [e.doc for e in runs_model.RunIndex(tmp_path).scan()]
    for doc, best in zip(docs, (60.0, 62.0)):
        doc["best"] = {**doc["best"], "cda": best, "asr": 10.0}
    assert runs_model.seed_summary(docs) == ["same setting over seeds 1, 2: CDA 87.00 ± 2.83  ASR 70.00 ± 0.00"]
    assert runs_model.seed_summary(docs, best=True) == [
        "same setting over seeds 1, 2: best-val CDA 61.00 ± 1.41  best-val ASR 10.00 ± 0.00"]


def test_chart_legend_falls_back_to_the_short_names_given():
    from sltui.tui.widgets.charts import legend_names
    names = ["cut=1 seed=2 splitguard", "cut=1 seed=2 scrutinizer", "cut=3 seed=2 surrogate α=0.5 splitguard"]
    # compare's detector chart: run number and detector, as the table numbers the runs
    assert legend_names(names, 30, ["1 SG", "1 Scr", "2 SG"]) == ["1 SG", "1 Scr", "2 SG"]
    assert legend_names(["[/red]\x1b[31m"], 200) == ["[/red]\\x1b[31m"]      # names as they are


def test_a_legend_never_covers_a_point():
    from sltui.tui.widgets.charts import legend_top
    canvas, legend = (60, 12), (10, 2)          # the plot's columns and rows; the legend's
    near_top_left = [(1, 99.0), (2, 99.5), (12, 20.0)]
    top = legend_top(near_top_left, (1, 12), (0, 100), canvas, legend)
    assert top > 100
    # every point now lies below the legend's rows (row 0 at the bottom)
    rows_of = [(y / top) * (canvas[1] - 1) for _, y in near_top_left]
    assert max(rows_of) < canvas[1] - legend[1] - 0.5
    # points away from the legend leave the axis as it was
    assert legend_top([(1, 40.0), (12, 99.0)], (1, 12), (0, 100), canvas, legend) == 100
    # no room for a legend above the data: it must go elsewhere (the chart puts it in its title)
    assert legend_top(near_top_left, (1, 12), (0, 100), (60, 4), (10, 2)) is None


def test_groups_name_every_field_that_differs_between_them(tmp_path):
    settings = [dict(attack="hijack", hijack_beta=0.25, defenses=("splitguard",)),
                dict(attack="hijack", hijack_beta=0.7, defenses=("splitguard",)),
                dict(attack="hijack", hijack_beta=0.7, defenses=()),
                dict(attack="hijack", hijack_beta=0.7, defenses=("splitguard",), on_flag="stop"),
                dict(attack="none")]
    for i, setting in enumerate(settings):
        for seed in (1, 2):
            write_run(tmp_path, f"g{i}-{seed}", seed=seed, epochs=2, **setting)
    docs = [{**e.doc, "status": e.status} for e in runs_model.RunIndex(tmp_path).scan()]
    rows = runs_model.group_rows(docs)
    labels = sorted(r["setting"] for r in rows)
    assert len(rows) == 5 and len(set(labels)) == 5              # no two read alike
    assert "mnist lenet c1 K1 hijack β=0.25 det=SG on_flag=continue" in labels
    assert "mnist lenet c1 K1 hijack β=0.7 det=- on_flag=continue" in labels
    assert "mnist lenet c1 K1 none det=- on_flag=continue" in labels   # the clean run has no β
    assert not any("epochs" in label or "cut" in label for label in labels)   # the same in every group
    # within a filtered view only what differs there
    hijack = [d for d in docs if d["config"]["attack"] == "hijack" and d["config"]["on_flag"] == "continue"
              and list(d["config"]["defenses"]) == ["splitguard"]]
    assert sorted(r["setting"] for r in runs_model.group_rows(hijack)) == [
        "mnist lenet c1 K1 hijack β=0.25", "mnist lenet c1 K1 hijack β=0.7"]


def test_the_grouped_view_sorts_by_what_its_rows_have(tmp_path):
    from sltui.tui.browser_model import BrowserRows

    for seed in (1, 2):
        write_run(tmp_path, f"s{seed}", seed=seed)
    view = BrowserRows()
    view.grouped = True
    view.update(runs_model.RunIndex(tmp_path).scan())
    assert view.sort() == ("setting", False)                      # not the groups' hash ids
    assert view.sort_keys() == list(runs_model.GROUP_SORT_KEYS)
    view.sort_key, view.sort_reverse = "asr", True
    assert view.sort() == ("asr", True)


def test_the_filter_finds_runs_by_name():
    from sltui.runs.query import QueryError, parse_query

    rows = [{"id": "a", "name": "Baseline [v2]"}, {"id": "b", "name": None}, {"id": "c"}]
    assert [r["id"] for r in rows if parse_query("name:baseline").matches(r)] == ["a"]
    assert [r["id"] for r in rows if parse_query("name:[v2]").matches(r)] == ["a"]
    assert [r["id"] for r in rows if parse_query("baseline").matches(r)] == ["a"]     # a plain word too
    assert [r["id"] for r in rows if parse_query("name!=x").matches(r)] == ["a", "b", "c"]
    with pytest.raises(QueryError, match="name: needs some text"):
        parse_query("name:")


def test_compare_says_whether_a_setting_agrees_with_the_authors(tmp_path):
    """The compare view's agreement line uses the reproduction's rule (docs/protocol.md
    section 13): the authors' MNIST LeNet K=1 cut-1 alpha-0.09 numbers (results_mnist.csv:
    CDA 98.82, ASR 99.59) against seeds with ASR 95 and 40 (agrees: 99.59 <= 95 + 5) and
    CDA 90 and 91 (differs: 98.82 > 91 + 1)."""
    from sltui.tui.runs_model import agreement_lines
    from tests.tui_helpers import write_run
    from engine.store import read_run_file

    root = tmp_path / "runs"
    for i, (seed, cda, asr) in enumerate([(1, 90.0, 95.0), (2, 91.0, 40.0)]):
        # 90 epochs as the authors (write_run's metrics rise by 5 and 20 points an epoch)
        write_run(root, f"s{i}", attack="surrogate", alpha=0.09, seed=seed, epochs=90, cda0=cda - 450, asr0=asr - 1800)
    write_run(root, "x", dataset="synthetic", seed=1)      # no authors' number: no line
    write_run(root, "short", attack="surrogate", alpha=0.2, seed=1, epochs=3)   # 3 epochs: not like for like
    docs = [read_run_file(p) for p in sorted(root.rglob("run.json"))]
    assert agreement_lines(docs) == [
        "mnist lenet c1 K1 surrogate α=0.09 (n 2) against the authors' CDA 98.82 ASR 99.59: CDA differs, ASR agrees",
        "mnist lenet c1 K1 surrogate α=0.2 (n 1) against the authors' CDA 98.94 ASR 96.67: no verdict, not like for "
        "like (fewer epochs or part of the data)"]
