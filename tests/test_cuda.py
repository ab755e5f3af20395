"""The CUDA path, for the first GPU: `pytest -m cuda` (skipped where no CUDA GPU is
visible; CI on CPU collects and skips them).

Every attack with every model for one epoch (in device-check mode, which on a GPU
catches any CPU tensor mixed into the run), the same config and seed twice giving the
same metrics, CUDA against CPU on the same short run, the bf16 and compile options, the
CLI's run file and the TUI's run path."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.config import RunConfig, resolve
from engine.events import EpochMetrics
from engine.models import build_split
from engine.models.seeded import drawing_from
from engine.speed import device_check
from engine.speed.device_check import MixedDeviceError
from engine.speed.options import EngineOptions
from engine.store import RunStore, load_weights
from engine.training.runner import build_context, run
from engine.config import ATTACKS as ENGINE_ATTACKS
from engine.training.transfer import run_transfer, transfer_config
from tests.test_runner import metrics_of, same

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = list(ENGINE_ATTACKS)
MODELS = ["lenet", "stripnet", "resnet9"]


def cuda_config(**changes) -> RunConfig:
    """One short epoch on the GPU. The attacker's share (500 images) and three phase-1
    epochs let even ResNet9's BatchNorm statistics settle, so that the autoencoder's
    phase 2 finds pairs."""
    base = dict(dataset="synthetic", model="lenet", clients=2, epochs=1, batch_size=16, train_limit=1500,
                eval_limit=500, ae_phase1_epochs=3, ae_epochs=2, hijack_warmup_epochs=0, hijack_shadow_epochs=1,
                device="cuda")
    base.update(changes)
    return RunConfig(**base)


def finite_metrics(record: dict) -> bool:
    return all(math.isfinite(record[k]) for k in ("train_loss", "val_loss", "val_acc", "cda"))


@pytest.fixture
def check_devices(monkeypatch):
    monkeypatch.setenv(device_check.ENV_VAR, "1")


@pytest.fixture
def float32_everywhere():
    """TF32 off (cuDNN's convolutions use it by default on Ampere and later): float32
    on both devices, so CPU and CUDA differ by summation order only."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("model", MODELS)
def test_every_attack_and_model_one_epoch_on_cuda(check_devices, tmp_path, model, attack):
    store = RunStore(tmp_path)
    result = run(cuda_config(model=model, attack=attack), store.recorder())
    assert result.status == "completed", result.error
    doc = store.load(result.run_id)
    assert doc["env"]["device"].startswith("cuda") and doc["env"]["device_check"] is True
    assert doc["env"]["engine_options"]["deterministic"] is True
    assert finite_metrics(doc["final"])
    if attack == "autoencoder":
        assert doc["attack_info"]["pairs"] >= 2


def test_planted_cpu_tensor_is_named_on_cuda(check_devices, monkeypatch):
    from engine import models
    from tests.test_device_check import planted_lenet

    monkeypatch.setitem(models.BUILDERS, "lenet", planted_lenet)
    with pytest.raises(MixedDeviceError, match=r"Tensor\.add got tensors on cuda:0, meta"):
        run(cuda_config())


def test_transfer_on_cuda(check_devices, tmp_path):
    store = RunStore(tmp_path)
    source = run(cuda_config(attack="surrogate"), store.recorder())
    assert source.status == "completed", source.error
    doc = store.load(source.run_id)
    cfg = transfer_config(doc, "synthetic", epochs=1, eval_limit=500, train_limit=600)
    result = run_transfer(doc, load_weights(store.weights_path(source.run_id)), cfg, store.recorder(), run_id="t1")
    assert result.status == "completed", result.error
    assert store.load("t1")["env"]["device"].startswith("cuda")


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("model", MODELS)
def test_same_config_and_seed_same_metrics_on_cuda(model, attack):
    cfg = cuda_config(model=model, attack=attack)
    first, second = metrics_of(cfg), metrics_of(cfg)
    assert same(first, second), (first, second)


# CUDA against CPU, one epoch of the same run, float32 on both (fixture above). The two
# start from identical weights (built on the host from the run's generator) and see the
# same batches in the same order (drawn on the host), so they differ only by float
# rounding: each op sums in another order (relative differences near 1e-6). Training
# amplifies that: Adam's normalised step turns a tiny difference in a near-zero gradient
# into up to a whole learning-rate step, over the epoch's steps. Losses are means over
# hundreds of images and move smoothly: 2 % relative. Accuracies count images, and the
# few lying near the decision boundary after one epoch may flip: 2 percentage points of
# the 1000 evaluated images. The ASR is not compared: after one epoch the backdoor is half
# learnt, on the steep part of its curve, where every stamped image moves with the same
# patch and a small weight difference moves many of them at once.
LOSS_RTOL = 0.02
ACC_POINTS = 2.0


def cpu_cuda_pair(attack: str) -> tuple[RunConfig, RunConfig]:
    cfg = RunConfig(dataset="synthetic", model="lenet", attack=attack, clients=2, epochs=1, batch_size=64,
                    train_limit=600, eval_limit=1000, device="cuda")
    return cfg.replace(device="cpu"), cfg


@pytest.mark.parametrize("attack", ["none", "surrogate"])
def test_cuda_and_cpu_start_identical_and_agree_after_an_epoch(float32_everywhere, attack):
    cpu_cfg, cuda_cfg = cpu_cuda_pair(attack)
    contexts = [build_context(resolve(c), lambda e: None, None) for c in (cpu_cfg, cuda_cfg)]
    try:
        cpu_state, cuda_state = (ctx.joined().state_dict() for ctx in contexts)
        assert all(torch.equal(cpu_state[k], cuda_state[k].cpu()) for k in cpu_state)
        # The first forward pass differs by summation order only.
        first = [torch.nn.functional.cross_entropy(ctx.joined()(ctx.speed.prepared.val_x[:256]), ctx.data.val.y[:256])
                 for ctx in contexts]
        assert first[1].item() == pytest.approx(first[0].item(), rel=1e-4)
    finally:
        for ctx in contexts:
            ctx.close()
    [cpu], [cuda] = metrics_of(cpu_cfg), metrics_of(cuda_cfg)
    for key in ("train_loss", "train_loss_clean", "val_loss"):
        assert cuda[key] == pytest.approx(cpu[key], rel=LOSS_RTOL), (key, cpu, cuda)
    for key in ("val_acc", "cda"):
        assert abs(cuda[key] - cpu[key]) <= ACC_POINTS, (key, cpu, cuda)


@pytest.mark.parametrize("attack", ATTACKS)
def test_bf16_option_runs(attack):
    events = []
    result = run(cuda_config(attack=attack), events.append, options=EngineOptions(bf16=True))
    assert result.status == "completed", result.error
    assert events[0].env["engine_options"]["bf16"] is True and finite_metrics(result.final)


@pytest.mark.parametrize("model", ["lenet", "resnet9"])
def test_compile_option_runs(model):
    events = []
    result = run(cuda_config(model=model, attack="surrogate"), events.append, options=EngineOptions(compile=True))
    assert result.status == "completed", result.error
    assert events[0].env["engine_options"]["compile"] is True and finite_metrics(result.final)


def test_deterministic_off_runs_and_is_recorded():
    events = []
    result = run(cuda_config(model="resnet9"), events.append, options=EngineOptions(deterministic=False))
    assert result.status == "completed", result.error
    assert events[0].env["engine_options"]["deterministic"] is False
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("attack", ["surrogate", "autoencoder"])
def test_attacks_leave_the_cuda_generator_alone(attack):
    ctx = build_context(resolve(cuda_config(attack=attack)), lambda e: None, None)
    cpu_state, cuda_state = torch.get_rng_state(), torch.cuda.get_rng_state()
    ctx.attack.prepare(ctx)
    assert torch.equal(torch.get_rng_state(), cpu_state) and torch.equal(torch.cuda.get_rng_state(), cuda_state)
    ctx.close()


def test_models_initialise_from_a_host_generator_only():
    with pytest.raises(ValueError):
        with drawing_from(torch.Generator(device="cuda")):
            pass
    client, _ = build_split("lenet", 1, (1, 28, 28), 10, device="cuda",
                            generator=torch.Generator(device="cpu").manual_seed(3))
    assert {p.device.type for p in client.parameters()} == {"cuda"}


def test_cli_headless_run_on_cuda_writes_a_complete_run_file(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sltui", "run", "--headless", "--device", "cuda", "--dataset", "synthetic",
         "--attack", "surrogate", "--epochs", "2", "--train-limit", "600", "--eval-limit", "200",
         "--runs-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [file] = list(tmp_path.rglob("run.json"))
    doc = json.loads(file.read_text())
    assert doc["status"] == "completed" and doc["config"]["device"] == "cuda"
    assert doc["env"]["device"].startswith("cuda") and doc["env"]["device_name"] == torch.cuda.get_device_name(0)
    assert doc["env"]["engine_options"]["deterministic"] is True
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2] and doc["final"]["epoch"] == 2 and doc["best"]
    assert doc["attack_info"]["poisoned_samples"] > 0
    assert (file.parent / "model.pt").is_file()
    fields = {f.name for f in dataclasses.fields(EpochMetrics)}
    assert fields - {"run_id"} <= set(doc["final"])


async def test_tui_run_path_on_cuda(tmp_path):
    from sltui.tui.screens.live_run import LiveRunScreen
    from sltui.tui.screens.new_run import NewRunScreen
    from sltui.tui.widgets.charts import MetricChart
    from tests.test_tui_app import SIZE, make_app, wait_for

    app = make_app(tmp_path, config=RunConfig(dataset="synthetic", epochs=2, train_limit=600, eval_limit=200,
                                              batch_size=64, device="cuda"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, LiveRunScreen), timeout=120)
        screen = app.screen
        await wait_for(pilot, lambda: not app.manager.active(), timeout=300)
        assert app.manager.get(screen.run_id).status == "completed", app.manager.get(screen.run_id).error
        await wait_for(pilot, lambda: screen.query_one("#chart-acc", MetricChart).points >= 2)
        doc = json.loads((tmp_path / screen.run_id / "run.json").read_text())
        assert doc["status"] == "completed" and len(doc["epochs"]) == 2
        assert doc["env"]["device"].startswith("cuda")
    assert app.manager.shutdown(5) == []
