"""Shared fixtures. Tests run on the CPU with synthetic data and never touch the network
or any data folder."""
from __future__ import annotations

import os
import socket

# The suite shares 2 cores with other work: one intra-op thread is several times faster
# there than two threads spinning against each other. (Set before torch starts OpenMP;
# engine.speed.device.available_cores reads it too, so the TUI's thread sharing keeps to it.)
os.environ["OMP_NUM_THREADS"] = "1"

import pytest
import torch

from engine.config import RunConfig

os.environ.setdefault("SLTUI_CACHE", "/tmp/sltui-test-cache")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails at once, as on a machine without network."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """Keep run files, data and caches out of the user's folders."""
    monkeypatch.setenv("SLTUI_RUNS", str(tmp_path / "default-runs"))
    monkeypatch.setenv("SLTUI_DATA", str(tmp_path / "default-data"))
    monkeypatch.setenv("SLTUI_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def no_thread_share(monkeypatch):
    """Each test starts with no share of the cores published (the terminal UI's run
    manager publishes one, engine.speed.device.share_cpu_threads), so that it cannot
    reach runs of later tests."""
    from engine.speed import device

    monkeypatch.setattr(device, "_thread_share", None)


@pytest.fixture
def tiny():
    """A fast config on the synthetic dataset."""
    return RunConfig(dataset="synthetic", epochs=1, train_limit=600, eval_limit=200, device="cpu")


def tiny_config(**changes) -> RunConfig:
    """A run of about a second on CPU: synthetic data, LeNet, 2 clients, 2 epochs."""
    base = dict(dataset="synthetic", model="lenet", cut=1, clients=2, epochs=2, batch_size=64,
                train_limit=450, eval_limit=200, device="cpu")
    base.update(changes)
    return RunConfig(**base)
