"""Vanilla round-robin split learning (docs/protocol.md section 1).

One client network is handed round-robin from client to client (so "client k starts
from the weights client k-1 left" holds by construction), while every client keeps its
own Adam state. The wire is explicit: the server only ever sees
``smashed.detach().requires_grad_()`` and the client only ever receives that leaf's
gradient.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from ..config import RunConfig
from ..data.datasets import Split, batch_order
from ..speed.backward import backward
from .context import ConcurrentHalf, RunContext, StepLoss


def wire_step(client: nn.Module, server_side: Callable[[torch.Tensor], StepLoss],
              client_opt: torch.optim.Optimizer, x: torch.Tensor,
              on_server_backward: Callable[[], None],
              received: Callable[[torch.Tensor, StepLoss], bool] | None = None) -> StepLoss:
    """One split-learning step on one client batch.

    client forward -> smashed -> (wire) -> server_side(wire) -> loss.backward() ->
    on_server_backward() (server and attack optimizers step) -> the wire's gradient goes
    back -> client backward and step. `received` (the client's detectors) sees the
    wire's gradient after the client's backward and may withhold the step (a fake batch)."""
    smashed = client(x)
    wire = smashed.detach().requires_grad_()
    result = server_side(wire)
    backward(result.total)
    on_server_backward()
    client_opt.zero_grad(set_to_none=True)
    backward(smashed, wire.grad)
    if received is None or received(wire.grad, result):
        client_opt.step()
    return result


def concurrent_step(ctx: RunContext, k: int, idx: torch.Tensor, half: ConcurrentHalf) -> tuple[StepLoss, int]:
    """wire_step for client `k` on rows `idx` with the attack's independent half running
    on the second stream meanwhile; the server steps once both halves have added their
    gradients. Returns the step's losses and its batch size."""
    assert ctx.speed.streams is not None
    ctx.server_opt.zero_grad(set_to_none=True)
    ctx.attack.zero_grad()
    other = ctx.speed.streams.submit(half.run)
    try:
        x, y = ctx.attack.client_batch(ctx, k + 1, idx)
        sent, received = ctx.watch(k, x, y)
        innocent = wire_step(ctx.client, lambda wire: half.innocent(wire, sent), ctx.client_opts[k], x,
                             lambda: None, received)
    finally:
        malicious = other.result()  # never leave the other half running into the next step
    ctx.server_opt.step()
    return StepLoss(half.total(innocent.clean, malicious), innocent.clean, malicious), int(y.shape[0])


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
    ctx.server.train(ctx.attack.server_trains())
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

    streams = ctx.speed.streams
    half = ctx.attack.concurrent_half(ctx) if streams is not None else None
    with streams.parallel() if half is not None else contextlib.nullcontext():  # type: ignore[union-attr]
        for k, idx in client_schedule(clients, cfg, ctx.generator, ctx.device):
            ctx.check_stop()
            if half is not None:
                result, size = concurrent_step(ctx, k, idx, half)
            else:
                x, y = ctx.attack.client_batch(ctx, k + 1, idx)
                sent, received = ctx.watch(k, x, y)
                with ctx.autocast():
                    result = wire_step(ctx.client, server_side(sent), ctx.client_opts[k], x, server_backward, received)
                size = int(y.shape[0])
            sums[0] += result.total.detach()
            sums[1] += result.clean
            if result.malicious is not None:
                sums[2] += result.malicious
                has_malicious = True
            batches += 1
            samples += size
            if ctx.halted:
                break
    means = (sums / max(batches, 1)).tolist()
    return EpochStats(means[0], means[1], means[2] if has_malicious else None, samples)
