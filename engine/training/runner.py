"""run(config, emit, stop): one experiment from config to final metrics.

Errors in the config, the device or the data are raised *before* RunStarted is emitted,
so a bad invocation leaves no run file. Once started, a run always ends with exactly one
RunFinished (completed or cancelled) or RunFailed event.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import statistics
import threading
import time
from typing import Any, Callable

import torch

from ..attacks import make_attack
from ..config import AUX_ATTACKS, ConfigError, RunConfig, lr_multiplier, resolve, resolved_fields
from ..data.datasets import EVAL_SPLIT_SEED, load_experiment_data
from ..data.prepared import prepare_data
from ..data.trigger import trigger_for
from ..defenses import ClientDefenses, ClientView
from ..events import DefenseScores, EpochMetrics, Event, Reaction, RunFinished, RunStarted, WeightsReady
from ..models import build_split
from ..speed import determinism, device_check
from ..speed.adam import set_lr
from ..speed.device import environment, resolve_device
from ..speed.flush import call_with_flush, flushing_here, subnormals_survive
from ..speed.options import AUTO, EngineOptions, auto_eval_batch, resolve_options, tune_malloc
from ..speed.state import SpeedState
from ..speed.streams import streams_for
from ..store import new_run_id  # noqa: F401 - re-exported: callers name a run before it starts
from .context import RunContext
from .reaction import local_models
from .lifecycle import RunResult, run_lifecycle
from .metrics import Evaluation, evaluate
from .protocol import train_epoch


def build_context(cfg: RunConfig, emit: Callable[[Event], None], stop: threading.Event | None,
                  run_id: str = "", options: EngineOptions | None = None) -> RunContext:
    """Resolve the device, load the data and build models, optimizers and the attack.
    `options` (default ``EngineOptions()``) say how to compute, never what: see
    engine/speed/options.py. Raises ConfigError / DataError on bad input; no side effect on disk."""
    device = resolve_device(cfg.device)
    options = options if options is not None else EngineOptions()
    flushing = flushing_here() and subnormals_survive() == 0
    resolved = resolve_options(options, device, cfg.model, cfg.eval_batch_size, flushing)
    if resolved.malloc_tuning:
        tune_malloc()
    if device.type == "cpu" and isinstance(options.threads, int):
        torch.set_num_threads(options.threads)
    data = load_experiment_data(cfg, device)
    if cfg.aux_size is not None and cfg.attack in AUX_ATTACKS and cfg.aux_size > len(data.shares[0]):
        raise ConfigError(f"--aux-size {cfg.aux_size} is more than the attacker's share holds "
                          f"({len(data.shares[0])} images with --clients {cfg.clients}); give at most that")
    trigger = trigger_for(cfg, data.input_shape[0], device, data.norm.mean, data.norm.std)
    client, server = build_split(cfg.model, cfg.cut, data.input_shape, data.num_classes, device=device,
                                 generator=torch.Generator(device="cpu").manual_seed(cfg.seed))
    ctx = RunContext(
        cfg=cfg, data=data, trigger=trigger, device=device,
        client=client, server=server, client_opts=[], server_opt=None,  # type: ignore[arg-type]
        attack=make_attack(cfg), generator=torch.Generator(device="cpu").manual_seed(cfg.seed),
        run_id=run_id, emit=emit, stop=stop,
        speed=SpeedState(resolved, prepare_data(data, trigger) if resolved.prenormalize else None),
    )
    speed = ctx.speed
    speed.device_type = device.type
    speed.thread_ceiling = None if options.threads is None else speed.options.threads
    speed.follow_thread_share()  # before any timing or stream is set up
    ctx.setup_module(client)
    ctx.setup_module(server)
    ctx.client_opts = [ctx.make_adam(client.parameters()) for _ in range(cfg.clients)]
    ctx.server_opt = ctx.make_adam(server.parameters())
    if device.type == "cpu" and options.threads == AUTO:
        speed.options = dataclasses.replace(speed.options, threads=choose_threads(ctx))
        speed.thread_ceiling = speed.options.threads
    speed.streams = streams_for(device, speed.options.streams, flush=speed.options.flush_subnormals,
                                check_devices=device_check.active())
    speed.options = dataclasses.replace(speed.options, streams=speed.streams is not None)
    if cfg.eval_batch_size is None and options.eval_batch_size == AUTO:
        low = max(cfg.batch_size, 128)
        batch = auto_eval_batch(ctx.joined(), data.input_shape, device, low=low)
        if speed.streams is not None:  # enough batches for the two streams to share evenly
            batch = max(min(batch, _power_of_two_at_most(max(len(data.val), len(data.test)) // 8)), low)
        speed.options = dataclasses.replace(speed.options, eval_batch_size=batch)
    return ctx


def _power_of_two_at_most(n: int) -> int:
    return 1 << max(n, 1).bit_length() - 1


def choose_threads(ctx: RunContext, candidates: tuple[int, ...] = (1, 2), rounds: int = 5) -> int:
    """Time a few forward+backward passes of a copy of the network at batch size with
    each thread count (interleaved, median of `rounds`) and set and return the fastest.
    On a small shared CPU, one thread often beats two spinning against each other."""
    # The caller's thread count is the ceiling: the TUI and sweeps share the cores between runs.
    available = torch.get_num_threads()
    candidates = tuple(t for t in candidates if t <= available) or (1,)
    if len(candidates) == 1:
        torch.set_num_threads(candidates[0])
        return candidates[0]
    net = copy.deepcopy(ctx.joined()).train()
    idx = torch.arange(min(ctx.cfg.batch_size, len(ctx.data.shares[1])), device=ctx.device)
    x, y = ctx.client_batch(1, idx)
    timings: dict[int, list[float]] = {t: [] for t in candidates}
    # The copy's dropout layers draw from copies of the run's dropout generators: the run's
    # own random streams are left as they were.
    for r in range(rounds + 1):
        for t in candidates:
            torch.set_num_threads(t)
            started = time.perf_counter()
            for _ in range(3):
                net.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(net(x), y).backward()
            if r:  # round 0 warms up
                timings[t].append(time.perf_counter() - started)
    best = min(candidates, key=lambda t: statistics.median(timings[t]))
    torch.set_num_threads(best)
    return best


def set_epoch_lr(ctx: RunContext, lr: float) -> None:
    """The epoch's learning rate for every client, the server and the attack."""
    for opt in [*ctx.client_opts, ctx.server_opt]:
        set_lr(opt, lr)
    ctx.attack.set_lr(lr)


def run(config: RunConfig, emit: Callable[[Event], None] = lambda e: None,
        stop: threading.Event | None = None, run_id: str | None = None,
        options: EngineOptions | None = None) -> RunResult:
    """The whole run, with subnormal floats flushed on its threads when the options say
    so (engine/speed/flush.py; on by default), deterministic on CUDA unless the options
    say otherwise (engine/speed/determinism.py), and with the device check when the
    environment asks for it (engine/speed/device_check.py)."""
    options = options if options is not None else EngineOptions()
    return call_with_flush(lambda flushed: _run(config, emit, stop, run_id, options), options.flush_subnormals)


def _run(config: RunConfig, emit: Callable[[Event], None], stop: threading.Event | None,
         run_id: str | None, options: EngineOptions) -> RunResult:
    with device_check.checking() as checking_devices:
        return _checked_run(config, emit, stop, run_id, options, checking_devices)


def _checked_run(config: RunConfig, emit: Callable[[Event], None], stop: threading.Event | None,
                 run_id: str | None, options: EngineOptions, checking_devices: bool) -> RunResult:
    cfg = resolve(config)
    run_id = run_id or new_run_id(cfg)
    ctx = build_context(cfg, emit, stop, run_id, options)
    samples_per_epoch = sum(len(s) for s in ctx.data.shares[1:])
    env = {**environment(ctx.device), "device_check": checking_devices,
           "engine_options": ctx.speed.options.to_dict(), "eval_split_seed": EVAL_SPLIT_SEED}

    def work(result: RunResult) -> None:
        with determinism.for_run(ctx.device, ctx.speed.options.deterministic):
            ctx.attack.prepare(ctx)
            ctx.defenses = client_defenses(ctx)
            _train(ctx, result)

    def finished(result: RunResult) -> RunFinished:
        return RunFinished(run_id, result.status, result.final, result.best, result.stopped_early, _attack_info(ctx))

    with contextlib.closing(ctx):
        started = RunStarted(run_id, cfg.to_dict(), env, cfg.epochs, samples_per_epoch,
                             config_resolved=resolved_fields(config))
        return run_lifecycle(started, emit, work, finished)


def _train(ctx: RunContext, result: RunResult) -> None:
    cfg, emit = ctx.cfg, ctx.emit
    best_val, since_best = math.inf, 0
    for epoch in range(cfg.epochs):
        lr = cfg.lr * lr_multiplier(cfg, epoch)
        ctx.attack.start_epoch(ctx, epoch)
        set_epoch_lr(ctx, lr)
        if isinstance(ctx.defenses, ClientDefenses):
            ctx.defenses.start_epoch(epoch + 1)
        started = time.perf_counter()
        stats = train_epoch(ctx)
        train_seconds = time.perf_counter() - started
        if isinstance(ctx.defenses, ClientDefenses):
            result.defenses = ctx.defenses.end_epoch()
            emit(DefenseScores(ctx.run_id, epoch + 1, result.defenses))
        val, test = evaluate_epoch(ctx)
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
        ctx.attack.end_epoch(ctx, epoch)
        if ctx.halted:  # the honest clients stopped at a flag: their local models, and the run ends
            assert isinstance(ctx.defenses, ClientDefenses)
            flags = {name: flag for name, flag in ctx.defenses.flagged_at.items() if flag is not None}
            models = local_models(ctx, ctx.defenses.honest, lambda model: evaluate_epoch(ctx, model))
            reaction = Reaction(ctx.run_id, epoch + 1, flags, models["local"], models["mean"])
            result.reaction = reaction.record()
            emit(reaction)
            break
        if cfg.patience and since_best >= cfg.patience:
            result.stopped_early = True
            break
    if cfg.save_weights:
        emit(WeightsReady(ctx.run_id, weights_state(ctx)))


def client_defenses(ctx: RunContext) -> ClientDefenses | None:
    """The config's detectors inside every honest client, prepared with what each client
    knows before training: its share, a copy of its network, the agreed architecture.
    They draw on their own seeded generators and leave the run's random stream alone."""
    cfg = ctx.cfg
    if not cfg.defenses:
        return None
    suite = ClientDefenses(cfg, next(ctx.client.parameters()))
    views = {}
    for k in suite.honest:
        x, y = ctx.client_batch(k + 1, torch.arange(len(ctx.data.shares[k + 1]), device=ctx.device))
        # Its initial weights are replaced at once; drawn from a generator of its own all the same.
        network, _ = build_split(cfg.model, cfg.cut, ctx.data.input_shape, ctx.data.num_classes,
                                 generator=torch.Generator(device="cpu").manual_seed(cfg.seed))
        network.load_state_dict(ctx.client.state_dict())
        views[k] = ClientView(k, x.contiguous(), y, network.to(ctx.device), cfg.model, cfg.cut,
                              ctx.data.input_shape, ctx.data.num_classes, cfg.batch_size, cfg.lr,
                              cfg.weight_decay, cfg.seed)
    suite.prepare(views)
    return suite


def evaluate_epoch(ctx: RunContext, model: torch.nn.Module | None = None) -> tuple[Evaluation, Evaluation]:
    """(validation, test with ASR) of the last client's weights with the server, or of
    `model` (a whole network on the run's device)."""
    joined, bs = model if model is not None else ctx.joined(), ctx.speed.options.eval_batch_size
    data, p = ctx.data, ctx.speed.prepared
    with ctx.autocast():
        if p is None:
            return evaluate(joined, data.val, data.norm, bs), evaluate(joined, data.test, data.norm, bs, ctx.trigger)
        fast = {"prepare": ctx.batch_input, "map_batches": ctx.speed.map_batches()}
        val = evaluate(joined, data.val, data.norm, bs, x=p.val_x, **fast)
        test = evaluate(joined, data.test, data.norm, bs, ctx.trigger, x=p.test_x, stamped=p.asr_x, **fast)
    return val, test


def weights_state(ctx: RunContext) -> dict[str, Any]:
    def cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    return {"client": cpu(ctx.client), "server": cpu(ctx.server)}


def _attack_info(ctx: RunContext) -> dict[str, Any]:
    try:
        return ctx.attack.summary()
    except AttributeError:  # cancelled before prepare() finished
        return {}
