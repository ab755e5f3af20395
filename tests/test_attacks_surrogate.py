"""Attack 1: the surrogate client (docs/protocol.md section 6)."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from engine.attacks.surrogate import PoisonedShare
from engine.config import resolve
from engine.training.protocol import wire_step
from engine.training.runner import build_context, run


def metrics_without_timing(result):
    return [{k: v for k, v in e.items() if k not in ("seconds", "samples_per_s")} for e in result.epochs]


@pytest.mark.parametrize("model", ["lenet", "stripnet"])
def test_alpha_one_is_identical_to_no_attack(tiny, model):
    base = tiny.replace(model=model, epochs=2, clients=2)
    clean = run(base.replace(attack="none"))
    attacked = run(base.replace(attack="surrogate", alpha=1.0))
    assert clean.status == attacked.status == "completed"
    clean_m, attacked_m = metrics_without_timing(clean), metrics_without_timing(attacked)
    for a, b in zip(clean_m, attacked_m):
        b.pop("train_loss_malicious"), a.pop("train_loss_malicious")
        assert a == b


def test_surrogate_changes_training_below_alpha_one(tiny):
    clean = run(tiny.replace(attack="none"))
    attacked = run(tiny.replace(attack="surrogate", alpha=0.5))
    assert metrics_without_timing(clean)[0]["val_loss"] != metrics_without_timing(attacked)[0]["val_loss"]
    assert attacked.epochs[0]["train_loss_malicious"] is not None


@pytest.mark.parametrize("halved", [False, True])
def test_innocent_client_only_gets_gradient_of_its_own_smashed_data(tiny, halved):
    cfg = resolve(tiny.replace(attack="surrogate", alpha=0.2, loss_halved=halved))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.attack.prepare(ctx)
    share = ctx.data.shares[1]
    x, y = ctx.data.norm.apply(share.x[:32]), share.y[:32]

    received = {}
    smashed_ref = ctx.client(x)  # same weights: what the client will compute
    wire_ref = smashed_ref.detach().requires_grad_()
    expected = torch.autograd.grad(cfg.alpha * F.cross_entropy(ctx.server(wire_ref), y) * (0.5 if halved else 1.0), wire_ref)[0]

    # Record the gradient arriving at the client's output during the protocol's step.
    def record(module, inputs, output):
        output.register_hook(lambda g: received.__setitem__("grad", g.clone()))  # returns None: output kept

    hook = ctx.client.register_forward_hook(record)

    def server_side(wire):
        ctx.server_opt.zero_grad()
        ctx.attack.zero_grad()
        return ctx.attack.server_loss(ctx, wire, y)

    wire_step(ctx.client, server_side, ctx.client_opts[0], x, lambda: None)
    hook.remove()
    # The gradient handed to the client is dL/d(its own smashed data): the surrogate's
    # poisoned batch contributes nothing to it, only alpha scales it.
    assert received["grad"].shape == smashed_ref.shape
    torch.testing.assert_close(received["grad"], expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 1.0])
def test_surrogate_share_has_exactly_poison_ratio_triggered_and_relabelled(tiny, ratio):
    cfg = resolve(tiny.replace(attack="surrogate", poison_ratio=ratio))
    ctx = build_context(cfg, lambda e: None, None)
    share = ctx.data.shares[0]
    poisoned = PoisonedShare(share, ratio, torch.Generator().manual_seed(1), batch_size=64)
    assert int(poisoned.mask.sum()) == round(ratio * len(share))
    t = ctx.trigger
    stamped_rows = relabelled = seen = 0
    while seen < len(share):
        idx = poisoned.next_indices()
        poisoned._order.insert(0, idx)
        x, y = poisoned.batch(ctx.data.norm, t)
        clean_x = ctx.data.norm.apply(share.x[idx])
        patch = x[:, :, t.row:t.row + t.size, t.col:t.col + t.size]
        has_patch = (patch == t.patch).flatten(1).all(1)
        changed_outside = (x != clean_x).clone()
        changed_outside[:, :, t.row:t.row + t.size, t.col:t.col + t.size] = False
        assert not changed_outside.any()
        assert torch.equal(has_patch, poisoned.mask[idx])
        stamped_rows += int(has_patch.sum())
        relabelled += int((y[poisoned.mask[idx]] == t.target).sum())
        assert torch.equal(y[~poisoned.mask[idx]], share.y[idx][~poisoned.mask[idx]])
        seen += len(idx)
    assert stamped_rows == relabelled == round(ratio * len(share))
