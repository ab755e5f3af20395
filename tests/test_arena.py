"""docs/protocol.md section 11: the arena's grid, its long table and matrix, and the command."""
from __future__ import annotations

import csv

import pytest

from engine.errors import ConfigError
from engine.sweeps.arena import arena_groups, arena_sweep, planned_cells
from engine.sweeps.executors import SweepFile
from engine.sweeps.grid import expand, make_sweep
from engine.sweeps.verdicts import CELL_COLUMNS, RUN_COLUMNS
from test_cli import assert_one_line_error, sltui  # noqa: F401 - the fixture

TINY = ["--dataset", "synthetic", "--epochs", "1", "--train-limit", "200", "--eval-limit", "64", "--batch-size", "32",
        "--device", "cpu", "--no-save-weights", "--splitguard-start", "1", "--scrutinizer-window", "2"]


def test_watching_detectors_share_a_run_and_splitguard_gets_its_own():
    assert arena_groups(["splitguard", "scrutinizer", "splitout"]) == [("scrutinizer", "splitout"), ("splitguard",)]
    assert arena_groups(["splitguard"]) == [(), ("splitguard",)]  # the baseline: no detector


def test_arena_points_are_attacks_by_seeds_by_detector_sets():
    sweep, points = arena_sweep("none,surrogate", ["splitguard", "scrutinizer"], "1,2", {"dataset": "synthetic"})
    combos = {(p.config.attack, p.config.seed, p.config.defenses) for p in points}
    assert len(points) == len(combos) == 2 * 2 * 2
    assert {c[2] for c in combos} == {("scrutinizer",), ("splitguard",)}
    again, _ = arena_sweep("none,surrogate", ["splitguard", "scrutinizer"], "1,2", {"dataset": "synthetic"})
    assert sweep.sweep_id() == again.sweep_id()


def test_arena_runs_resumes_and_writes_the_matrix(sltui, tmp_path):  # noqa: F811
    runs = tmp_path / "runs"
    args = ["arena", "--attacks", "none,surrogate", "--defenses", "splitguard,scrutinizer", "--seeds", "1",
            *TINY, "--runs-dir", str(runs)]
    code, out, err = sltui(*args, "--dry-run")
    assert code == 0, err
    assert out.count("to run") == 4 and not list(runs.rglob("run.json"))
    code, out, err = sltui(*args, "--jobs", "2")
    assert code == 0, err
    assert len(list(runs.rglob("run.json"))) == 4
    [report] = list((runs / "sweeps").glob("*/report"))
    names = sorted(p.name for p in report.iterdir())
    assert names == ["arena-heatmap.png", "arena.md", "cells.csv", "frontier.csv", "frontier.png", "runs.csv"]
    with (report / "runs.csv").open() as fh:
        runs_csv = list(csv.DictReader(fh))
    assert list(runs_csv[0]) == list(RUN_COLUMNS)
    assert {(r["attack"], r["detector"]) for r in runs_csv} == {(a, d) for a in ("none", "surrogate")
                                                                for d in ("splitguard", "scrutinizer")}
    # No honest server is ever detected; the surrogate's server is malicious from epoch 1.
    assert all(r["verdict"] in ("false_accusation", "quiet") for r in runs_csv if r["attack"] == "none")
    assert all(r["server"] == "malicious" and r["attack_start_epoch"] == "1" for r in runs_csv
               if r["attack"] == "surrogate")
    with (report / "cells.csv").open() as fh:
        cells = list(csv.DictReader(fh))
    assert list(cells[0]) == list(CELL_COLUMNS) and len(cells) == 4
    for cell in cells:  # every rate lies inside its interval
        for rate, low, high in (("detection_rate", "detection_ci_low", "detection_ci_high"),
                                ("false_accusation_rate", "false_accusation_ci_low", "false_accusation_ci_high")):
            if cell[rate]:
                assert float(cell[low]) <= float(cell[rate]) <= float(cell[high])
    text = (report / "arena.md").read_text()
    assert "| surrogate | splitguard |" in text and "none (honest server)" in text
    code, out, err = sltui(*args)
    assert code == 0 and "4 already done, 0 to run" in out
    # `sltui report` rebuilds an arena's report from its run files, the same files again.
    before = {p.name: p.read_bytes() for p in report.iterdir() if p.suffix in (".csv", ".md")}
    for path in report.iterdir():
        path.unlink()
    code, out, err = sltui("report", report.parent.name, "--runs-dir", str(runs))
    assert code == 0, err
    assert sorted(p.name for p in report.iterdir()) == names
    assert {p.name: p.read_bytes() for p in report.iterdir() if p.suffix in (".csv", ".md")} == before
    # A second arena whose points are all done; one report over both counts each run once.
    code, out, err = sltui(*[a if a != "none,surrogate" else "none" for a in args])
    assert code == 0 and "2 already done, 0 to run" in out
    ids = sorted(p.stem for p in (runs / "sweeps").glob("*.json"))
    assert len(ids) == 2
    assert "--out" in assert_one_line_error(*sltui("report", *ids, "--runs-dir", str(runs)))
    code, out, err = sltui("report", *ids, "--runs-dir", str(runs), "--out", str(tmp_path / "both"))
    assert code == 0, err
    with (tmp_path / "both" / "runs.csv").open() as fh:
        assert sorted(r["run_id"] for r in csv.DictReader(fh)) == sorted(r["run_id"] for r in runs_csv)


@pytest.mark.parametrize("args,needle", [
    (["--defenses", "strip"], "--defenses"),
    (["--attacks", "nope"], "--attacks"),
    (["--jobs", "0"], "--jobs"),
])
def test_arena_errors_are_one_line(sltui, tmp_path, args, needle):  # noqa: F811
    line = assert_one_line_error(*sltui("arena", *args, "--runs-dir", str(tmp_path / "runs")))
    assert needle in line


def test_impossible_points_are_neither_planned_nor_run():
    _, points = arena_sweep("none,client", ["splitguard"], "1", {"dataset": "synthetic", "clients": 1})
    assert {p.config.attack for p in points} == {"none"}
    with pytest.raises(ConfigError, match="honest client"):
        arena_sweep("client", ["splitguard"], "1", {"dataset": "synthetic", "clients": 1})
    # An older arena file that lists such a point: not a planned cell either.
    alone = {"attack": "client", "clients": 1, "defenses": ["splitguard"]}
    among = {"attack": "client", "clients": 3, "defenses": ["splitguard"]}
    assert planned_cells({"points": [{"config": alone}, {"config": among}]}) == {("client", "", "splitguard"): 1}


def test_options_of_another_attack_do_not_split_the_none_point():
    _, plain = arena_sweep("none,hijack", ["scrutinizer"], "1", {"dataset": "synthetic"})
    _, blind = arena_sweep("none,hijack", ["scrutinizer"], "1", {"dataset": "synthetic", "hijack_critic": "plain",
                                                                 "hijack_beta": 0.0})
    none_key = {p.key for p in plain if p.config.attack == "none"}
    assert none_key == {p.key for p in blind if p.config.attack == "none"}
    assert {p.key for p in plain if p.config.attack == "hijack"} != {p.key for p in blind if p.config.attack == "hijack"}


@pytest.mark.slow
def test_a_frontier_arena_writes_frontier_csv_and_png(sltui, tmp_path):  # noqa: F811
    runs = tmp_path / "runs"
    code, out, err = sltui("arena", "--attacks", "none,hijack", "--hijack-betas", "0,0.7", "--defenses", "scrutinizer",
                           "--seeds", "1", "--hijack-warmup-epochs", "1", "--hijack-shadow-epochs", "1",
                           *TINY, "--epochs", "2", "--runs-dir", str(runs))
    assert code == 0, err
    [report] = list((runs / "sweeps").glob("*/report"))
    with (report / "frontier.csv").open() as fh:
        frontier = list(csv.DictReader(fh))
    assert {(r["hijack_beta"], r["detector"]) for r in frontier} == {("0.0", "scrutinizer"), ("0.7", "scrutinizer")}
    assert (report / "frontier.png").stat().st_size > 0
    assert "## The attacker's frontier" in (report / "arena.md").read_text()


def test_report_of_an_arena_and_a_plain_sweep_together_is_one_line(sltui, tmp_path):  # noqa: F811
    runs = tmp_path / "runs"
    sweep, points = arena_sweep("none", ["splitguard"], "1", {"dataset": "synthetic", "epochs": 1})
    SweepFile(runs, sweep, points).save()
    plain = make_sweep({"attacks": "none", "seeds": "1"}, {"dataset": "synthetic"})
    SweepFile(runs, plain, expand(plain)).save()
    line = assert_one_line_error(*sltui("report", sweep.sweep_id(), plain.sweep_id(), "--runs-dir", str(runs),
                                        "--out", str(tmp_path / "out")))
    assert "not both" in line and not (tmp_path / "out").exists()


def test_attack_settings_are_named_by_the_knobs_the_arena_varied():
    from sltui.format import fmt_attack_setting

    point = {"attack": "hijack", "variant": "hijack_beta=0.25 hijack_critic=plain", "hijack_beta": 0.25,
             "hijack_critic": "plain", "hijack_warmup_epochs": 6}
    assert fmt_attack_setting(point) == "hijack β0.25 plain"
    assert fmt_attack_setting(point, attack=False) == "β0.25 plain"
    assert fmt_attack_setting({**point, "variant": "hijack_warmup_epochs=6 on_flag=stop"}) == "hijack w6 on_flag=stop"
    assert fmt_attack_setting({"attack": "surrogate", "variant": "on_flag=stop"}) == "surrogate on_flag=stop"
    assert fmt_attack_setting({"attack": "surrogate", "variant": ""}, attack=False) == "surrogate"
    # A planned cell without runs yet has only its variant's text (the TUI's matrix while an arena runs).
    assert fmt_attack_setting({"attack": "hijack", "variant": "hijack_beta=0.0 hijack_critic=conditional"}) == \
        "hijack β0 conditional"


def test_a_reacting_arena_of_splitguard_alone_plans_no_run_that_cannot_react():
    # SplitGuard alone brings a detector-free baseline group; such runs cannot stop at a flag.
    sweep, points = arena_sweep("hijack", ["splitguard"], "1,2", {"dataset": "synthetic", "epochs": 2},
                                {"on_flags": "stop"})
    assert {(p.config.defenses, p.config.on_flag) for p in points} == {(("splitguard",), "stop")}
    sweep, points = arena_sweep("hijack", ["splitguard"], "1", {"dataset": "synthetic", "epochs": 2},
                                {"on_flags": "continue,stop"})
    assert sorted((p.config.defenses, p.config.on_flag) for p in points) == [
        ((), "continue"), (("splitguard",), "continue"), (("splitguard",), "stop")]


def test_an_arena_of_reacting_runs_reports_with_their_continue_twins():
    from engine.sweeps.executors import point_run_docs
    from engine.sweeps.grid import experiment_key

    sweep, points = arena_sweep("hijack", ["scrutinizer"], "1", {"dataset": "synthetic", "epochs": 2},
                                {"on_flags": "stop"})
    [point] = points
    config = point.config.to_dict()
    twin = {"id": "twin", "config": {**config, "on_flag": "continue"}}
    reacting = {"id": "reacting", "config": config}
    have = {experiment_key(twin["config"]): [twin], experiment_key(config): [reacting]}
    doc = {"points": [{"key": point.key, "config": config}]}
    assert [d["id"] for d in point_run_docs(doc, have)] == ["reacting"]
    assert sorted(d["id"] for d in point_run_docs(doc, have, continue_twins=True)) == ["reacting", "twin"]
