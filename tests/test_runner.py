"""engine.training.runner.run: reproducibility, events, cancel and failure."""
from __future__ import annotations

import dataclasses
import math
import threading

import pytest

from engine.config import ConfigError
from engine.data.datasets import DataError
from engine.events import EpochMetrics, RunFailed, RunFinished, RunStarted
from engine.training import runner
from engine.training.runner import run
from tests.conftest import tiny_config

TIMING = {"seconds", "samples_per_s", "run_id"}


def metrics_of(cfg) -> list[dict]:
    events = []
    result = run(cfg, events.append)
    assert result.status == "completed", result.error
    epochs = [e for e in events if isinstance(e, EpochMetrics)]
    assert len(epochs) == cfg.epochs
    return [{k: v for k, v in dataclasses.asdict(e).items() if k not in TIMING} for e in epochs]


def same(a: list[dict], b: list[dict]) -> bool:
    def norm(v):
        return "nan" if isinstance(v, float) and math.isnan(v) else v
    return [{k: norm(v) for k, v in d.items()} for d in a] == [{k: norm(v) for k, v in d.items()} for d in b]


@pytest.mark.parametrize("attack", ["none", "surrogate"])
def test_same_config_and_seed_same_metrics(attack):
    cfg = tiny_config(attack=attack, alpha=0.5)
    first, second = metrics_of(cfg), metrics_of(cfg)
    assert same(first, second), (first, second)
    fields = {f.name for f in dataclasses.fields(EpochMetrics)} - TIMING
    assert set(first[0]) == fields


def test_different_seed_different_metrics():
    a = metrics_of(tiny_config(epochs=1))
    b = metrics_of(tiny_config(epochs=1, seed=48))
    assert not same(a, b)


def test_event_sequence_of_a_completed_run():
    events = []
    result = run(tiny_config(epochs=2, attack="surrogate"), events.append)
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert events[0].config["epochs"] == 2 and events[0].config["trigger_col"] == 10
    assert [e.epoch for e in events if isinstance(e, EpochMetrics)] == [1, 2]
    assert events[-1].status == "completed" == result.status
    assert result.final["epoch"] == 2 and result.best is not None
    assert events[-1].attack_info["poisoned_samples"] == round(0.5 * 150)
    for e in result.epochs:
        assert 0 <= e["cda"] <= 100 and 0 <= e["asr"] <= 100 and e["lr"] == pytest.approx(1e-3)
        assert e["train_loss_malicious"] is not None


def test_bad_input_raises_before_any_event(tmp_path):
    events = []
    with pytest.raises(ConfigError):
        run(tiny_config(cut=4), events.append)
    with pytest.raises(DataError):
        run(tiny_config(dataset="mnist", data_root=str(tmp_path)), events.append)
    with pytest.raises(DataError):
        run(tiny_config(clients=7, train_limit=5), events.append)
    assert events == []


def test_cancel_via_stop_event():
    stop = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, EpochMetrics):
            stop.set()

    result = run(tiny_config(epochs=5), emit, stop)
    assert result.status == "cancelled"
    assert isinstance(events[-1], RunFinished) and events[-1].status == "cancelled"
    assert len(result.epochs) == 1


def test_exception_in_training_fails_the_run(monkeypatch):
    def boom(ctx):
        raise RuntimeError("boom in training")

    monkeypatch.setattr(runner, "train_epoch", boom)
    events = []
    result = run(tiny_config(), events.append)
    assert result.status == "failed" and "boom in training" in result.error
    assert isinstance(events[-1], RunFailed) and "boom in training" in events[-1].error


def test_early_stopping_on_patience(monkeypatch):
    from engine.training.metrics import Evaluation

    monkeypatch.setattr(runner, "evaluate", lambda *a, **k: Evaluation(1.0, 50.0, 0.0))
    result = run(tiny_config(epochs=6, patience=2))
    assert result.status == "completed" and len(result.epochs) == 3  # best at 1, no gain at 2 and 3
