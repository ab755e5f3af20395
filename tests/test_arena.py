"""docs/protocol.md section 11: the arena's grid, its long table and matrix, and the command."""
from __future__ import annotations

import csv

import pytest

from engine.sweeps.arena import arena_groups, arena_sweep, long_rows, matrix_rows, planned_cells

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


def doc(attack, seed, defenses, cda, flags):
    return {"id": f"{attack}-{seed}-{'+'.join(defenses)}", "status": "completed",
            "config": {"attack": attack, "seed": seed, "defenses": list(defenses)},
            "final": {"cda": cda, "asr": 10.0 if attack != "none" else 1.0},
            "defenses": {d: {"scores": [], "flagged_at": flags.get(d)} for d in defenses}}


def flag(epoch):
    return {"epoch": epoch, "step": 3, "client": 1}


def hand_made_arena():
    docs = []
    for seed in (1, 2):
        docs.append(doc("none", seed, ("scrutinizer",), 98.0, {"scrutinizer": flag(1) if seed == 1 else None}))
        docs.append(doc("none", seed, ("splitguard",), 97.0, {}))
        docs.append(doc("hijack", seed, ("scrutinizer",), 90.0, {"scrutinizer": flag(seed)}))
        docs.append(doc("hijack", seed, ("splitguard",), 89.0, {"splitguard": flag(2)}))
    return docs


def test_long_table_has_a_row_per_attack_detector_seed_with_the_cost():
    rows = long_rows(hand_made_arena())
    assert len(rows) == 2 * 2 * 2
    guard = [r for r in rows if r["detector"] == "splitguard" and r["attack"] == "hijack"]
    assert [r["cda_cost"] for r in guard] == [-1.0, -1.0]
    watch = [r for r in rows if r["detector"] == "scrutinizer"]
    assert all(r["cda_cost"] == 0.0 for r in watch)  # it is its own baseline


def test_a_client_attack_without_an_honest_client_is_left_out_of_the_table():
    alone, among = doc("client", 1, ("scrutinizer",), 95.0, {}), doc("client", 1, ("splitguard",), 95.0, {})
    alone["config"]["clients"], among["config"]["clients"] = 1, 3
    rows = long_rows([alone, among])
    assert [(r["attack"], r["detector"]) for r in rows] == [("client", "splitguard")]
    # Nor is it planned, so the arena's cells are complete without it.
    sweep = {"points": [{"config": d["config"]} for d in (alone, among)]}
    assert planned_cells(sweep) == {("client", "splitguard"): 1}


def test_matrix_is_the_pivot_of_the_long_table():
    matrix = {(r["attack"], r["detector"]): r for r in matrix_rows(long_rows(hand_made_arena()))}
    assert matrix[("hijack", "scrutinizer")]["detection_rate"] == 1.0
    assert matrix[("hijack", "scrutinizer")]["mean_detection_epoch"] == 1.5
    assert matrix[("hijack", "scrutinizer")]["false_positive_rate"] == 0.5
    assert matrix[("none", "scrutinizer")]["detection_rate"] is None
    assert matrix[("none", "splitguard")]["false_positive_rate"] == 0.0
    assert matrix[("hijack", "splitguard")]["cda_cost"] == -1.0
    assert matrix[("none", "splitguard")]["mean_detection_epoch"] is None


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
    assert names == ["arena-heatmap.png", "arena-long.csv", "arena-matrix.csv", "arena.md"]
    with (report / "arena-long.csv").open() as fh:
        long = list(csv.DictReader(fh))
    assert {(r["attack"], r["detector"]) for r in long} == {(a, d) for a in ("none", "surrogate")
                                                            for d in ("splitguard", "scrutinizer")}
    with (report / "arena-matrix.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert "| surrogate | splitguard |" in (report / "arena.md").read_text()
    code, out, err = sltui(*args)
    assert code == 0 and "4 already done, 0 to run" in out


@pytest.mark.parametrize("args,needle", [
    (["--defenses", "strip"], "--defenses"),
    (["--attacks", "nope"], "--attacks"),
    (["--jobs", "0"], "--jobs"),
])
def test_arena_errors_are_one_line(sltui, tmp_path, args, needle):  # noqa: F811
    line = assert_one_line_error(*sltui("arena", *args, "--runs-dir", str(tmp_path / "runs")))
    assert needle in line
