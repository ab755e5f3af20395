"""Vanilla round-robin split learning (SPEC section 1).

One client network is handed round-robin from client to client (so "client k starts
from the weights client k-1 left" holds by construction), while every client keeps its
own Adam state. The wire is explicit: the server only ever sees
``smashed.detach().requires_grad_()`` and the client only ever receives that leaf's
gradient.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from ..speed.adam import LeanAdam
from ..attacks.base import Attack, ConcurrentHalf, StepLoss
from ..speed.backward import backward
from ..config import RunConfig
from ..data.datasets import ExperimentData, Split, batch_order
from ..events import Event
from ..speed.fastops import use_fast_layers
from ..speed.options import EngineOptions, ResolvedOptions, resolve_options
from ..data.prepared import PreparedData
from ..speed.streams import CpuStreams
from ..data.trigger import Trigger


class Cancelled(Exception):
    """The stop event was set: the run ends at the next batch boundary."""


def make_adam(params, cfg: RunConfig, impl: str = "loop") -> torch.optim.Adam:
    """Adam(lr, weight_decay) of the config. `impl` (EngineOptions.adam): "loop" is torch's
    per-parameter for-loop, "foreach" and "fused" the multi-tensor and fused kernels,
    "lean" the fused kernel called directly (engine/speed/adam.py): the same update up to float
    rounding ("fused" and "lean" bit-identical)."""
    if impl == "lean":
        return LeanAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    kwargs = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


@dataclass
class RunContext:
    """Everything one run's training steps need."""
    cfg: RunConfig
    data: ExperimentData
    trigger: Trigger
    device: torch.device
    client: nn.Module
    server: nn.Module
    client_opts: list[torch.optim.Optimizer]
    server_opt: torch.optim.Optimizer
    attack: Attack
    generator: torch.Generator
    run_id: str = ""
    emit: Callable[[Event], None] = lambda e: None
    stop: threading.Event | None = None
    extra: dict = field(default_factory=dict)
    options: ResolvedOptions = field(
        default_factory=lambda: resolve_options(EngineOptions.reference(), torch.device("cpu"), "", 1024))
    prepared: PreparedData | None = None
    # Two CPU streams (EngineOptions.streams) for the attack's concurrent half and for
    # evaluation; None: one stream.
    streams: CpuStreams | None = None

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Cancelled()

    def close(self) -> None:
        """Stop the second stream's thread (the context stays usable, on one stream)."""
        if self.streams is not None:
            self.streams.close()
            self.streams = None

    def joined(self) -> nn.Module:
        return nn.Sequential(self.client, self.server)

    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move a freshly built network to the device the way the options say (fast
        layers, memory format, compile). The attack uses it for its own networks."""
        if self.options.fast_pool:
            use_fast_layers(module, compiled=self.options.kernels)
        module.to(self.device)
        if self.options.channels_last:
            module.to(memory_format=torch.channels_last)
        if self.options.compile:
            module.compile()
        return module

    def make_adam(self, params) -> torch.optim.Adam:
        return make_adam(params, self.cfg, self.options.adam)

    def batch_input(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch in the memory format the options ask for."""
        return x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x

    def autocast(self):
        if not self.options.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def client_batch(self, share: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised images, labels) of rows `idx` of share `share` (0 = attacker)."""
        split = self.data.shares[share]
        if self.prepared is not None:
            x = self.prepared.shares_x[share][idx]
        else:
            x = self.data.norm.apply(split.x[idx])
        return self.batch_input(x), split.y[idx]


def wire_step(client: nn.Module, server_side: Callable[[torch.Tensor], StepLoss],
              client_opt: torch.optim.Optimizer, x: torch.Tensor,
              on_server_backward: Callable[[], None]) -> StepLoss:
    """One split-learning step on one client batch.

    client forward -> smashed -> (wire) -> server_side(wire) -> loss.backward() ->
    on_server_backward() (server and attack optimizers step) -> the wire's gradient goes
    back -> client backward and step."""
    smashed = client(x)
    wire = smashed.detach().requires_grad_()
    result = server_side(wire)
    backward(result.total)
    on_server_backward()
    client_opt.zero_grad(set_to_none=True)
    backward(smashed, wire.grad)
    client_opt.step()
    return result


def concurrent_step(ctx: RunContext, k: int, idx: torch.Tensor, half: ConcurrentHalf) -> tuple[StepLoss, int]:
    """wire_step for client `k` on rows `idx` with the attack's independent half running
    on the second stream meanwhile; the server steps once both halves have added their
    gradients. Returns the step's losses and its batch size."""
    assert ctx.streams is not None
    ctx.server_opt.zero_grad(set_to_none=True)
    ctx.attack.zero_grad()
    other = ctx.streams.submit(half.run)
    try:
        x, y = ctx.client_batch(k + 1, idx)
        smashed = ctx.client(x)
        wire = smashed.detach().requires_grad_()
        loss, clean = half.innocent(wire, y)
        backward(loss)
        client_opt = ctx.client_opts[k]
        client_opt.zero_grad(set_to_none=True)
        backward(smashed, wire.grad)
        client_opt.step()
    finally:
        malicious = other.result()  # never leave the other half running into the next step
    ctx.server_opt.step()
    return StepLoss(half.total(clean, malicious), clean, malicious), int(y.shape[0])



@dataclass
class EpochStats:
    loss: float
    loss_clean: float
    loss_malicious: float | None
    samples: int


def client_schedule(shares: list[Split], cfg: RunConfig, generator: torch.Generator,
                    device: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
    """(client index, batch indices) in round-robin order for one epoch.

    `epoch`: client 1 does a full pass, then client 2, ...; `batch`: one batch each in turn."""
    orders = [batch_order(len(s), cfg.batch_size, generator, device) for s in shares]
    if cfg.rr_granularity == "epoch":
        for k, order in enumerate(orders):
            for idx in order:
                yield k, idx
    else:
        for i in range(max(len(o) for o in orders)):
            for k, order in enumerate(orders):
                if i < len(order):
                    yield k, order[i]


def train_epoch(ctx: RunContext) -> EpochStats:
    """One epoch of round-robin split learning with the attack's server-side hooks."""
    cfg, data = ctx.cfg, ctx.data
    clients = data.shares[1:]
    ctx.client.train()
    ctx.server.train()
    sums = torch.zeros(3, device=ctx.device)
    batches, samples, has_malicious = 0, 0, False

    def server_side(labels: torch.Tensor):
        def forward(wire: torch.Tensor):
            ctx.server_opt.zero_grad(set_to_none=True)
            ctx.attack.zero_grad()
            return ctx.attack.server_loss(ctx, wire, labels)
        return forward

    def server_backward() -> None:
        ctx.server_opt.step()
        ctx.attack.step()

    half = ctx.attack.concurrent_half(ctx) if ctx.streams is not None else None
    with ctx.streams.parallel() if half is not None else contextlib.nullcontext():  # type: ignore[union-attr]
        for k, idx in client_schedule(clients, cfg, ctx.generator, ctx.device):
            ctx.check_stop()
            if half is not None:
                result, size = concurrent_step(ctx, k, idx, half)
            else:
                x, y = ctx.client_batch(k + 1, idx)
                with ctx.autocast():
                    result = wire_step(ctx.client, server_side(y), ctx.client_opts[k], x, server_backward)
                size = int(y.shape[0])
            sums[0] += result.total.detach()
            sums[1] += result.clean
            if result.malicious is not None:
                sums[2] += result.malicious
                has_malicious = True
            batches += 1
            samples += size
    means = (sums / max(batches, 1)).tolist()
    return EpochStats(means[0], means[1], means[2] if has_malicious else None, samples)
