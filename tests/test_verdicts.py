"""docs/protocol.md section 11: who is guilty when, one run per point and seed, intervals.
Each rule on a constructed run (engine/sweeps/verdicts.py)."""
from __future__ import annotations

import math

import pytest

from engine.sweeps.verdicts import (cell_rows, frontier_rows, live_epoch, mean_std_n, newest_per_point, run_rows,
                                    run_verdicts, stealthiest,
                                    wilson)
from sltui.format import frontier_lines


def run(attack="hijack", seed=1, defenses=("scrutinizer",), flags=None, epochs=6, cda=95.0, asr=None,
        created="2026-12-01T10:00:00", clients=1, start="config", flagged_epochs=None, **config):
    """A completed run with `epochs` epochs; `asr` a list per epoch (default: 0 then 100 after
    the attack starts); `start` the recorded attack_start_epoch ("config": not recorded,
    as in older run files); `flagged_epochs` per detector the epochs it flagged in (not
    recorded by default, as in older run files)."""
    cfg = {"attack": attack, "seed": seed, "defenses": list(defenses), "clients": clients, "dataset": "mnist",
           "model": "lenet", "cut": 1, "hijack_warmup_epochs": 2, **config}
    asr = asr or [0.0] * epochs
    doc = {"id": f"{attack}-{seed}-{'+'.join(defenses)}-{created}", "created": created, "status": "completed",
           "config": cfg, "epochs": [{"epoch": e + 1, "asr": asr[e], "cda": cda} for e in range(epochs)],
           "final": {"cda": cda, "asr": asr[-1]},
           "defenses": {d: {"flagged_at": (flags or {}).get(d)} for d in defenses}}
    for d, epochs_flagged in (flagged_epochs or {}).items():
        doc["defenses"][d]["flagged_epochs"] = epochs_flagged
    if start != "config":
        doc["attack_start_epoch"] = start
    return doc


def flag(epoch, step=5):
    return {"epoch": epoch, "step": step, "client": 1}


@pytest.mark.parametrize("attack,flag_epoch,expected,server", [
    ("none", 1, "false_accusation", "honest"),        # any flag on a `none` run
    ("none", None, "quiet", "honest"),
    ("client", 4, "false_accusation", "honest"),      # a client attacks, the server is honest
    ("hijack", 1, "false_accusation", "malicious"),   # in the warm-up (epochs 1-2), though the attack starts later
    ("hijack", 2, "false_accusation", "malicious"),
    ("hijack", 3, "detected", "malicious"),           # the first epoch after the warm-up
    ("hijack", None, "missed", "malicious"),
    ("surrogate", 1, "detected", "malicious"),        # malicious from the first step
    ("autoencoder", None, "missed", "malicious"),
])
def test_verdict_by_who_is_guilty_when(attack, flag_epoch, expected, server):
    doc = run(attack, clients=3, flags={"scrutinizer": flag(flag_epoch) if flag_epoch else None})
    verdict = run_verdicts(doc)["scrutinizer"]
    assert (verdict.verdict, verdict.server) == (expected, server)


def test_recorded_start_wins_over_the_config_and_a_run_that_ended_in_the_warm_up_stayed_honest():
    doc = run("hijack", flags={"scrutinizer": flag(3)}, start=5, epochs=6)
    assert run_verdicts(doc)["scrutinizer"].verdict == "false_accusation"
    short = run("hijack", epochs=2)  # stopped before the attack's start epoch 3
    assert run_verdicts(short)["scrutinizer"].verdict == "quiet"


def test_the_newest_run_of_a_point_and_seed_counts_and_the_others_are_counted_as_left_out():
    old = run("none", flags={"scrutinizer": flag(1)}, created="2026-12-01T10:00:00")
    new = run("none", created="2026-12-02T10:00:00")
    other_seed = run("none", seed=2, created="2026-12-01T09:00:00")
    counted, left_out = newest_per_point([new, old, other_seed])
    assert left_out == 1 and sorted(d["id"] for d in counted) == sorted([new["id"], other_seed["id"]])
    rows, left = run_rows([old, new, other_seed])
    assert left == 1 and [r["verdict"] for r in rows] == ["quiet", "quiet"]


def test_options_of_another_attack_do_not_make_a_second_point():
    plain = run("none", created="2026-12-01T10:00:00")
    blind = run("none", created="2026-12-02T10:00:00", hijack_critic="plain", hijack_beta=0.0)
    counted, left_out = newest_per_point([plain, blind])
    assert left_out == 1 and counted[0]["id"] == blind["id"]


def test_the_client_row_holds_false_accusations_never_detections():
    docs = [run("client", seed=s, clients=3, flags={"scrutinizer": flag(2) if s < 3 else None}) for s in (1, 2, 3)]
    (cell,) = cell_rows(run_rows(docs)[0])
    assert cell["detected"] == 0 and cell["malicious_runs"] == 0 and cell["detection_rate"] is None
    assert (cell["false_accusations"], cell["runs"]) == (2, 3)
    assert run_rows([run("client", clients=1)])[0] == []  # no honest client: no row at all


def test_cell_rates_latency_caught_before_live_and_cost():
    docs = []
    for seed, flag_epoch in ((1, 3), (2, 5), (3, None), (4, 1)):
        asr = [0, 0, 0, 20, 80, 99]  # live (ASR >= 50) from epoch 5
        docs.append(run("hijack", seed=seed, asr=asr, cda=90.0,
                        flags={"scrutinizer": flag(flag_epoch) if flag_epoch else None}))
        docs.append(run("hijack", seed=seed, defenses=("splitguard",), asr=asr, cda=88.5,
                        flags={"splitguard": flag(6)}))
    cells = {c["detector"]: c for c in cell_rows(run_rows(docs)[0])}
    watch = cells["scrutinizer"]
    # Seeds 1 and 2 detected (epochs 3 and 5), seed 3 missed, seed 4 flagged in the warm-up.
    assert (watch["detected"], watch["malicious_runs"], watch["false_accusations"]) == (2, 4, 1)
    assert watch["detection_rate"] == 0.5 and watch["false_accusation_rate"] == 0.25
    assert watch["latency_epochs"] == pytest.approx(((3 - 3) + (5 - 3)) / 2) and watch["latency_n"] == 2
    # Epoch 3 is before live (epoch 5); epoch 5 is live's own epoch: caught as it went live.
    assert (watch["caught_before_live"], watch["caught_as_live"], watch["caught_before_live_of"]) == (1, 1, 2)
    guard = cells["splitguard"]
    assert (guard["caught_before_live"], guard["caught_as_live"], guard["caught_before_live_of"]) == (0, 0, 4)
    assert guard["cost_cda"] == pytest.approx(-1.5) and guard["cost_cda_n"] == 4 and watch["cost_cda"] == 0.0
    for cell in cells.values():
        for rate, low, high in (("detection_rate", "detection_ci_low", "detection_ci_high"),
                                ("false_accusation_rate", "false_accusation_ci_low", "false_accusation_ci_high")):
            assert cell[low] <= cell[rate] <= cell[high]


def test_caught_before_live_is_strict_and_a_flag_in_the_live_epoch_is_caught_as_live():
    asr = [0, 0, 0, 20, 80, 99]  # the hijack starts in epoch 3; live (ASR >= 50) from epoch 5
    docs = [run("hijack", seed=s, asr=asr, flags={"scrutinizer": flag(e)}) for s, e in ((1, 4), (2, 5), (3, 6))]
    docs.append(run("hijack", seed=4, asr=[0.0] * 6, flags={"scrutinizer": flag(6)}))  # never live
    rows = run_rows(docs)[0]
    assert [(r["flag_epoch"], r["live_epoch"], r["caught_before_live"], r["caught_as_live"]) for r in rows] == [
        (4, 5, True, False), (5, 5, False, True), (6, 5, False, False), (6, None, True, False)]
    (cell,) = cell_rows(rows)
    assert (cell["caught_before_live"], cell["caught_as_live"], cell["caught_before_live_of"]) == (2, 1, 4)


def test_false_accusations_are_counted_per_run_and_per_epoch():
    # Four honest 10-epoch runs: flagged in epochs 1-2 (a detector refitted each epoch), in
    # every epoch, never (no flag, so 0 epochs even without a record), and flagged in an
    # older file that does not say in which epochs (left out of the per-epoch count).
    docs = [run("none", seed=1, epochs=10, flags={"splitout": flag(1)}, flagged_epochs={"splitout": [1, 2]},
                defenses=("splitout",)),
            run("none", seed=2, epochs=10, flags={"splitout": flag(1)}, flagged_epochs={"splitout": list(range(1, 11))},
                defenses=("splitout",)),
            run("none", seed=3, epochs=10, defenses=("splitout",)),
            run("none", seed=4, epochs=10, flags={"splitout": flag(3)}, defenses=("splitout",))]
    rows = run_rows(docs)[0]
    assert [(r["verdict"], r["honest_epochs"], r["accused_epochs"]) for r in rows] == [
        ("false_accusation", 10, 2), ("false_accusation", 10, 10), ("quiet", 10, 0), ("false_accusation", 10, None)]
    (cell,) = cell_rows(rows[:3])
    assert (cell["false_accusations"], cell["runs"]) == (2, 3)  # per run
    assert (cell["accused_epochs"], cell["honest_epochs"], cell["epoch_counted_runs"]) == (12, 30, 3)  # per epoch
    assert cell["accused_epoch_rate"] == pytest.approx(0.4)
    assert (cell["accused_epoch_ci_low"], cell["accused_epoch_ci_high"]) == pytest.approx(wilson(12, 30))
    # With a run that does not say, the cell counts no epochs (only its quiet runs would be known).
    (cell,) = cell_rows(rows)
    assert (cell["false_accusations"], cell["runs"]) == (3, 4)
    assert (cell["accused_epochs"], cell["honest_epochs"], cell["accused_epoch_rate"]) == (None, None, None)
    assert cell["epoch_counted_runs"] == 3
    # A hijack's honest epochs are its warm-up: flags from the attack's start are not accusations.
    (row,) = run_rows([run("hijack", epochs=6, flags={"scrutinizer": flag(2)},
                           flagged_epochs={"scrutinizer": [2, 3, 4]})])[0]
    assert (row["verdict"], row["honest_epochs"], row["accused_epochs"]) == ("false_accusation", 2, 1)
    (row,) = run_rows([run("surrogate", epochs=6, flags={"scrutinizer": flag(1)},
                           flagged_epochs={"scrutinizer": [1]})])[0]
    assert (row["honest_epochs"], row["accused_epochs"]) == (0, 0)
    # An older file: a first flag after the warm-up says no warm-up epoch was flagged.
    rows = run_rows([run("hijack", seed=s, epochs=6, flags={"scrutinizer": flag(e)}) for s, e in ((1, 4), (2, 1))])[0]
    assert [(r["verdict"], r["honest_epochs"], r["accused_epochs"]) for r in rows] == [
        ("detected", 2, 0), ("false_accusation", 2, None)]


def test_the_run_indexs_summaries_give_the_same_rows_and_cells_as_the_run_files():
    """The TUI's arena view and `sltui report` read runs through the run index, whose
    summaries leave the epochs out: when the backdoor went live must survive that."""
    from pathlib import Path

    from engine.store import RunEntry
    from sltui.runs.index import summarize

    docs = [run("hijack", seed=seed, asr=[0, 0, 0, 20, 80, 99],
                flags={"scrutinizer": flag(epoch) if epoch else None}) for seed, epoch in ((1, 3), (2, 6), (3, None))]
    docs.append(run("none", seed=1))
    slims = [summarize(doc, RunEntry(doc["id"], Path(doc["id"]), doc)) for doc in docs]
    assert all("epochs" not in slim for slim in slims)
    assert [live_epoch(slim) for slim in slims] == [live_epoch(doc) for doc in docs] == [5, 5, 5, None]
    full_rows, slim_rows = run_rows(docs)[0], run_rows(slims)[0]
    assert slim_rows == full_rows
    assert [r["caught_before_live"] for r in full_rows if r["attack"] == "hijack"] == [True, False, None]
    assert [r["caught_as_live"] for r in full_rows if r["attack"] == "hijack"] == [False, False, None]
    assert cell_rows(slim_rows) == cell_rows(full_rows)


def test_hijack_options_that_vary_split_the_cells():
    docs = [run("hijack", seed=s, hijack_beta=b) for s in (1, 2) for b in (0.0, 0.7)]
    cells = cell_rows(run_rows(docs)[0])
    assert sorted(c["variant"] for c in cells) == ["hijack_beta=0.0", "hijack_beta=0.7"]
    assert all(c["runs"] == 2 for c in cells)


def test_an_option_that_differs_only_between_settings_splits_nothing():
    # The hijack's warm-up resolves per dataset (6 on MNIST, 12 on FMNIST): one report over
    # both datasets must not name it as a variant; beta, varied within a setting, still splits.
    docs = [run("hijack", seed=s, dataset=d, hijack_warmup_epochs=w, hijack_beta=b)
            for s in (1, 2) for d, w in (("mnist", 6), ("fmnist", 12)) for b in (0.0, 0.7)]
    cells = cell_rows(run_rows(docs)[0])
    assert sorted({c["variant"] for c in cells}) == ["hijack_beta=0.0", "hijack_beta=0.7"]
    assert len(cells) == 4 and all(c["runs"] == 2 for c in cells)


def test_wilson_interval():
    low, high = wilson(0, 12)
    assert low == 0.0 and high == pytest.approx(0.2425, abs=1e-4)  # "0/12 still allows about 24%"
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 0) == (None, None)
    for k in range(0, 8):
        low, high = wilson(k, 7)
        assert low <= k / 7 <= high


def test_mean_std_n_and_live_epoch():
    assert mean_std_n([1.0, 3.0, None, math.nan]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    assert mean_std_n([]) == (None, None, 0)
    assert live_epoch(run(asr=[0, 49.9, 50.0, 10, 90, 90])) == 3
    assert live_epoch(run(asr=[0] * 6)) is None


def test_reacting_runs_add_what_the_clients_deploy_and_are_not_counted_twice():
    going = run("hijack", flags={"scrutinizer": flag(3)}, asr=[0, 0, 0, 60, 90, 99])
    stopping = run("hijack", flags={"scrutinizer": flag(3)}, asr=[0, 0, 40], epochs=3, on_flag="stop",
                   local_epochs=2, created="2026-12-01T11:00:00")
    stopping["reaction"] = {"epoch": 3, "flags": {}, "local": [{"client": 1, "epochs": 2, "cda": 93.0, "asr": 1.5}],
                            "mean": {"cda": 93.0, "asr": 1.5}}
    rows, left_out = run_rows([going, stopping])
    assert left_out == 0 and len(rows) == 1
    (row,) = rows
    assert (row["asr"], row["asr_reacting"], row["cda_reacting"], row["reacting_run"]) == (99, 1.5, 93.0, stopping["id"])
    (cell,) = cell_rows(rows)
    assert cell["asr_reacting"] == 1.5 and cell["asr_reacting_n"] == 1 and cell["runs"] == 1


def test_frontier_names_the_stealthiest_working_setting_and_who_evades_all():
    docs = [run("none", seed=s, cda=98.0, defenses=(d,)) for s in (1, 2) for d in ("scrutinizer", "splitout")]
    for beta, caught in ((0.0, True), (0.7, False)):
        for s in (1, 2):
            for d in ("scrutinizer", "splitout"):
                docs.append(run("hijack", seed=s, cda=96.5, asr=[0, 0, 0, 99, 99, 99], defenses=(d,),
                                hijack_beta=beta, flags={d: flag(4) if caught else None}))
    frontier = frontier_rows(cell_rows(run_rows(docs)[0]))
    assert {(f["hijack_beta"], f["detector"], f["qualifies"]) for f in frontier} == {
        (b, d, True) for b in (0.0, 0.7) for d in ("scrutinizer", "splitout")}
    assert all(f["cda_gap"] == pytest.approx(-1.5) for f in frontier)
    found = stealthiest(frontier)
    assert {(f["detector"], f["hijack_beta"]) for f in found["per_detector"]} == {("scrutinizer", 0.7), ("splitout", 0.7)}
    assert [e["variant"] for e in found["evades_all"]] == ["hijack_beta=0.7"]
    # arena.md and the TUI say it with the setting's short name, as the matrix does.
    per_detector, evading = frontier_lines(frontier)
    assert len(per_detector) == 2 and all(": hijack β0.7, detected 0/2 (" in line for line in per_detector)
    assert len(evading) == 1 and evading[0].startswith("Never flagged while malicious by any detector run "
                                                       "(scrutinizer, splitout): hijack β0.7 on ")
    # A third detector against which beta 0.7 does not work (ASR under 90%): it evades all
    # no longer, though no detector flagged it.
    docs += [run("none", seed=s, cda=98.0, defenses=("splitguard",)) for s in (1, 2)]
    docs += [run("hijack", seed=s, cda=96.5, asr=[0, 0, 0, 50, 60, 70], defenses=("splitguard",), hijack_beta=0.7)
             for s in (1, 2)]
    assert stealthiest(frontier_rows(cell_rows(run_rows(docs)[0])))["evades_all"] == []


def test_a_run_flagged_in_its_start_epoch_before_that_epoch_ended_had_a_malicious_server():
    doc = run("hijack", epochs=2, flags={"scrutinizer": flag(3)})  # epoch 3 under way, not yet recorded
    verdict = run_verdicts(doc)["scrutinizer"]
    assert (verdict.verdict, verdict.server) == ("detected", "malicious")
