"""Determinism (engine/speed/determinism.py) and the attacks' own generators: the switches
are set and restored process-wide, CPU runs compute the same under them, and no attack
reseeds or advances torch's global random state."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import torch

from engine.config import ATTACKS, resolve
from engine.models import build_split
from engine.speed import determinism
from engine.speed.options import EngineOptions
from engine.training.protocol import train_epoch
from engine.training.runner import build_context, run
from tests.conftest import tiny_config
from tests.test_runner import metrics_of, same

# The hijack attack's stages in a one-epoch run: no honest warm-up, one shadow epoch.
HIJACK_SHORT = {"hijack_warmup_epochs": 0, "hijack_shadow_epochs": 1}


def switches() -> tuple[bool, bool, bool, bool]:
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)


@pytest.fixture
def benchmark_on():
    """A caller's own setting that the switches must give back."""
    torch.backends.cudnn.benchmark = True
    yield
    torch.backends.cudnn.benchmark = False


def test_switches_on_while_any_holder_is_open_then_restored(benchmark_on):
    before = switches()
    assert before == (False, False, False, True)
    first_open, release = threading.Event(), threading.Event()
    seen = []

    def holder() -> None:
        with determinism.deterministic_algorithms():
            first_open.set()
            release.wait(10)

    worker = threading.Thread(target=holder)
    worker.start()
    try:
        first_open.wait(10)
        with determinism.deterministic_algorithms():
            seen.append(switches())
        seen.append(switches())  # the other run still holds them: still on
    finally:
        release.set()
        worker.join(10)
    assert seen == [(True, False, True, False)] * 2
    assert switches() == before


def test_off_or_on_the_cpu_the_switches_are_left_alone():
    before = switches()
    with determinism.deterministic_algorithms(False):
        assert switches() == before
    with determinism.for_run(torch.device("cpu"), True):
        assert switches() == before
    with determinism.for_run(torch.device("cuda"), True):
        assert torch.are_deterministic_algorithms_enabled()
    assert switches() == before


def test_cublas_workspace_set_at_import_unless_the_user_set_it():
    code = "import os, engine.training.runner; print(os.environ.get('CUBLAS_WORKSPACE_CONFIG'))"
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == ":4096:8"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "CUBLAS_WORKSPACE_CONFIG": ":16:8"})
    assert out.stdout.strip() == ":16:8"


def test_option_is_recorded():
    events = []
    run(tiny_config(epochs=1), events.append)
    assert events[0].env["engine_options"]["deterministic"] is True
    events = []
    run(tiny_config(epochs=1), events.append, options=EngineOptions(deterministic=False))
    assert events[0].env["engine_options"]["deterministic"] is False


@pytest.mark.parametrize("attack", ATTACKS)
def test_cpu_runs_compute_the_same_under_torch_deterministic_algorithms(attack):
    """No op a run uses raises under torch's switch, and on the CPU nothing changes."""
    cfg = tiny_config(epochs=1, attack=attack, ae_phase1_epochs=2, ae_epochs=1, **HIJACK_SHORT)
    plain = metrics_of(cfg)
    with determinism.deterministic_algorithms():
        forced = metrics_of(cfg)
    assert same(plain, forced), (plain, forced)


# ---------------------------------------------------------------- random state
def test_drawing_from_uses_the_generator_and_restores_the_global_state():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    gen = torch.Generator(device="cpu").manual_seed(7)
    client, _ = build_split("lenet", 1, (1, 28, 28), 10, generator=gen)
    assert torch.equal(torch.get_rng_state(), state)
    # The same weights as building after torch.manual_seed(7), the way runs were seeded before.
    torch.manual_seed(7)
    reference, _ = build_split("lenet", 1, (1, 28, 28), 10)
    assert all(torch.equal(a, b) for a, b in zip(client.state_dict().values(), reference.state_dict().values()))
    # The generator advanced: a second build from it differs.
    torch.set_rng_state(state)
    again, _ = build_split("lenet", 1, (1, 28, 28), 10, generator=gen)
    assert not torch.equal(again[0][0].weight, client[0][0].weight)


@pytest.mark.parametrize("attack", [a for a in ATTACKS if a != "none"])
def test_attacks_never_seed_or_advance_the_global_generator(attack, monkeypatch):
    cfg = resolve(tiny_config(attack=attack, ae_phase1_epochs=2, ae_epochs=1, **HIJACK_SHORT))
    ctx = build_context(cfg, lambda e: None, None)

    def forbidden(*args, **kwargs):
        raise AssertionError("an attack seeded torch's global generator")

    state = torch.get_rng_state()
    for name in ("manual_seed", "seed"):
        monkeypatch.setattr(torch, name, forbidden)
        monkeypatch.setattr(torch.random, name, forbidden)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", forbidden)
    monkeypatch.setattr(torch.cuda, "manual_seed", forbidden)
    ctx.attack.prepare(ctx)
    assert torch.equal(torch.get_rng_state(), state)
    train_epoch(ctx)
    assert torch.equal(torch.get_rng_state(), state)
    ctx.close()


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_run_draws_nothing_from_the_global_generator(attack):
    """A run neither seeds nor draws from the global CPU generator: after it, the
    generator is in the state the run found it in."""
    cfg = resolve(tiny_config(epochs=1, attack=attack, ae_phase1_epochs=2, ae_epochs=1, **HIJACK_SHORT))
    torch.manual_seed(12345)
    torch.rand(3)  # some state no seed gives directly
    before = torch.get_rng_state()
    result = run(cfg)
    assert result.status == "completed", result.error
    assert torch.equal(before, torch.get_rng_state())


def test_two_runs_side_by_side_give_the_metrics_of_each_alone():
    """The TUI runs several runs in one process. With dropout (StripNet), a detector that
    builds networks of its own (SplitOut) and an attack, two runs in two threads at once
    give exactly the metrics each gives alone, and leave the global CPU generator as
    they found it."""
    first = resolve(tiny_config(model="stripnet", epochs=2, defenses=("splitout",), seed=3))
    second = resolve(tiny_config(model="stripnet", epochs=2, attack="surrogate", seed=4))
    alone = [metrics_of(first), metrics_of(second)]
    torch.manual_seed(99)
    before = torch.get_rng_state()
    together: dict[int, list] = {}
    start = threading.Barrier(2)

    def one(i, cfg):
        start.wait()
        together[i] = metrics_of(cfg)

    threads = [threading.Thread(target=one, args=(i, cfg)) for i, cfg in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert same(together[0], alone[0]) and same(together[1], alone[1]), (together, alone)
    assert torch.equal(torch.get_rng_state(), before)
