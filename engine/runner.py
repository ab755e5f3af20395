"""run(config, emit, stop): one experiment from config to final metrics.

Errors in the config, the device or the data are raised *before* RunStarted is emitted,
so a bad invocation leaves no run file. Once started, a run always ends with exactly one
RunFinished (completed or cancelled) or RunFailed event.
"""
from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .attacks import make_attack
from .config import RunConfig, lr_multiplier, resolve
from .data import load_experiment_data
from .device import environment, resolve_device
from .events import EpochMetrics, Event, RunFailed, RunFinished, RunStarted, WeightsReady
from .metrics import evaluate
from .models import build_split
from .protocol import Cancelled, RunContext, make_adam, train_epoch
from .store import new_run_id  # noqa: F401 - re-exported: callers name a run before it starts
from .trigger import trigger_for


@dataclass
class RunResult:
    run_id: str
    status: str
    final: dict[str, Any] | None = None
    best: dict[str, Any] | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def build_context(cfg: RunConfig, emit: Callable[[Event], None], stop: threading.Event | None,
                  run_id: str = "") -> RunContext:
    """Resolve the device, load the data and build models, optimizers and the attack.
    Raises ConfigError / DataError on bad input; has no side effect on disk."""
    device = resolve_device(cfg.device)
    data = load_experiment_data(cfg, device)
    seed_everything(cfg.seed)
    client, server = build_split(cfg.model, cfg.cut, data.input_shape, data.num_classes)
    client.to(device)
    server.to(device)
    client_opts = [make_adam(client.parameters(), cfg) for _ in range(cfg.clients)]
    return RunContext(
        cfg=cfg, data=data, trigger=trigger_for(cfg, data.input_shape[0], device), device=device,
        client=client, server=server, client_opts=client_opts,
        server_opt=make_adam(server.parameters(), cfg), attack=make_attack(cfg),
        generator=torch.Generator().manual_seed(cfg.seed), run_id=run_id, emit=emit, stop=stop,
    )


def _set_lr(ctx: RunContext, lr: float) -> None:
    for opt in [*ctx.client_opts, ctx.server_opt]:
        for group in opt.param_groups:
            group["lr"] = lr
    ctx.attack.set_lr(lr)


def run(config: RunConfig, emit: Callable[[Event], None] = lambda e: None,
        stop: threading.Event | None = None, run_id: str | None = None) -> RunResult:
    cfg = resolve(config)
    run_id = run_id or new_run_id(cfg)
    ctx = build_context(cfg, emit, stop, run_id)
    samples_per_epoch = sum(len(s) for s in ctx.data.shares[1:])
    emit(RunStarted(run_id, cfg.to_dict(), environment(ctx.device), cfg.epochs, samples_per_epoch))
    result = RunResult(run_id, "running")
    try:
        ctx.attack.prepare(ctx)
        _train(ctx, result)
    except Cancelled:
        result.status = "cancelled"
        emit(RunFinished(run_id, "cancelled", result.final, result.best, attack_info=_attack_info(ctx)))
    except Exception as exc:  # the run file must say what happened
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        emit(RunFailed(run_id, result.error + "\n" + traceback.format_exc()))
    return result


def _train(ctx: RunContext, result: RunResult) -> None:
    cfg, emit = ctx.cfg, ctx.emit
    best_val, since_best, stopped_early = math.inf, 0, False
    for epoch in range(cfg.epochs):
        lr = cfg.lr * lr_multiplier(cfg, epoch)
        _set_lr(ctx, lr)
        started = time.perf_counter()
        stats = train_epoch(ctx)
        train_seconds = time.perf_counter() - started
        joined = ctx.joined()
        val = evaluate(joined, ctx.data.val, ctx.data.norm, cfg.eval_batch_size)
        test = evaluate(joined, ctx.data.test, ctx.data.norm, cfg.eval_batch_size, ctx.trigger)
        metrics = EpochMetrics(
            run_id=ctx.run_id, epoch=epoch + 1,
            train_loss=stats.loss, train_loss_clean=stats.loss_clean, train_loss_malicious=stats.loss_malicious,
            val_loss=val.loss, val_acc=val.acc, cda=test.acc, asr=test.asr if test.asr is not None else float("nan"),
            lr=lr, seconds=time.perf_counter() - started,
            samples_per_s=stats.samples / train_seconds if train_seconds > 0 else 0.0,
        )
        record = {k: v for k, v in metrics.to_dict().items() if k != "run_id"}
        result.epochs.append(record)
        result.final = record
        if val.loss < best_val:
            best_val, since_best, result.best = val.loss, 0, record
        else:
            since_best += 1
        emit(metrics)
        if cfg.patience and since_best >= cfg.patience:
            stopped_early = True
            break
    result.status = "completed"
    if cfg.save_weights:
        emit(WeightsReady(ctx.run_id, weights_state(ctx)))
    emit(RunFinished(ctx.run_id, "completed", result.final, result.best, stopped_early, _attack_info(ctx)))


def weights_state(ctx: RunContext) -> dict[str, Any]:
    def cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    return {"client": cpu(ctx.client), "server": cpu(ctx.server)}


def _attack_info(ctx: RunContext) -> dict[str, Any]:
    try:
        return ctx.attack.summary()
    except AttributeError:  # cancelled before prepare() finished
        return {}
