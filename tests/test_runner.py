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


@pytest.mark.parametrize("attack", ["surrogate", "autoencoder"])
def test_lr_milestone_reaches_every_optimizer_and_the_run_file(attack, monkeypatch, tmp_path):
    """Three epochs with a milestone at epoch 2 (gamma 0.1): epochs 1 and 2 train at lr,
    epoch 3 at lr / 10, for every client's, the server's and the surrogate's optimizer
    (checked at the start and the end of each epoch) and in the run file; the
    autoencoder's phase-1 networks follow the same schedule over their own epochs."""
    from engine.attacks import autoencoder
    from engine.store import RunStore

    lr = 2e-3
    cfg = tiny_config(attack=attack, epochs=3, lr=lr, lr_milestones=(2,), lr_gamma=0.1, clients=3,
                      ae_phase1_epochs=3, ae_epochs=1, train_limit=400)
    seen, phase1 = [], []

    def optimizers(ctx):
        opts = [*ctx.client_opts, ctx.server_opt]
        return opts + ([ctx.attack.opt] if attack == "surrogate" else [])

    def lrs(ctx):
        return [group["lr"] for opt in optimizers(ctx) for group in opt.param_groups]

    train_epoch = runner.train_epoch

    def recording(ctx):
        at_start = lrs(ctx)
        stats = train_epoch(ctx)
        seen.append((at_start, lrs(ctx)))
        return stats

    fit = autoencoder.fit

    def recording_fit(net, opt, *args, on_epoch, **kwargs):
        def record(epoch, loss):
            phase1.append(opt.param_groups[0]["lr"])
            on_epoch(epoch, loss)
        return fit(net, opt, *args, on_epoch=record, **kwargs)

    monkeypatch.setattr(runner, "train_epoch", recording)
    monkeypatch.setattr(autoencoder, "fit", recording_fit)
    store = RunStore(tmp_path)
    result = run(cfg, store.recorder())
    assert result.status == "completed", result.error
    expected = [lr, lr, lr * 0.1]
    assert len(seen) == 3
    for (start, end), want in zip(seen, expected):
        assert len(start) == 3 + 1 + (attack == "surrogate")  # three clients, the server (, the surrogate)
        assert start == pytest.approx([want] * len(start)) and end == start
    assert [e["lr"] for e in store.load(result.run_id)["epochs"]] == pytest.approx(expected)
    if attack == "autoencoder":
        assert phase1 == pytest.approx(expected * 2)  # the clean and the backdoored network


@pytest.mark.parametrize("runs_before,runs_after", [(2, 1), (1, 2)])
def test_a_running_run_takes_the_new_thread_share(runs_before, runs_after, monkeypatch):
    """torch.set_num_threads reaches only the thread that calls it, so the TUI's share of
    the cores (device.share_cpu_threads, called from the UI thread when a run starts or
    ends) must be taken by each run in its own thread: measured with
    torch.get_num_threads() inside the run's thread, before and after the share changes
    mid-run (two cores: two runs get one thread each, one run both). With two threads at
    the start the run also has two CPU streams, which follow as well."""
    import torch

    from engine.speed import device
    from engine.speed.options import EngineOptions

    monkeypatch.setattr(device, "available_cores", lambda: 2)
    before = torch.get_num_threads()
    seen, results = [], []
    paused, resumed = threading.Event(), threading.Event()

    def emit(event):
        if isinstance(event, EpochMetrics):
            seen.append(torch.get_num_threads())
            if event.epoch == 1:
                paused.set()
                resumed.wait(60)

    try:
        device.share_cpu_threads(runs_before)
        thread = threading.Thread(target=lambda: results.append(run(tiny_config(epochs=2), emit,
                                                                    options=EngineOptions(threads=None))))
        thread.start()
        assert paused.wait(60)
        device.share_cpu_threads(runs_after)  # another run started, or ended
        resumed.set()
        thread.join(60)
    finally:
        torch.set_num_threads(before)
    assert results and results[0].status == "completed", results
    assert seen == [2 // runs_before, 2 // runs_after]


def test_an_explicit_eval_batch_size_wins(monkeypatch):
    """--eval-batch-size (the config's eval_batch_size) is the evaluation batch when given,
    with the default options too; left out, the batch is sized to the model."""
    sizes = []
    evaluate = runner.evaluate

    def recording(model, split, norm, batch_size, *args, **kwargs):
        sizes.append(batch_size)
        return evaluate(model, split, norm, batch_size, *args, **kwargs)

    monkeypatch.setattr(runner, "evaluate", recording)
    events = []
    run(tiny_config(epochs=1, eval_batch_size=48), events.append)
    assert set(sizes) == {48} and events[0].env["engine_options"]["eval_batch_size"] == 48
    assert events[0].config["eval_batch_size"] == 48
    sizes.clear()
    events.clear()
    run(tiny_config(epochs=1), events.append)
    auto = events[0].env["engine_options"]["eval_batch_size"]
    assert events[0].config["eval_batch_size"] is None and auto >= 128 and set(sizes) == {auto}
