"""The calibration rule (engine/sweeps/calibration.py) on constructed honest runs, and the traces a
real run records judged afterwards the way the detectors judged them live."""
from __future__ import annotations

import pytest

from engine.sweeps.calibration import (MARGIN, calibrate, false_accusations_by_epoch, first_flag_epoch, flag_epochs,
                                highest_window_share, lowest_rolling_mean, streams)
from engine.config import RunConfig
from engine.training.runner import run
from engine.store import RunStore
from test_cli import sltui  # noqa: F401 - the fixture


def honest_doc(splitguard=None, scrutinizer=None, splitout=None, clients=1, attack="none", seed=101):
    """A completed run whose detectors traced the given per-client epoch lists."""
    defenses = {}
    for name, per_client in (("splitguard", splitguard), ("scrutinizer", scrutinizer), ("splitout", splitout)):
        if per_client is not None:
            epochs = max(len(c) for c in per_client)
            defenses[name] = {"flagged_at": None, "trace": [[c[e] for c in per_client] for e in range(epochs)]}
    return {"id": f"run-{seed}", "status": "completed", "config": {"attack": attack, "clients": clients, "seed": seed},
            "defenses": defenses}


def sg_epoch(value_by_memory):
    return {str(m): list(v) for m, v in value_by_memory.items()}


def test_rolling_mean_and_window_share():
    assert lowest_rolling_mean([1, 1, None, 0.0, 0.0, 1], 2) == 0.0
    assert lowest_rolling_mean([1, 0.5, 1], 2) == pytest.approx(0.75)
    assert lowest_rolling_mean([1], 2) is None
    assert highest_window_share("0011100", 3) == 1.0
    assert highest_window_share("0101010", 4) == 0.5
    assert highest_window_share("01", 3) is None


def test_splitguard_takes_the_most_responsive_memory_that_flags_no_honest_stream():
    good = {m: [0.95] * 10 for m in (0, 5, 10, 20, 50, 100)}
    # Memory 5 and 10 dip to 0.52 over five batches: under 0.5 + margin, so they fail.
    dips = {**good, 5: [0.95] * 3 + [0.52] * 5 + [0.95] * 2, 10: [0.95] * 3 + [0.53] * 5 + [0.95] * 2}
    docs = [honest_doc(splitguard=[[sg_epoch(good), sg_epoch(dips)]]),
            honest_doc(splitguard=[[sg_epoch(good)], [sg_epoch(good)]], clients=2, seed=102)]
    result = calibrate(docs)["detectors"]["splitguard"]
    assert result["parameters"]["splitguard_memory"] == 20 and result["passed"]
    assert [c["passes"] for c in result["candidates"]][:3] == [False, False, True]


def test_an_attack_run_never_enters_the_calibration():
    bad = {m: [0.0] * 10 for m in (0, 5, 10, 20, 50, 100)}
    docs = [honest_doc(splitguard=[[sg_epoch({m: [0.9] * 10 for m in bad})]]),
            honest_doc(splitguard=[[sg_epoch(bad)]], attack="hijack", seed=7)]
    result = calibrate(docs)
    assert result["runs"] == ["run-101"]
    assert result["detectors"]["splitguard"]["parameters"]["splitguard_memory"] == 5


def test_the_malicious_clients_stream_is_not_an_honest_one():
    # In a `client` run client 0 is the attacker: its slot holds no trace.
    doc = honest_doc(splitout=[[None], [{"raw": "0000000000", "direction": "0"}]], clients=2, attack="client")
    assert streams(doc, "splitout") == [[{"raw": "0000000000", "direction": "0"}]]


def test_scrutinizer_form_with_the_higher_passing_threshold_and_the_published_at_a_tie():
    def doc(published, windowed, seed=101):
        return honest_doc(scrutinizer=[[{"published": published, "windowed": windowed}]], seed=seed)

    result = calibrate([doc([0.9, 0.36], [0.9, 0.5])])["detectors"]["scrutinizer"]
    # published: lowest 0.36 passes 0.3 (0.3 + 0.05 <= 0.36); windowed: lowest 0.5 passes 0.4.
    assert result["parameters"] == {"scrutinizer_form": "windowed", "scrutinizer_threshold": 0.4}
    tie = calibrate([doc([0.6], [0.58])])["detectors"]["scrutinizer"]
    assert tie["parameters"] == {"scrutinizer_form": "published", "scrutinizer_threshold": 0.5}
    none = calibrate([doc([0.05], [0.1])])["detectors"]["scrutinizer"]
    assert not none["passed"] and none["parameters"]["scrutinizer_form"] == "published"


def test_splitout_smallest_window_then_raw_before_direction():
    # raw: a burst of 3 outliers in 5 fails window 5 (0.6), passes 10 (0.3); direction passes 5.
    result = calibrate([honest_doc(splitout=[[{"raw": "0001110000" * 3, "direction": "0100000000" * 3}]])])
    params = result["detectors"]["splitout"]["parameters"]
    assert params == {"splitout_features": "direction", "splitout_window": 5}
    result = calibrate([honest_doc(splitout=[[{"raw": "0100000000" * 3, "direction": "0100000000" * 3}]])])
    assert result["detectors"]["splitout"]["parameters"] == {"splitout_features": "raw", "splitout_window": 5}
    assert MARGIN == pytest.approx(0.05)


@pytest.mark.slow
def test_a_real_runs_trace_judged_afterwards_gives_the_live_verdict(tmp_path):
    """SplitOut on raw features flags honest training (its examples come from the first
    steps); the trace, windowed afterwards, must say the same as the live verdict, and the
    trace of the configured SplitGuard memory must give its live verdict too."""
    cfg = RunConfig(dataset="synthetic", clients=1, epochs=3, batch_size=32, train_limit=2400, eval_limit=300,
                    defenses=("splitguard", "splitout"), splitout_features="raw", splitguard_start=2,
                    splitguard_fake_prob=0.3, splitguard_memory=10, defense_trace=True, save_weights=False,
                    device="cpu", seed=5)
    store = RunStore(tmp_path)
    run(cfg, emit=store.recorder())
    doc = store.entries()[0].doc
    assert doc["defenses"]["splitout"]["flagged_at"] is not None  # raw LOF calls honest training an outlier
    (out,) = streams(doc, "splitout")
    share = highest_window_share("".join(e["raw"] for e in out), cfg.splitout_window)
    assert (share > 0.5) == (doc["defenses"]["splitout"]["flagged_at"] is not None)
    (sg,) = streams(doc, "splitguard")
    values = [v for e in sg for v in e["10"]]
    assert len(values) > cfg.splitguard_window
    low = lowest_rolling_mean(values, cfg.splitguard_window)
    assert (low < cfg.splitguard_threshold) == (doc["defenses"]["splitguard"]["flagged_at"] is not None)
    # The first flag judged afterwards with the run's own parameters is the live one's epoch.
    for detector in ("splitguard", "splitout"):
        live = doc["defenses"][detector]["flagged_at"]
        assert first_flag_epoch(doc, detector, {}) == (live["epoch"] if live else None)
    curve = false_accusations_by_epoch([doc], "splitout", {})
    live_epoch = doc["defenses"]["splitout"]["flagged_at"]["epoch"]
    assert [c["flagged"] for c in curve] == [int(e >= live_epoch) for e in range(1, len(curve) + 1)]
    # Every epoch with a flag, live, is what the trace gives afterwards.
    for detector in ("splitguard", "splitout"):
        assert doc["defenses"][detector]["flagged_epochs"] == flag_epochs(doc, detector, {})
    # Fitted per epoch: the live flags are the trace's per-epoch decisions judged with the
    # window restarted each epoch; the same run's trace also holds the fit-once decisions.
    per_epoch = cfg.replace(defenses=("splitout",), splitout_fit="per-epoch")
    run(per_epoch, emit=store.recorder())
    (doc2,) = [e.doc for e in store.entries() if e.doc["config"]["splitout_fit"] == "per-epoch"]
    assert doc2["defenses"]["splitout"]["flagged_epochs"] == flag_epochs(doc2, "splitout", {})
    assert flag_epochs(doc2, "splitout", {"splitout_fit": "once"}) != []  # raw LOF fitted once flags
    assert set(streams(doc2, "splitout")[0][0]) == {"raw", "direction", "raw/per-epoch", "direction/per-epoch"}


CALIBRATION = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "calibration"


def test_the_committed_calibration_is_the_rule_on_the_committed_runs_and_the_defaults_are_its_output():
    import json

    from engine.store import RunStore
    stored = json.loads((CALIBRATION / "calibration.json").read_text())
    docs = [{**e.doc, "status": e.status} for e in RunStore(CALIBRATION).entries() if e.doc is not None]
    assert json.loads(json.dumps(calibrate(docs))) == stored
    defaults = RunConfig()
    for detector in stored["detectors"].values():
        for name, value in detector["parameters"].items():
            assert getattr(defaults, name) == value, name
    # The calibration set: honest runs only, on seeds no evaluation uses.
    configs = [d["config"] for d in docs]
    assert {c["attack"] for c in configs} == {"none"} and {c["seed"] for c in configs} <= {101, 102, 103}
    assert {(c["dataset"], c["cut"], c["clients"]) for c in configs} == {
        (d, cut, k) for d in ("mnist", "fmnist") for cut in (1, 3) for k in (1, 3)}


def test_sltui_calibrate_rule_writes_the_committed_files_again(tmp_path, sltui):  # noqa: F811
    """`sltui calibrate rule` (the procedure as a command) on a copy of the committed runs
    writes calibration.json and calibration.md byte for byte as committed."""
    import shutil

    copy = tmp_path / "calibration"
    shutil.copytree(CALIBRATION, copy, ignore=shutil.ignore_patterns("calibration.json", "calibration.md", ".index*"))
    code, out, err = sltui("calibrate", "rule", "--runs-dir", str(copy))
    assert code == 0, err
    for name in ("calibration.json", "calibration.md"):
        assert (copy / name).read_bytes() == (CALIBRATION / name).read_bytes(), name
    # An evaluation seed is refused for the calibration set (and the reverse), in one line.
    code, out, err = sltui("calibrate", "run", "--seeds", "201", "--runs-dir", str(tmp_path / "x"))
    assert code == 2 and "calibration set's seeds are 101, 102, 103" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
