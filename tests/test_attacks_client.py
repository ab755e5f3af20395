"""Attack 9b: a malicious client (docs/protocol.md section 9b)."""
from __future__ import annotations

import pytest
import torch

from engine.config import resolve
from engine.training.runner import build_context, run
from tests.conftest import tiny_config


@pytest.mark.parametrize("malicious,ratio", [(0, 0.5), (2, 0.25)])
def test_only_the_malicious_clients_share_is_poisoned_exactly(malicious, ratio):
    cfg = resolve(tiny_config(attack="client", clients=3, malicious_client=malicious, poison_ratio=ratio))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.attack.prepare(ctx)
    stored = [s.x.clone() for s in ctx.data.shares]
    prepared = [x.clone() for x in ctx.speed.prepared.shares_x] if ctx.speed.prepared is not None else None
    for share in range(1, cfg.clients + 1):
        idx = torch.arange(len(ctx.data.shares[share]))
        x, y = ctx.attack.client_batch(ctx, share, idx)
        clean_x, clean_y = ctx.client_batch(share, idx)
        changed = (x != clean_x).flatten(1).any(1)
        if share == malicious + 1:
            assert int(changed.sum()) == round(ratio * len(idx))
            assert (y[changed] == cfg.target).all() and torch.equal(y[~changed], clean_y[~changed])
        else:
            assert not changed.any() and torch.equal(y, clean_y)
    # The stored shares (raw and prepared) are left untouched: poisoned rows are copies.
    assert all(torch.equal(s.x, before) for s, before in zip(ctx.data.shares, stored))
    if prepared is not None:
        assert all(torch.equal(x, before) for x, before in zip(ctx.speed.prepared.shares_x, prepared))


def test_client_attack_runs_and_reports_its_client():
    result = run(tiny_config(attack="client", clients=2, malicious_client=1))
    assert result.status == "completed"
