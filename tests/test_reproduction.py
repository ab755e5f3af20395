"""docs/protocol.md section 13: the reproduction's plan (which runs) and its comparison rules."""
from __future__ import annotations

import pytest

from engine.errors import ConfigError
from test_cli import sltui  # noqa: F401 - the fixture
from engine.sweeps.grid import expand, make_sweep
from engine.sweeps.reproduction import DEFAULT_PARTS, PART_NAMES, parse_parts, part_points, parts_by_key, reproduction_sweep


@pytest.mark.parametrize("part,runs", [("fig34", 90), ("fig7", 18), ("fig6", 12), ("halved", 3), ("ae-share", 3),
                                       ("ae-code", 6), ("appd", 6), ("table3", 0), ("clients-seeds", 0), ("clients", 90)])
def test_each_part_plans_the_runs_section_13_names(part, runs):
    points = part_points(part, {})
    assert len(points) == runs
    configs = [p.config for p in points]
    protocol = (100, 0) if part == "ae-code" else (90, 70)  # the trace deploys 100 epochs, no early stopping
    assert all(c.model == "lenet" and (c.epochs, c.patience) == protocol and c.train_limit is None for c in configs)
    assert all(c.trigger_rng == "numpy" and c.lr_milestones == (26, 41, 56, 71) for c in configs)


def test_the_paper_grid_is_the_plain_sweep_of_the_same_axes():
    # A reproduction run is an ordinary run: `sltui sweep` with the same axes finds it done, whatever the device.
    plain = expand(make_sweep({"datasets": "mnist,fmnist", "models": "lenet", "cuts": "1,2,3", "clients": "1",
                               "attacks": "surrogate", "alphas": "0.5,0.2,0.09,0.06,0.04", "seeds": "1,2,3"},
                              {"device": "cpu", "data_root": "/somewhere"}))
    assert {p.key for p in plain} == {p.key for p in part_points("fig34", {"device": "cuda"})}


def test_side_cells_differ_from_their_main_cell_only_by_the_authors_code_choice():
    halved = part_points("halved", {})
    assert all(p.config.loss_halved and p.config.alpha == 0.09 and p.config.cut == 1 for p in halved)
    main = {p.config.replace(loss_halved=False).to_dict().__repr__() for p in halved}
    fig34 = {p.config.to_dict().__repr__() for p in part_points("fig34", {})}
    assert main <= fig34
    assert all(p.config.ae_share == 0.25 for p in part_points("ae-share", {}))


def test_parts_parse_and_the_sweep_holds_each_experiment_once():
    assert parse_parts(None) == DEFAULT_PARTS and "clients" not in DEFAULT_PARTS
    assert parse_parts("all") == PART_NAMES
    assert parse_parts("fig7, fig34,fig7") == ("fig7", "fig34")
    with pytest.raises(ConfigError, match="unknown part 'fig99'"):
        parse_parts("fig7,fig99")
    sweep, points = reproduction_sweep(("fig34", "halved", "fig34"), {"device": "cpu"})
    assert len(points) == 93 and len({p.key for p in points}) == 93
    assert sweep.sweep_id() != reproduction_sweep(("fig34",), {"device": "cpu"})[0].sweep_id()
    mnist_only = reproduction_sweep(("fig34", "appd"), {}, datasets=("mnist", "mnist-10k"))[1]
    assert {p.config.dataset for p in mnist_only} == {"mnist", "mnist-10k"} and len(mnist_only) == 48
    owners = parts_by_key()
    assert {owners[p.key] for p in points} == {"fig34", "halved"}


# ---------------------------------------------------------------- the comparison rules (SPEC 13)

from engine.sweeps.agreement import (AGREES, DIFFERS, NO_AUTHORS, agreement, cells, claim_autoencoder,  # noqa: E402
                                     claim_clients, claim_cut, claim_small_alpha, reason)


def run_doc(seed, cda, asr, created="2026-12-01T00:00:00", status="completed", device="cpu", **config):
    base = {"dataset": "mnist", "model": "lenet", "cut": 1, "clients": 1, "attack": "surrogate", "alpha": 0.09,
            "trigger": "patch", "loss_halved": False, "seed": seed}
    base.update(config)
    return {"id": f"r{seed}-{created}", "created": created, "status": status, "config": base,
            "env": {"device": device}, "final": {"cda": cda, "asr": asr}}


@pytest.mark.parametrize("values,authors,name,verdict", [
    ((98.0, 98.5, 99.0), 97.0, "cda", AGREES),         # exactly min - 1: on the boundary agrees
    ((98.0, 98.5, 99.0), 96.99, "cda", DIFFERS),       # just past it
    ((98.0, 98.5, 99.0), 100.0, "cda", AGREES),        # max + 1
    ((0.3, 68.4, 35.5), 12.9, "asr", AGREES),          # bimodal over seeds: anywhere in [min - 5, max + 5]
    ((0.3, 68.4, 35.5), 73.5, "asr", DIFFERS),
    ((0.3, 68.4, 35.5), 73.4, "asr", AGREES),
    ((57.4,), 67.4, "asr", AGREES),                     # one seed: within 10 ASR points
    ((57.4,), 67.5, "asr", DIFFERS),
    ((98.9,), 96.9, "cda", AGREES),                     # one seed: within 2 CDA points
    ((98.9,), 96.8, "cda", DIFFERS),
    ((57.4,), None, "asr", NO_AUTHORS),                 # Appendix D's variants: no authors' number
])
def test_agreement_follows_spec_13(values, authors, name, verdict):
    assert agreement(values, authors, name).verdict == verdict


def test_cells_group_seeds_across_devices_and_keep_the_newest_rerun():
    docs = [run_doc(1, 98.0, 10.0), run_doc(2, 98.2, 90.0, device="cuda"), run_doc(3, 98.4, 50.0),
            run_doc(3, 97.0, 20.0, created="2026-12-02T00:00:00"),   # a rerun of seed 3: the newest counts
            run_doc(4, 99.0, 99.0, status="cancelled"),              # not completed: left out
            run_doc(1, 98.0, 1.0, alpha=0.5)]                        # another setting: another cell
    found = {c.config["alpha"]: c for c in cells(docs)}
    cell = found[0.09]
    assert cell.seeds == (1, 2, 3) and cell.asr == (10.0, 90.0, 20.0) and cell.cda == (98.0, 98.2, 97.0)
    assert cell.devices == ("cpu", "cuda", "cpu") and found[0.5].n == 1 and found[0.5].std("asr") is None


def test_reasons_in_their_order():
    wide = cells([run_doc(1, 98, 0.5), run_doc(2, 98, 70.0), run_doc(3, 98, 40.0)])[0]
    narrow = cells([run_doc(1, 98, 1.0), run_doc(2, 98, 2.0), run_doc(3, 98, 3.0)])[0]
    assert reason(wide, agreement(wide.asr, 90.0, "asr")).startswith("seed-unstable: ours 0.5-70.0, authors 90.0")
    assert reason(narrow, agreement(narrow.asr, 90.0, "asr")).startswith("unexplained: ours 1.0-3.0")
    assert reason(narrow, agreement(narrow.asr, 90.0, "asr"), "the halved side cell agrees").startswith("protocol:")
    assert reason(narrow, agreement(narrow.asr, 2.0, "asr")) == ""


def test_claims_on_constructed_cells():
    working = [run_doc(s, 98, a, alpha=alpha) for alpha in (0.09, 0.06, 0.04) for s, a in ((1, 95.0), (2, 60.0))]
    assert claim_small_alpha(cells(working)).verdict == "holds"
    one_fails = working + [run_doc(3, 98, 10.0, alpha=0.04)]
    assert claim_small_alpha(cells(one_fails)).verdict == "partly"
    assert claim_small_alpha(cells([run_doc(1, 98, 5.0, alpha=0.04)])).verdict == "does not hold"
    assert claim_small_alpha([]).verdict == "not run"

    def by_cut(means):
        return [run_doc(1, 98, asr, dataset=d, cut=cut) for d in ("mnist", "fmnist") for cut, asr in zip((1, 2, 3), means)]
    assert claim_cut(cells(by_cut((80.0, 60.0, 2.0)))).verdict == "holds"
    assert claim_cut(cells(by_cut((80.0, 90.0, 2.0)))).verdict == "partly"   # cut 3 lowest, not monotone
    assert claim_cut(cells(by_cut((80.0, 60.0, 85.0)))).verdict == "does not hold"

    k1 = [run_doc(1, 98, 80.0, alpha=a) for a in (0.2, 0.09)]
    k7_lower = [run_doc(1, 98, 20.0, alpha=a, clients=7) for a in (0.2, 0.09)]
    k7_mixed = [run_doc(1, 98, 10.0, alpha=0.2, clients=7), run_doc(1, 98, 95.0, alpha=0.09, clients=7)]
    assert claim_clients(cells(k1 + k7_lower)).verdict == "holds"
    assert claim_clients(cells(k1 + k7_mixed)).verdict == "partly"

    ae = [run_doc(s, 98, asr, attack="autoencoder", alpha=0.5, ae_share=0.5) for s, asr in ((1, 0.3), (2, 11.0))]
    assert claim_autoencoder(cells(ae)).verdict == "does not hold"
    assert claim_autoencoder(cells(ae[:1])).verdict == "holds"


def write_runs(root, specs):
    """Run files as the engine writes them (full resolved configs), one per (fields, seed, cda, asr)."""
    import json as _json

    from engine.config import RunConfig, resolve
    for i, (fields_, seed, cda, asr, device) in enumerate(specs):
        config = resolve(RunConfig(model="lenet", clients=1, seed=seed, **fields_)).to_dict()
        run_id = f"2026120{1 + i // 10}-00000{i % 10}-run{i:02d}"
        doc = {"schema": 1, "id": run_id, "created": f"2026-12-0{1 + i // 10}T00:00:0{i % 10}+00:00",
               "updated": f"2026-12-0{1 + i // 10}T00:10:0{i % 10}+00:00", "status": "completed", "config": config,
               "env": {"device": device}, "epochs": [], "final": {"epoch": 90, "cda": cda, "asr": asr},
               "best": {"epoch": 90, "cda": cda, "asr": asr}, "error": None}
        (root / run_id).mkdir(parents=True)
        (root / run_id / "run.json").write_text(_json.dumps(doc))


def test_report_is_regenerated_byte_for_byte_and_its_cells_are_the_run_files(tmp_path, sltui):  # noqa: F811
    import csv
    import statistics

    runs = tmp_path / "runs"
    surrogate = {"dataset": "mnist", "cut": 1, "attack": "surrogate", "alpha": 0.09}
    specs = [(surrogate, 1, 98.76, 75.74, "cpu"), (surrogate, 2, 98.75, 99.51, "cuda"), (surrogate, 3, 98.54, 95.30, "cpu"),
             ({"dataset": "mnist", "cut": 1, "attack": "none"}, 1, 98.89, 0.14, "cpu"),
             ({"dataset": "mnist", "cut": 1, "attack": "none"}, 2, 98.78, 0.33, "cpu"),
             ({"dataset": "mnist-10k", "cut": 1, "attack": "surrogate", "alpha": 0.09}, 1, 95.5, 83.7, "cpu")]
    write_runs(runs, specs)

    def report(out):
        code, _, err = sltui("reproduce", "report", "--runs-dir", str(runs), "--out", str(out),
                             "--doc", str(out / "reproduction.md"))
        assert code == 0, err
        return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    first = report(tmp_path / "a")
    assert report(tmp_path / "a") == first
    assert {"cells.csv", "transfers.csv", "reproduction.md", "figures/figure3-mnist.png", "figures/figure7.png"} <= {
        str(p) for p in first}
    rows = {(r["figure"], r["dataset"], r["attack"]): r for r in csv.DictReader(open(tmp_path / "a" / "cells.csv"))}
    cell = rows[("3", "mnist", "surrogate")]
    asr = [75.74, 99.51, 95.30]
    assert cell["n"] == "3" and cell["seeds"] == "1 2 3" and cell["devices"] == "cpu cuda"
    assert float(cell["asr_mean"]) == pytest.approx(statistics.fmean(asr), abs=0.005)
    assert float(cell["asr_std"]) == pytest.approx(statistics.stdev(asr), abs=0.005)
    assert (cell["asr_min"], cell["asr_max"]) == ("75.74", "99.51")
    assert float(cell["ba_mean"]) == pytest.approx((98.89 + 98.78) / 2, abs=0.005)
    # The authors' MNIST LeNet K=1 cut 1 alpha 0.09 row (results_mnist.csv), by SPEC 13's rule.
    from sltui.reference import lookup
    ref = lookup({"dataset": "mnist", "model": "lenet", "clients": 1, "cut": 1, "attack": "surrogate", "alpha": 0.09})
    assert float(cell["authors_asr"]) == pytest.approx(ref.asr, abs=0.005)
    expected = "agrees" if min(asr) - 5 <= ref.asr <= max(asr) + 5 else "differs"
    assert cell["asr_verdict"] == expected
    assert rows[("D", "mnist-10k", "surrogate")]["asr_verdict"] == "-"
    text = (tmp_path / "a" / "reproduction.md").read_text()
    assert "| Figure 3: the surrogate attack on MNIST | 1 | 3 |" in text
    assert "](figures/figure3-mnist.png)" in text


def test_client_trends_measure_each_k_against_the_seed_spread_at_k1():
    from engine.sweeps.agreement import client_trends
    docs = [run_doc(s, 98, a) for s, a in ((1, 90.0), (2, 30.0), (3, 60.0))]      # K = 1: seeds span 30-90
    docs += [run_doc(1, 98, a, clients=k) for k, a in ((3, 50.0), (5, 40.0), (7, 20.0))]
    docs += [run_doc(s, 98, a, cut=3) for s, a in ((1, 1.0), (2, 2.0), (3, 1.5))]  # K = 1 only: no trend
    (trend,) = client_trends(cells(docs))
    assert (trend.dataset, trend.cut, trend.alpha) == ("mnist", 1, 0.09)
    assert trend.asr == {1: (90.0, 30.0, 60.0), 3: (50.0,), 5: (40.0,), 7: (20.0,)}
    assert trend.change == pytest.approx(20.0 - 60.0)
    assert trend.beyond_seeds is True                  # 20 < 30 - 5
    assert trend.slope < 0
    # On runs that lie on a line (ASR = 100 - 10 K) the slope is the line's.
    line = [run_doc(s, 98, 90.0) for s in (1, 2, 3)] + [run_doc(1, 98, 100.0 - 10 * k, clients=k) for k in (3, 5, 7)]
    assert client_trends(cells(line))[0].slope == pytest.approx(-10.0)
    inside = client_trends(cells(docs[:3] + [run_doc(1, 98, 27.0, clients=7)]))[0]
    assert inside.beyond_seeds is False                # 27 >= 30 - 5: one run cannot tell it from K = 1


@pytest.mark.parametrize("ours,authors,more", [(50.0, 60.0, True), (50.0, 55.0, True), (50.0, 54.9, False),
                                               (50.0, 65.0, True), (50.0, 65.1, False), (50.0, 35.0, True),
                                               (50.0, None, False)])
def test_a_single_run_near_the_agreement_edge_gets_two_more_seeds(ours, authors, more):
    from engine.sweeps.reproduction import more_seeds_points
    config = part_points("clients", {})[0].config.to_dict()
    points = more_seeds_points([(config, ours, authors)], {})
    assert [p.config.seed for p in points] == ([2, 3] if more else [])
    if more:
        assert all(p.config.replace(seed=1) == part_points("clients", {})[0].config for p in points)
    k1 = {**config, "clients": 1}
    assert more_seeds_points([(k1, ours, authors)], {}) == []   # K = 1 already has three seeds


def test_a_cell_equal_seed_by_seed_to_a_lower_cut_says_so():
    from sltui.reports.reproduction import identical_at_other_cut
    docs = [run_doc(s, 98.0 + s / 10, 10.0 * s, cut=cut) for s in (1, 2) for cut in (1, 2)]
    docs += [run_doc(s, 98.0, 50.0 + s, cut=3) for s in (1, 2)]
    by_cut = {c.config["cut"]: c for c in cells(docs)}
    found = list(by_cut.values())
    assert identical_at_other_cut(by_cut[2], found) == 1
    assert identical_at_other_cut(by_cut[1], found) is None and identical_at_other_cut(by_cut[3], found) is None
