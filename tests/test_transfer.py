"""The transfer check (docs/protocol.md section 8) and its command."""
import subprocess
import sys
import threading

import torch

from engine.events import EpochMetrics, RunFailed, RunFinished, RunStarted
from engine.store import RunStore, load_weights
from engine.training import transfer
from engine.training.runner import run
from engine.training.transfer import last_linear, run_transfer, transfer_config


def test_transfer_retrains_only_the_last_layer(tmp_path, tiny):
    store = RunStore(tmp_path)
    source = run(tiny.replace(attack="surrogate", alpha=0.5), store.recorder())
    doc = store.load(source.run_id)
    weights = load_weights(store.weights_path(source.run_id))
    cfg = transfer_config(doc, "synthetic", epochs=2, eval_limit=200, train_limit=300)
    result = run_transfer(doc, weights, cfg, store.recorder(), run_id="t1")
    assert result.status == "completed"
    linked = store.load("t1")
    assert linked["source_run"] == source.run_id and len(linked["epochs"]) == 2
    assert 0 <= linked["final"]["cda"] <= 100 and 0 <= linked["final"]["asr"] <= 100


def test_transfer_ends_like_a_run_when_cancelled_or_broken(tmp_path, tiny, monkeypatch):
    """The transfer check has a training run's lifecycle: RunStarted, then exactly one
    RunFinished (cancelled) or RunFailed (with the traceback)."""
    store = RunStore(tmp_path)
    source = run(tiny, store.recorder())
    doc = store.load(source.run_id)
    weights = load_weights(store.weights_path(source.run_id))
    cfg = transfer_config(doc, "synthetic", epochs=3, eval_limit=100, train_limit=200)

    stop, events = threading.Event(), []

    def emit(event):
        events.append(event)
        if isinstance(event, EpochMetrics):
            stop.set()

    result = run_transfer(doc, weights, cfg, emit, stop, run_id="cancelled")
    assert result.status == "cancelled" and len(result.epochs) == 1
    assert isinstance(events[0], RunStarted) and events[0].source_run == source.run_id
    assert isinstance(events[-1], RunFinished) and events[-1].status == "cancelled"
    assert sum(isinstance(e, (RunFinished, RunFailed)) for e in events) == 1

    def broken(*args, **kwargs):
        raise RuntimeError("retraining broke")

    monkeypatch.setattr(transfer, "fit", broken)
    events.clear()
    result = run_transfer(doc, weights, cfg, events.append, run_id="failed")
    assert result.status == "failed" and "retraining broke" in result.error
    assert [type(e) for e in events] == [RunStarted, RunFailed]
    assert "Traceback" in events[-1].error


def test_last_linear_is_found():
    from engine.models import build_split

    client, server = build_split("resnet9", 2, (1, 28, 28), 10)
    parent, attr = last_linear(torch.nn.Sequential(client, server))
    assert getattr(parent, attr).out_features == 10


def test_transfer_command_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sltui", "transfer", "nope", "--dataset", "mnist",
                           "--runs-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no run 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_transfer_changes_the_last_linear_layer_and_nothing_else(tmp_path, tiny, monkeypatch):
    """After retraining, every weight and buffer of the source run's network (StripNet:
    BatchNorm statistics included) is bit-for-bit the source's, and the new last linear
    layer has moved from its initial values."""
    store = RunStore(tmp_path)
    source = run(tiny.replace(model="stripnet", train_limit=300), store.recorder())
    doc = store.load(source.run_id)
    weights = load_weights(store.weights_path(source.run_id))
    trained = {}
    fit = transfer.fit

    def recording_fit(model, opt, *args, **kwargs):
        trained["net"] = model.module
        trained["head_before"] = [p.detach().clone() for p in opt.param_groups[0]["params"]]
        trained["head"] = opt.param_groups[0]["params"]
        return fit(model, opt, *args, **kwargs)

    monkeypatch.setattr(transfer, "fit", recording_fit)
    cfg = transfer_config(doc, "synthetic", epochs=2, eval_limit=100, train_limit=300)
    assert run_transfer(doc, weights, cfg, run_id="t").status == "completed"
    parent, attr = last_linear(trained["net"])
    head = getattr(parent, attr)
    assert [id(p) for p in head.parameters()] == [id(p) for p in trained["head"]]
    head_ids = {id(p) for p in head.parameters()}
    after = trained["net"].state_dict(keep_vars=True)
    source_state = {f"0.{k}": v for k, v in weights["client"].items()}
    source_state.update({f"1.{k}": v for k, v in weights["server"].items()})
    checked = 0
    for name, value in after.items():
        if id(value) in head_ids:
            continue
        assert torch.equal(value.detach().cpu(), source_state[name]), name
        checked += 1
    assert checked == len(source_state) - 2  # all but the last layer's weight and bias
    for before, now in zip(trained["head_before"], head.parameters()):
        assert not torch.equal(before, now.detach())
