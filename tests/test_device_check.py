"""Device-check mode (engine/speed/device_check.py): a tensor made without a device is caught
on the CPU, and every attack with every model, the transfer check and the CLI run in it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from engine import models
from engine.config import ATTACKS, RunConfig
from engine.speed import device_check
from engine.speed.device_check import MixedDeviceError, checking
from engine.speed.options import EngineOptions
from engine.speed.streams import CpuStreams
from engine.store import RunStore, load_weights
from engine.training.runner import run
from engine.training.transfer import run_transfer, transfer_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def check_devices(monkeypatch):
    monkeypatch.setenv(device_check.ENV_VAR, "1")


def test_meta_default_device_is_set_on_the_checking_thread_only():
    seen: dict[str, torch.device] = {}

    def other_thread() -> None:
        seen["default"] = torch.get_default_device()
        seen["made"] = torch.zeros(1).device

    with checking(True) as on:
        assert on and device_check.active()
        assert torch.zeros(1).device.type == "meta"
        assert torch.zeros(1, device="cpu").device.type == "cpu"
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    assert seen == {"default": torch.device("cpu"), "made": torch.device("cpu")}
    assert not device_check.active()
    assert torch.get_default_device() == torch.device("cpu") and torch.zeros(1).device.type == "cpu"


def test_mode_names_the_op_that_mixes_devices():
    cpu = torch.ones(2, 3, device="cpu")
    with checking(True):
        with pytest.raises(MixedDeviceError, match=r"Tensor\.add got tensors on cpu, meta"):
            cpu + torch.zeros(2, 3)
        conv = nn.Conv2d(1, 2, 3, device="cpu")
        # A meta default alone would let this through: conv2d of a meta input with CPU weights "works".
        with pytest.raises(MixedDeviceError, match=r"torch\.conv2d"):
            conv(torch.zeros(1, 1, 5, 5))
        # 0-dim CPU tensors are scalars to torch on any device; a copy is how tensors move.
        assert (torch.ones(3, device="meta") * torch.tensor(2.0, device="cpu")).device.type == "meta"
        assert torch.empty(2, 3, device="meta").copy_(cpu).device.type == "meta"
        moved = nn.Sequential(nn.Conv2d(1, 2, 3, device="cpu"), nn.BatchNorm2d(2, device="cpu")).to("meta")
        assert {p.device.type for p in moved.parameters()} == {"meta"}
        assert torch.equal(cpu * 2, torch.full((2, 3), 2.0, device="cpu"))


def test_module_to_may_set_a_parameters_data_across_devices():
    """Module.to moves a host-built model onto the GPU by setting each parameter's .data
    to its moved copy (the first CUDA run of the check failed there). That setter is a
    move by design; any other cross-device use of a parameter, its .grad say, is not."""
    param = nn.Parameter(torch.zeros(2, device="cpu"))
    with checking(True):
        try:
            param.data = torch.ones(2, device="meta")
        except MixedDeviceError:
            pytest.fail("the .data setter is how Module.to moves parameters")
        except RuntimeError:
            pass  # torch's own rule: CPU and meta storage are not interchangeable (CPU and CUDA are)
        with pytest.raises(MixedDeviceError, match="got tensors on cpu, meta"):
            param.grad = torch.ones(2, device="meta")


def test_mode_off_unless_asked(monkeypatch):
    monkeypatch.delenv(device_check.ENV_VAR, raising=False)
    with checking() as on:
        assert not on and torch.zeros(1).device.type == "cpu"
    monkeypatch.setenv(device_check.ENV_VAR, "0")
    assert not device_check.requested()
    monkeypatch.setenv(device_check.ENV_VAR, "1")
    assert device_check.requested()


def test_second_stream_thread_checks_too():
    streams = CpuStreams(2, check_devices=True)
    try:
        assert streams.submit(device_check.active).result()
        assert streams.submit(lambda: torch.zeros(1).device.type).result() == "meta"
    finally:
        streams.close()
    plain = CpuStreams(2)
    try:
        assert not plain.submit(device_check.active).result()
    finally:
        plain.close()


class ZerosWithoutDevice(nn.Module):
    """The planted bug: a tensor made in forward without a device (fine on a CPU run,
    a crash, or a silent copy, on a GPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.zeros(x.shape[1:])


def planted_lenet(input_shape, num_classes):
    stages = models.lenet_stages(input_shape, num_classes)
    stages[0] = nn.Sequential(*stages[0], ZerosWithoutDevice())
    return stages


def tiny_run(**changes) -> RunConfig:
    base = dict(dataset="synthetic", model="lenet", clients=2, epochs=1, batch_size=16, train_limit=150,
                eval_limit=64, ae_phase1_epochs=2, ae_epochs=1, device="cpu")
    base.update(changes)
    return RunConfig(**base)


def test_planted_bug_fails_the_run_naming_the_op(monkeypatch):
    monkeypatch.setitem(models.BUILDERS, "lenet", planted_lenet)
    unchecked = run(tiny_run())
    assert unchecked.status == "completed", "without the check the bug is invisible on a CPU"
    monkeypatch.setenv(device_check.ENV_VAR, "1")
    # Caught at the first forward pass: here the one that sizes the evaluation batches...
    with pytest.raises(MixedDeviceError, match=r"Tensor\.add got tensors on cpu, meta"):
        run(tiny_run())
    # ...or, without that pass, the first training step, and the run file says so.
    events = []
    checked = run(tiny_run(), events.append, options=EngineOptions(eval_batch_size=None))
    assert checked.status == "failed"
    assert "MixedDeviceError" in checked.error and "Tensor.add got tensors on cpu, meta" in checked.error
    assert events[0].env["device_check"] is True and "Tensor.add" in events[-1].error
    assert torch.get_default_device() == torch.device("cpu") and not device_check.active()


# Settings with which each model's attacks all get through one short epoch: the autoencoder's
# phase 2 needs a backdoored network whose eval-mode BatchNorm statistics have settled.
MODEL_SETTINGS = {"lenet": {}, "stripnet": {}, "resnet9": {"batch_size": 4}}
# The hijack attack's Implant stage starts after its honest warm-up epochs: none here, so
# the one epoch runs Steal, Finetune and Implant.
ATTACK_SETTINGS = {"hijack": {"hijack_warmup_epochs": 0, "hijack_shadow_epochs": 1}}


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("model", [
    "lenet", "stripnet", pytest.param("resnet9", marks=pytest.mark.slow)])
def test_every_attack_and_model_runs_in_the_mode(check_devices, tmp_path, model, attack):
    store = RunStore(tmp_path)
    result = run(tiny_run(model=model, attack=attack, **MODEL_SETTINGS[model], **ATTACK_SETTINGS.get(attack, {})),
                 store.recorder())
    assert result.status == "completed", result.error
    doc = store.load(result.run_id)
    assert doc["env"]["device_check"] is True and len(doc["epochs"]) == 1
    assert torch.get_default_device() == torch.device("cpu")


def test_two_streams_run_in_the_mode(check_devices):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        events = []
        result = run(tiny_run(attack="surrogate"), events.append, options=EngineOptions(streams=True))
    finally:
        torch.set_num_threads(before)
    assert result.status == "completed", result.error
    assert events[0].env["engine_options"]["streams"] is True and events[0].env["device_check"] is True


def test_device_check_is_recorded_false_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv(device_check.ENV_VAR, raising=False)
    events = []
    run(tiny_run(), events.append)
    assert events[0].env["device_check"] is False


def test_transfer_runs_in_the_mode(check_devices, tmp_path):
    store = RunStore(tmp_path)
    source = run(tiny_run(attack="surrogate", save_weights=True), store.recorder())
    assert source.status == "completed", source.error
    doc = store.load(source.run_id)
    cfg = transfer_config(doc, "synthetic", epochs=1, eval_limit=64, train_limit=150)
    result = run_transfer(doc, load_weights(store.weights_path(source.run_id)), cfg, store.recorder(), run_id="t1")
    assert result.status == "completed", result.error
    assert store.load("t1")["env"]["device_check"] is True


@pytest.mark.parametrize("attack", ATTACKS)
def test_cli_headless_run_in_the_mode(tmp_path, attack):
    env = {**os.environ, device_check.ENV_VAR: "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sltui", "run", "--headless", "--dataset", "synthetic", "--device", "cpu",
         "--attack", attack, "--epochs", "1", "--train-limit", "150", "--eval-limit", "64", "--batch-size", "16",
         "--ae-phase1-epochs", "2", "--ae-epochs", "1", "--hijack-warmup-epochs", "0", "--hijack-shadow-epochs", "1",
         "--runs-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [file] = list(tmp_path.rglob("run.json"))
    doc = json.loads(file.read_text())
    assert doc["status"] == "completed" and doc["env"]["device_check"] is True
