"""Subnormal floats are flushed on every thread that computes a run (engine/flush.py):
the run's thread, its intra-op workers, and the second CPU stream with its workers."""
from __future__ import annotations

import math
import threading

import pytest
import torch

from engine.config import resolve
from engine.speed.flush import call_with_flush, flushing_here, set_flush, subnormals_survive
from engine.speed.options import EngineOptions
from engine.training.runner import build_context, run
from engine.events import EpochMetrics, RunStarted
from engine.speed.streams import CpuStreams
from tests.conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU has no flush-to-zero switch")


def probe() -> tuple[bool, int]:
    return flushing_here(), subnormals_survive()


def in_thread_with(threads: int, fn):
    """fn() on a new thread with `threads` intra-op threads; its result or its error."""
    out: dict = {}

    def body():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            out["error"] = exc
        finally:
            torch.set_num_threads(before)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_the_probe_sees_intra_op_workers_that_keep_subnormals():
    def body():
        set_flush(False)
        subnormals_survive()  # the thread's OpenMP workers now exist, without the flush
        set_flush(True)
        try:
            return probe()
        finally:
            set_flush(False)

    here, survivors = in_thread_with(2, body)
    assert here  # the thread itself flushes ...
    assert survivors > 0  # ... but its older workers do not: setting the switch is not enough


def test_call_with_flush_reaches_workers_made_before_it():
    def body():
        set_flush(False)
        subnormals_survive()  # workers made without the flush
        inside = call_with_flush(lambda flushed: (flushed, *probe()), True)
        return inside, flushing_here()

    (flushed, here, survivors), after = in_thread_with(2, body)
    assert flushed and here and survivors == 0
    assert not after  # the caller's own switch is restored


def test_call_with_flush_leaves_the_callers_workers_as_they_were():
    """A caller that does not flush and has no intra-op workers yet: the run flushes
    everywhere, and afterwards neither the caller nor its workers (made by its first
    parallel op, after the run) flush."""
    def body():
        set_flush(False)
        inside = call_with_flush(lambda flushed: (flushed, *probe()), True)
        return inside, probe()

    (flushed, here, survivors), (after_here, after_survivors) = in_thread_with(2, body)
    assert flushed and here and survivors == 0
    assert not after_here
    assert after_survivors == 2 * subnormals_per_probe_thread()  # every product kept its subnormal


def subnormals_per_probe_thread() -> int:
    """How many subnormal results the probe computes per intra-op thread (none flushing)."""
    def body():
        set_flush(False)
        torch.set_num_threads(1)
        return subnormals_survive()
    return in_thread_with(1, body)


def test_call_with_flush_off_computes_with_subnormals():
    flushed, here, survivors = in_thread_with(2, lambda: call_with_flush(lambda f: (f, *probe()), False))
    assert not flushed and not here and survivors > 0


def test_second_stream_and_its_workers_flush():
    def body():
        streams = CpuStreams(4, flush=True)  # two intra-op threads on the stream's thread
        try:
            return streams.submit(probe).result()
        finally:
            streams.close()

    here, survivors = in_thread_with(4, lambda: call_with_flush(lambda f: body(), True))
    assert here and survivors == 0


def test_a_run_context_built_flushing_gives_its_stream_the_flush():
    def body(flushed):
        ctx = build_context(resolve(tiny_config(attack="surrogate", alpha=0.5)), lambda e: None, None,
                            options=EngineOptions(streams=True))
        try:
            return ctx.speed.options.flush_subnormals, ctx.speed.streams is not None, ctx.speed.streams.submit(probe).result()
        finally:
            ctx.close()

    recorded, has_streams, (here, survivors) = in_thread_with(2, lambda: call_with_flush(body, True))
    assert recorded and has_streams and here and survivors == 0


def test_a_run_flushes_on_its_thread_and_records_it():
    seen, env = [], {}

    def emit(event):
        if isinstance(event, RunStarted):
            env.update(event.env)
        if isinstance(event, EpochMetrics):  # emitted from the thread that trains
            seen.append(probe())

    def body():
        set_flush(False)
        subnormals_survive()  # as in the TUI or a library caller: workers made earlier
        return run(tiny_config(), emit)

    result = in_thread_with(2, body)
    assert result.status == "completed"
    assert env["engine_options"]["flush_subnormals"] is True
    assert seen and all(here and survivors == 0 for here, survivors in seen)


def test_flush_leaves_the_metrics_as_they_are():
    """Only values below 1.2e-38 change: a short run gives the same metrics either way."""
    on = run(tiny_config(), options=EngineOptions(flush_subnormals=True))
    off_env: dict = {}
    off = run(tiny_config(), lambda e: off_env.update(e.env) if isinstance(e, RunStarted) else None,
              options=EngineOptions(flush_subnormals=False))
    assert off_env["engine_options"]["flush_subnormals"] is False
    for a, b in zip(on.epochs, off.epochs):
        for key in ("train_loss", "val_loss", "cda", "asr"):
            assert math.isclose(a[key], b[key], rel_tol=1e-6, abs_tol=1e-9), key
