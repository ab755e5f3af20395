"""bench/: the side-by-side benchmark runs end to end and compares like with like."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import torch

from bench.plain import PlainLoop
from bench.run import SETTINGS, main, write_synthetic_mnist
from engine.data.trigger import trigger_for
from engine.training.runner import build_context


@pytest.fixture
def synthetic_root(tmp_path) -> Path:
    return write_synthetic_mnist(tmp_path / "data", n_train=720, n_test=200)


def test_bench_runs_end_to_end_on_a_tiny_synthetic_setting(tmp_path):
    out = tmp_path / "results.json"
    started = time.perf_counter()
    code = main(["--synthetic", "--inline", "--settings", "lenet-mnist-k3-surrogate", "--epochs", "2",
                 "--train-limit", "600", "--eval-limit", "200", "--options", '{"threads": 1}', "--out", str(out)])
    assert code == 0
    assert time.perf_counter() - started < 60
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and "including evaluation" in doc["samples_per_s_definition"]
    assert doc["device_name"] and "engine_commit" in doc  # the machine named, the code identified
    (res,) = doc["results"]
    assert res["setting"] == "lenet-mnist-k3-surrogate" and res["epochs"] == 2
    plain, engine = res["plain"], res["engine"]
    for loop in (plain, engine):
        assert len(loop["epochs"]) == 2
        assert loop["samples_per_s"] > 0 and loop["train_samples_per_s"] >= loop["samples_per_s"]
        assert loop["peak_rss_mb"] > 0 and loop["tflops"] > 0
        assert {"cda", "asr", "val_loss"} <= set(loop["final"])
    # Same number of training samples (same steps) in every epoch of both loops.
    assert [e["samples"] for e in plain["epochs"]] == [e["samples"] for e in engine["epochs"]] == [450, 450]
    assert res["ratio"] == pytest.approx(engine["samples_per_s"] / plain["samples_per_s"])
    assert engine["engine_options"]["fast_pool"] is True


def test_bench_rejects_unknown_settings(capsys):
    assert main(["--settings", "nope", "--synthetic"]) == 2
    assert "unknown setting" in capsys.readouterr().err


def test_plain_loop_and_engine_train_on_the_same_shares(synthetic_root):
    """Same Table 1 splits, same K+1 shares, same trigger and poison count: the plain
    loop differs only in how it computes (and in its shuffling order)."""
    cfg = SETTINGS["lenet-mnist-k3-surrogate"].config(str(synthetic_root), "cpu", 1)
    plain = PlainLoop(cfg, torch.device("cpu"))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.attack.prepare(ctx)

    def rows(subset) -> list[bytes]:
        return sorted(bytes((subset.dataset.data[i]).flatten().tolist()) for i in subset.indices)

    for loader, share in zip(plain.client_loaders, ctx.data.shares[1:]):
        assert rows(loader.dataset) == sorted(bytes(r.flatten().tolist()) for r in share.x)
    poisoned = plain.surrogate_loader.dataset
    assert len(poisoned) == len(ctx.data.shares[0])
    assert len(poisoned.poisoned) == int(ctx.attack.poisoned.mask.sum())
    trig = trigger_for(cfg, 1, torch.device("cpu"))
    assert torch.equal(poisoned.stamp.patch, trig.patch)
    assert (poisoned.stamp.row, poisoned.stamp.col) == (trig.row, trig.col)
    # Same initial weights.
    for p, q in zip(plain.clients[0].parameters(), ctx.client.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(plain.surrogate.parameters(), ctx.attack.surrogate.parameters()):
        assert torch.equal(p, q)
    assert plain.samples_per_epoch == sum(len(s) for s in ctx.data.shares[1:])


def test_plain_loop_learns_on_synthetic(synthetic_root):
    cfg = SETTINGS["stripnet-mnist-k3"].config(str(synthetic_root), "cpu", 1)
    plain = PlainLoop(cfg, torch.device("cpu"))
    stats = plain.train_epoch()
    metrics = plain.evaluate()
    assert stats["samples"] == 450 and metrics["cda"] > 20, metrics


@pytest.mark.slow
def test_bench_worker_processes(tmp_path):
    """The default mode: each loop in its own spawned worker process (own peak RSS)."""
    out = tmp_path / "results.json"
    code = main(["--synthetic", "--settings", "lenet-mnist-k3-surrogate", "--epochs", "1", "--train-limit", "300",
                 "--eval-limit", "100", "--plain-threads", "1", "--options", '{"threads": 1}', "--out", str(out)])
    assert code == 0
    (res,) = json.loads(out.read_text())["results"]
    assert res["loops"] == ["plain", "plain-1t", "engine"]
    assert res["plain-1t"]["threads"] == 1 and res["engine"]["threads"] == 1
    assert set(res["ratio_vs"]) == {"plain", "plain-1t"}


def test_kernel_microbenchmark_writes_its_results(tmp_path):
    from bench.kernels import main as kernels_main
    from engine.speed import kernels

    if not kernels.AVAILABLE:
        pytest.skip("numba is not importable here")
    out = tmp_path / "kernels.json"
    assert kernels_main(["--reps", "1", "--inner", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["threads"] == 1 and doc["device_name"]
    ops = doc["median_ms_per_call"]
    assert len(ops) == 3 and all(len(v) >= 2 and all(ms > 0 for ms in v.values()) for v in ops.values())
    assert torch.get_num_threads() == 1  # the suite's setting, restored


def test_detector_bench_times_every_variant_against_none(tmp_path):
    from bench.defenses import VARIANTS
    from bench.defenses import main as defenses_main

    out = tmp_path / "defenses.json"
    assert defenses_main(["--rounds", "1", "--train-limit", "400", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == set(VARIANTS)
    assert results["none"]["overhead_pct"] == 0.0
    assert all(r["ms_per_step"] > 0 and len(r["rounds_ms"]) == 1 for r in results.values())


def test_doc_tables_rewrite_only_their_markers_from_a_real_report(tmp_path):
    """bench/doc_tables.py on the committed evaluation arena's report: each generated table
    sits between its markers, says what cells.csv holds, and the rest of the page is kept."""
    from bench.doc_tables import main as doc_tables
    report = Path(__file__).resolve().parents[1] / "examples" / "arena" / "report"
    page = tmp_path / "page.md"
    text = ("# Title\n\nbefore\n<!-- eval-tables -->\nold\n<!-- /eval-tables -->\nmiddle\n"
            "<!-- frontier-table -->\n<!-- /frontier-table -->\n<!-- react-table -->\n<!-- /react-table -->\nafter\n")
    page.write_text(text)
    assert doc_tables([str(report), str(page)]) == 0
    out = page.read_text()
    assert out.startswith("# Title\n\nbefore\n<!-- eval-tables: generated by bench/doc_tables.py")
    assert "\nmiddle\n" in out and out.endswith("<!-- /react-table -->\nafter\n") and "\nold\n" not in out
    with (report / "cells.csv").open() as fh:
        cells = [c for c in csv.DictReader(fh) if c["clients"] == "1"]
    eval_block = out.split("<!-- /eval-tables -->")[0]
    honest = [c for c in cells if c["attack"] == "none"]
    assert honest
    for cell in honest:  # each honest cell's false accusations, as k/n, in its detector's row
        row = next(line for line in eval_block.splitlines() if line.startswith(f"| none | {cell['detector']} |"))
        assert f"FA {cell['false_accusations']}/{cell['runs']} (" in row
    # A setting with no run of an attack reads "not run", never an empty cell.
    settings = {(c["dataset"], c["cut"]) for c in cells}
    assert any(c["attack"] == "autoencoder" for c in cells)
    for attack, detector in {(c["attack"], c["detector"]) for c in cells if c["attack"] == "autoencoder"}:
        row = next(line for line in eval_block.splitlines() if line.startswith(f"| {attack} | {detector} |"))
        ran = {(c["dataset"], c["cut"]) for c in cells if (c["attack"], c["detector"]) == (attack, detector)}
        assert row.count("not run") == len(settings - ran) and " |  |" not in row
    assert "| conditional | 0.7 |" in out and "| setting | attack | detector |" in out
    assert doc_tables([str(report), str(page)]) == 0 and page.read_text() == out  # idempotent
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert doc_tables([str(report), str(plain)]) == 0 and plain.read_text() == "no markers\n"


def test_splitout_protocols_counts_as_the_notebook_windows_and_per_run_and_epoch():
    """bench/splitout_protocols.py: the notebook's per-epoch verdict looks at windows
    [i - 10, i) for i in range(10, len - 9), so outliers among an epoch's last 10 decisions
    alone are never judged; a run is flagged when any epoch is, and epochs are counted apart."""
    from bench.splitout_protocols import notebook_flags, summary
    assert notebook_flags([0] * 4 + [1] * 6 + [0] * 20) == 10  # 6 of the first 10
    assert notebook_flags([0] * 5 + [1] * 5 + [0] * 20) is None  # 5 of 10 is no majority
    assert notebook_flags([0] * 20 + [1] * 10) is None  # the last 10: outside every window
    assert notebook_flags([0] * 14 + [1] * 16) == 20  # the last window judged, [10, 20), holds 6
    rows = [{"flagged_epochs": [1], "epochs": 90}, {"flagged_epochs": [1, 2, 3], "epochs": 90},
            {"flagged_epochs": [], "epochs": 80}]
    s = summary(rows)
    assert (s["runs"]["k"], s["runs"]["n"]) == (2, 3)
    assert (s["epochs"]["k"], s["epochs"]["n"]) == (4, 260)
    assert (s["epoch1"]["k"], s["later_epochs"]["k"], s["later_epochs"]["n"]) == (2, 2, 257)
    assert s["epochs"]["low"] < 4 / 260 < s["epochs"]["high"]
