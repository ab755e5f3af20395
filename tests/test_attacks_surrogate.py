"""Attack 1: the surrogate client (docs/protocol.md section 6)."""
import copy
import dataclasses
import threading

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


def one_protocol_step(ctx):
    """Run the protocol's first training step (train_epoch, cancelled at the next batch) and
    return what it used and sent: the innocent batch, the surrogate batch, and the
    gradients the server's and the surrogate's optimizers stepped with."""
    from engine.training.context import Cancelled
    from engine.training.protocol import train_epoch

    used, grads = {}, {}
    ctx.stop = threading.Event()
    draw = ctx.attack.poisoned.batch
    ctx.attack.poisoned.batch = lambda *a: used.setdefault("surrogate", draw(*a))
    client_batch = ctx.client_batch
    ctx.client_batch = lambda k, idx: used.setdefault("innocent", client_batch(k, idx))

    def recording(name, opt, params):
        step = opt.step

        def wrapped(*args, **kwargs):
            grads[name] = [p.grad.clone() for p in params]
            if len(grads) == 2:
                ctx.stop.set()  # the step is done once both have stepped
            return step(*args, **kwargs)
        opt.step = wrapped

    recording("server", ctx.server_opt, list(ctx.server.parameters()))
    recording("surrogate", ctx.attack.opt, list(ctx.attack.surrogate.parameters()))
    with pytest.raises(Cancelled):
        train_epoch(ctx)
    return used, grads


@pytest.mark.parametrize("model,server_batch,streams,halved", [
    ("lenet", False, False, False), ("lenet", True, False, False), ("lenet", False, True, False),
    ("lenet", True, True, True), ("stripnet", True, False, False)])
def test_server_and_surrogate_get_the_gradients_of_the_joined_loss(tiny, model, server_batch, streams, halved):
    """The gradients the server and the surrogate are updated with are those of
    L = (alpha * L_innocent + (1 - alpha) * L_surrogate) (* 0.5 when halved), taken by
    autograd on copies of the networks as they were before the step: with one server
    pass over both batches or two, on one CPU stream or two (the surrogate's half on its
    own thread, the server's gradient summed from both), and with BatchNorm and dropout
    in the server (two passes, dropout drawn in the same order)."""
    from engine.speed.options import EngineOptions

    cfg = resolve(tiny.replace(model=model, attack="surrogate", alpha=0.3, loss_halved=halved))
    before = torch.get_num_threads()
    torch.set_num_threads(2 if streams else 1)  # two streams need two threads when the run starts
    try:
        ctx = build_context(cfg, lambda e: None, None, options=EngineOptions(server_batch=server_batch, streams=streams))
        ctx.attack.prepare(ctx)
        assert (ctx.speed.streams is not None) == streams
        assert ctx.attack.one_pass == (server_batch and model == "lenet")
        client, server, surrogate = (copy.deepcopy(m) for m in (ctx.client, ctx.server, ctx.attack.surrogate))
        rng = torch.get_rng_state()
        used, grads = one_protocol_step(ctx)
    finally:
        ctx.close()
        torch.set_num_threads(before)
    (x, y), (xs, ys) = used["innocent"], used["surrogate"]
    torch.set_rng_state(rng)  # the server's dropout draws, innocent pass first
    innocent = F.cross_entropy(server(client(x)), y)
    malicious = F.cross_entropy(server(surrogate(xs)), ys)
    loss = (cfg.alpha * innocent + (1 - cfg.alpha) * malicious) * (0.5 if halved else 1.0)
    expected_server = torch.autograd.grad(loss, list(server.parameters()), retain_graph=True)
    expected_surrogate = torch.autograd.grad(loss, list(surrogate.parameters()))
    for got, want in zip(grads["server"], expected_server):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    for got, want in zip(grads["surrogate"], expected_surrogate):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
