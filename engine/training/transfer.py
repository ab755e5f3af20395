"""The transfer check (docs/protocol.md section 8, the paper's Appendix E).

Join the client and server of a finished run into one network, freeze everything but
the last linear layer (re-initialised for the new dataset's classes), retrain that
layer on a clean dataset, and report CDA and ASR (with the source run's trigger) on that
dataset's test set. The result is a run of its own, linked to its source run.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import CIFAR_LIKE, ConfigError, RunConfig, resolve, stored_config
from ..data.datasets import default_data_root, load_raw, table1_splits
from ..data.trigger import trigger_for
from ..events import EpochMetrics, Event, RunFinished, RunStarted
from ..models import build_split
from ..models.frozen import Frozen
from ..models.seeded import built
from ..speed import determinism, device_check
from ..speed.device import environment, resolve_device
from ..speed.flush import call_with_flush
from ..speed.options import auto_eval_batch
from .context import Cancelled
from .lifecycle import RunResult, run_lifecycle
from .local_training import fit
from .metrics import evaluate

TRANSFER_DATASETS = ("mnist", "emnist-letters-aj", "fmnist", "mnist-10k", "fmnist-5", "synthetic")


def last_linear(module: nn.Module) -> tuple[nn.Module, str]:
    """The parent module and attribute name of the last nn.Linear in `module`."""
    found = None
    for name, child in module.named_modules():
        if isinstance(child, nn.Linear):
            found = name
    if found is None:
        raise ValueError("the network has no linear layer")
    parent_name, _, attr = found.rpartition(".")
    return module.get_submodule(parent_name) if parent_name else module, attr


def transfer_config(source: dict[str, Any], dataset: str, epochs: int, **overrides: Any) -> RunConfig:
    """The source run's config on `dataset`, with no attack: the retraining's settings."""
    if dataset not in TRANSFER_DATASETS:
        raise ConfigError(f"--dataset for transfer must be one of {', '.join(TRANSFER_DATASETS)} (got {dataset!r})")
    base = stored_config(source["config"])
    given = {k: v for k, v in overrides.items() if v is not None}
    cfg = base.replace(dataset=dataset, epochs=epochs, attack="none", clients=1, name=f"transfer of {source['id']}",
                       **given)
    if base.dataset in CIFAR_LIKE:
        raise ConfigError(f"transfer needs the same input shape: run {source['id']} was trained on {base.dataset}")
    return resolve(cfg)


def run_transfer(source: dict[str, Any], weights: dict[str, Any], cfg: RunConfig,
                 emit: Callable[[Event], None] = lambda e: None, stop: threading.Event | None = None,
                 run_id: str = "") -> RunResult:
    """The retraining as a run of its own, subnormal floats flushed (engine/speed/flush.py),
    deterministic on CUDA (engine/speed/determinism.py), with the device check when the
    environment asks for it (engine/speed/device_check.py)."""
    return call_with_flush(lambda flushed: _run_transfer(source, weights, cfg, emit, stop, run_id), True)


def _run_transfer(source: dict[str, Any], weights: dict[str, Any], cfg: RunConfig,
                  emit: Callable[[Event], None], stop: threading.Event | None, run_id: str) -> RunResult:
    with device_check.checking() as checking_devices:
        device = resolve_device(cfg.device)
        with determinism.for_run(device, True):
            return _retrain(source, weights, cfg, emit, stop, run_id, device, checking_devices)


def _retrain(source: dict[str, Any], weights: dict[str, Any], cfg: RunConfig, emit: Callable[[Event], None],
             stop: threading.Event | None, run_id: str, device: torch.device, checking_devices: bool) -> RunResult:
    root = Path(cfg.data_root).expanduser() if cfg.data_root else default_data_root()
    raw, norm, classes = load_raw(cfg.dataset, root)
    pool, _, test = table1_splits(cfg.dataset, raw)
    if cfg.train_limit:
        pool = type(pool)(pool.x[:cfg.train_limit], pool.y[:cfg.train_limit])
    if cfg.eval_limit:
        test = type(test)(test.x[:cfg.eval_limit], test.y[:cfg.eval_limit])
    pool, test = pool.to(device), test.to(device)
    if cfg.target >= classes:
        raise ConfigError(f"the source run's target class {cfg.target} does not exist in {cfg.dataset}")

    src_cfg = stored_config(source["config"])
    src_classes = 5 if src_cfg.dataset == "fmnist-5" else 10
    # The new head's initial weights come from a generator of the run's own (after the
    # source network's draws, whose weights are then replaced by the source run's).
    init = torch.Generator(device="cpu").manual_seed(cfg.seed)
    client, server = build_split(src_cfg.model, src_cfg.cut, tuple(test.x.shape[1:]), src_classes,
                                 device=device, generator=init)
    client.load_state_dict(weights["client"])
    server.load_state_dict(weights["server"])
    net = nn.Sequential(client, server)
    net.requires_grad_(False)
    parent, attr = last_linear(net)
    old = getattr(parent, attr)
    setattr(parent, attr, built(lambda: nn.Linear(old.in_features, classes), device, init))
    head = getattr(parent, attr)
    trigger = trigger_for(cfg, int(test.x.shape[1]), device, norm.mean, norm.std)
    eval_batch = cfg.eval_batch_size or auto_eval_batch(net, tuple(test.x.shape[1:]), device)

    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    # Everything but the head stays in eval mode (BatchNorm statistics frozen too); the head
    # trains in eval mode as well (a linear layer has no mode to follow).
    model = Frozen(net)
    head.requires_grad_(True)

    def check_stop() -> None:
        if stop is not None and stop.is_set():
            raise Cancelled()

    def work(result: RunResult) -> None:
        epoch_started = time.perf_counter()

        def on_epoch(epoch: int, loss: float) -> None:
            nonlocal epoch_started
            test_eval = evaluate(net, test, norm, eval_batch, trigger)
            seconds = time.perf_counter() - epoch_started
            record = EpochMetrics(run_id, epoch, loss, loss, None, float("nan"), float("nan"), test_eval.acc,
                                  test_eval.asr if test_eval.asr is not None else float("nan"), cfg.lr, seconds,
                                  len(pool) / seconds if seconds > 0 else 0.0)
            result.epochs.append({k: v for k, v in record.to_dict().items() if k != "run_id"})
            result.final = result.epochs[-1]
            emit(record)
            epoch_started = time.perf_counter()

        fit(model, opt, len(pool), lambda idx: (norm.apply(pool.x[idx]), pool.y[idx]), cfg.epochs, cfg.batch_size,
            gen, device, on_epoch=on_epoch, check_stop=check_stop)

    env = {**environment(device), "device_check": checking_devices}
    started = RunStarted(run_id, cfg.to_dict(), env, cfg.epochs, len(pool), source_run=source["id"])
    return run_lifecycle(started, emit, work, lambda r: RunFinished(run_id, r.status, r.final, r.final))
