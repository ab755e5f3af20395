"""Two CPU streams (engine/speed/streams.py): the surrogate's half of each step and half of the
evaluation batches on a second thread. Same math as one stream, deterministic, and a
failure on the second thread fails the run like any other."""
from __future__ import annotations

import math
import threading

import pytest
import torch

from engine.config import resolve
from engine.events import RunFailed, RunFinished
from engine.speed.options import EngineOptions
from engine.speed.streams import CpuStreams, streams_for
from engine.training.protocol import train_epoch
from engine.training.runner import build_context, evaluate_epoch, run
from tests.conftest import tiny_config
from tests.test_options import METRICS


@pytest.fixture
def two_threads():
    """The suite runs with one intra-op thread; streams need two."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def surrogate_config(**changes):
    return resolve(tiny_config(attack="surrogate", alpha=0.4, **changes))


def test_streams_need_two_threads_and_a_cpu(two_threads):
    assert streams_for(torch.device("cpu"), enabled=False) is None
    assert streams_for(torch.device("cuda"), enabled=True) is None
    streams = streams_for(torch.device("cpu"), enabled=True)
    assert isinstance(streams, CpuStreams) and streams.threads_each == 1
    streams.close()
    torch.set_num_threads(1)
    assert streams_for(torch.device("cpu"), enabled=True) is None


def test_map_keeps_item_order_uses_both_threads_and_restores_threads(two_threads):
    streams = CpuStreams(2)
    seen: dict[int, str] = {}
    inner_threads: list[int] = []

    def work(i: int) -> int:
        seen[i] = threading.current_thread().name
        inner_threads.append(torch.get_num_threads())
        return i * i

    assert streams.map(work, list(range(7))) == [i * i for i in range(7)]
    assert len(set(seen.values())) == 2  # the caller and the worker
    assert set(inner_threads) == {1}
    assert torch.get_num_threads() == 2  # the caller's count is back
    streams.close()


def test_concurrent_step_is_the_sequential_steps_math(two_threads):
    """One epoch with the surrogate's half on the second stream against the same epoch
    on one stream: same batches, same losses and weights up to float rounding."""
    cfg = surrogate_config()
    contexts = {}
    for streams in (False, True):
        ctx = build_context(cfg, lambda e: None, None, options=EngineOptions(streams=streams))
        ctx.attack.prepare(ctx)
        assert (ctx.speed.streams is not None) == streams and ctx.speed.options.streams == streams
        contexts[streams] = (ctx, train_epoch(ctx))
    (one, one_stats), (two, two_stats) = contexts[False], contexts[True]
    assert two_stats.samples == one_stats.samples
    for field in ("loss", "loss_clean", "loss_malicious"):
        assert getattr(two_stats, field) == pytest.approx(getattr(one_stats, field), rel=1e-5)
    for a, b in [(one.client, two.client), (one.server, two.server), (one.attack.surrogate, two.attack.surrogate)]:
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)
    # The surrogate stepped once per batch, as on one stream.
    batches = sum(math.ceil(len(s) / cfg.batch_size) for s in two.data.shares[1:])
    assert {s["step"].item() for s in two.attack.opt.state.values()} == {batches}
    assert {s["step"].item() for s in one.attack.opt.state.values()} == {batches}
    for ctx, _ in contexts.values():
        ctx.close()


def test_concurrent_evaluation_equals_one_stream(two_threads):
    cfg = surrogate_config(eval_batch_size=64)
    ctx = build_context(cfg, lambda e: None, None, options=EngineOptions(eval_batch_size=None))
    assert ctx.speed.streams is not None
    val2, test2 = evaluate_epoch(ctx)
    streams, ctx.speed.streams = ctx.speed.streams, None
    val1, test1 = evaluate_epoch(ctx)
    streams.close()
    assert (val2.acc, test2.acc, test2.asr) == (val1.acc, test1.acc, test1.asr)
    assert val2.loss == val1.loss and test2.loss == test1.loss  # per-batch sums added in batch order


def test_streams_same_metrics_twice(two_threads):
    cfg = surrogate_config()
    first, second = run(cfg), run(cfg)
    assert first.status == second.status == "completed"
    assert first.epochs and [{k: e[k] for k in METRICS} for e in first.epochs] == \
        [{k: e[k] for k in METRICS} for e in second.epochs]


def test_a_failure_on_the_second_stream_fails_the_run(two_threads, monkeypatch):
    from engine.attacks.surrogate import SurrogateAttack

    original = SurrogateAttack.concurrent_half

    def failing(self, ctx):
        half = original(self, ctx)

        def run_and_fail():
            raise RuntimeError("surrogate half broke")
        half.run = run_and_fail
        return half

    monkeypatch.setattr(SurrogateAttack, "concurrent_half", failing)
    events = []
    result = run(surrogate_config(), events.append)
    assert result.status == "failed" and "surrogate half broke" in result.error
    assert isinstance(events[-1], RunFailed)
    assert torch.get_num_threads() == 2  # the stream block gave the threads back


def test_cancel_with_streams_ends_the_run_and_its_thread(two_threads):
    stop = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if len(events) == 2:  # the first epoch's metrics
            stop.set()

    before = {t.name for t in threading.enumerate()}
    result = run(surrogate_config(epochs=3), emit, stop)
    assert result.status == "cancelled" and isinstance(events[-1], RunFinished)
    assert not {t.name for t in threading.enumerate() if t.name.startswith("sltui-stream")} - before
