"""docs/protocol.md section 1: the round-robin protocol and each client's own Adam state."""
from __future__ import annotations

import math

import pytest
import torch

from engine.config import resolve
from engine.training.protocol import train_epoch
from engine.training.runner import build_context
from tests.conftest import tiny_config


def record_steps(ctx):
    """Record (optimizer index, uint8 images of the batch) for every client step.

    The client's forward pre-hook sees the normalised batch; each client optimizer's
    step pre-hook says whose step it is. Independent of how train_epoch is written."""
    pending: list[torch.Tensor] = []
    steps: list[tuple[int, torch.Tensor]] = []

    def on_forward(module, args):
        pending.append(args[0].detach().clone())

    def on_step(k):
        def hook(opt, args, kwargs):
            steps.append((k, pending.pop()))
        return hook

    handles = [ctx.client.register_forward_pre_hook(on_forward)]
    handles += [opt.register_step_pre_hook(on_step(k)) for k, opt in enumerate(ctx.client_opts)]
    return steps, handles


def image_ids(share) -> dict[bytes, int]:
    return {bytes(row.flatten().tolist()): i for i, row in enumerate(share.x)}


@pytest.mark.parametrize("granularity", ["epoch", "batch"])
def test_each_client_optimizer_sees_exactly_its_share(granularity):
    cfg = resolve(tiny_config(clients=3, rr_granularity=granularity, train_limit=800, batch_size=64))
    ctx = build_context(cfg, lambda e: None, None)
    assert ctx.data.norm.mean == (0.0,)  # synthetic: uint8 = round(255 * x)
    steps, handles = record_steps(ctx)
    train_epoch(ctx)
    for h in handles:
        h.remove()

    clients = ctx.data.shares[1:]
    per_client = math.ceil(len(clients[0]) / cfg.batch_size)
    assert len(steps) == per_client * cfg.clients
    owners = [k for k, _ in steps]
    if granularity == "epoch":
        # Client 1 does its full pass, then client 2, then client 3.
        assert owners == sorted(owners) == [k for k in range(cfg.clients) for _ in range(per_client)]
    else:
        assert owners == [k for _ in range(per_client) for k in range(cfg.clients)]
    for k, share in enumerate(clients):
        ids = image_ids(share)
        seen = []
        for owner, x in steps:
            if owner != k:
                continue
            assert x.shape[0] <= cfg.batch_size
            rows = (x * 255).round().to(torch.uint8)
            seen += [ids[bytes(r.flatten().tolist())] for r in rows]  # KeyError: not its share
        assert sorted(seen) == list(range(len(share))), f"client {k + 1}: each image once per epoch"


def test_each_client_has_its_own_adam_state():
    cfg = resolve(tiny_config(clients=3, train_limit=800, batch_size=64))
    ctx = build_context(cfg, lambda e: None, None)
    opts = ctx.client_opts
    assert len(opts) == 3 and len({id(o) for o in opts}) == 3
    train_epoch(ctx)
    per_client = math.ceil(len(ctx.data.shares[1]) / cfg.batch_size)
    params = list(ctx.client.parameters())
    for opt in opts:
        for p in params:
            assert p in opt.state
            assert int(opt.state[p]["step"]) == per_client
    for p in params:
        assert len({id(o.state[p]) for o in opts}) == 3
        assert len({id(o.state[p]["exp_avg"]) for o in opts}) == 3
    # The server has one optimizer that stepped on every batch.
    server_p = next(ctx.server.parameters())
    assert int(ctx.server_opt.state[server_p]["step"]) == per_client * 3


def test_client_weights_pass_round_robin():
    """One client network is handed on: client k starts from what client k-1 left."""
    cfg = resolve(tiny_config(clients=2, train_limit=300, batch_size=64))
    ctx = build_context(cfg, lambda e: None, None)
    params = [set(map(id, g["params"])) for o in ctx.client_opts for g in o.param_groups]
    assert params[0] == params[1] == set(map(id, ctx.client.parameters()))


def test_train_epoch_reports_losses_and_samples():
    cfg = resolve(tiny_config(clients=2, train_limit=300, batch_size=64))
    ctx = build_context(cfg, lambda e: None, None)
    stats = train_epoch(ctx)
    assert stats.samples == sum(len(s) for s in ctx.data.shares[1:])
    assert math.isfinite(stats.loss) and stats.loss == pytest.approx(stats.loss_clean)
    assert stats.loss_malicious is None
