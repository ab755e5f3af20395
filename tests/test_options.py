"""EngineOptions: every fast path computes what the reference path computes."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks.surrogate import PoisonedShare
from engine.config import resolve
from engine.data.trigger import stamp
from engine.models import build_split
from engine.speed import fallbacks, kernels
from engine.speed.adam import lean_available, make_adam
from engine.speed.fastops import FastMaxPool2d, MaxPool2x2, max_pool2x2_values, per_sample, use_fast_layers
from engine.speed.options import EngineOptions, resolve_options
from engine.training.metrics import evaluate
from engine.training.protocol import train_epoch
from engine.training.runner import build_context, evaluate_epoch, run
from tests.conftest import tiny_config

METRICS = ("train_loss", "train_loss_clean", "train_loss_malicious", "val_loss", "val_acc", "cda", "asr")


def pool_inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    relu = torch.relu(torch.randn(4, 3, 8, 10, generator=g))  # many all-zero windows: ties at 0
    flat = torch.full((2, 2, 6, 6), 0.25)  # every window a 4-way tie of a positive value
    mixed = torch.randint(0, 3, (3, 2, 12, 8), generator=g).float()  # ties of every kind
    mixed[0, 0, 0, :2] = 2.0
    mixed[0, 0, 1, :2] = 0.0  # top row tie
    mixed[0, 1, :2, 0] = 5.0
    mixed[0, 1, :2, 1] = 1.0  # left column tie
    return [relu, flat, mixed, torch.randn(2, 5, 24, 24, generator=g)]


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_max_pool_matches_max_pool2d_values_and_gradients(channels_last):
    for x in pool_inputs():
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ref_in = x.clone().requires_grad_()
        fast_in = x.clone().requires_grad_()
        g = torch.randn(x.shape[0], x.shape[1], x.shape[2] // 2, x.shape[3] // 2)
        ref = F.max_pool2d(ref_in, 2)
        out = MaxPool2x2.apply(fast_in)
        assert torch.equal(out, ref)
        (ref_grad,) = torch.autograd.grad(ref, ref_in, g)
        (fast_grad,) = torch.autograd.grad(out, fast_in, g)
        # Same routing, ties included (first maximum in scan order), so bit-identical.
        assert torch.equal(fast_grad, ref_grad)
        assert torch.equal(max_pool2x2_values(x), ref.detach())


def test_fast_elu_matches_elu():
    from engine.speed.fastops import FastELU

    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 8, 6, 6, generator=g) * 3
    x[0, 0, 0, :3] = torch.tensor([0.0, -1e-6, 1e-6])
    for alpha in (1.0, 0.5):
        ref_in, fast_in = x.clone().requires_grad_(), x.clone().requires_grad_()
        ref, out = F.elu(ref_in, alpha), FastELU(alpha)(fast_in)
        # exp(x) - 1 instead of expm1(x): within one float32 ulp of 1.0, absolute.
        torch.testing.assert_close(out, ref, rtol=0, atol=1.2e-7)
        grad = torch.randn(x.shape, generator=g)
        (ref_grad,) = torch.autograd.grad(ref, ref_in, grad)
        (fast_grad,) = torch.autograd.grad(out, fast_in, grad)
        if fallbacks.public_api_only():  # the derivative in public tensor ops
            torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(fast_grad, ref_grad)  # aten's own elu_backward
        with torch.inference_mode():
            torch.testing.assert_close(FastELU(alpha)(x), F.elu(x, alpha), rtol=0, atol=1.2e-7)


def test_fast_max_pool_module_falls_back_where_it_does_not_apply():
    odd = torch.randn(2, 3, 7, 7, requires_grad=True)
    pool = FastMaxPool2d(2)
    assert torch.equal(pool(odd), F.max_pool2d(odd, 2))
    three = FastMaxPool2d(3, stride=1)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(three(x), F.max_pool2d(x, 3, 1))
    with torch.inference_mode():
        assert torch.equal(pool(x), F.max_pool2d(x, 2))


@pytest.mark.parametrize("model", ["lenet", "stripnet", "resnet9"])
def test_fast_layers_keep_weights_outputs_and_gradients(model):
    shape = (3, 32, 32) if model == "resnet9" else (1, 28, 28)
    torch.manual_seed(0)
    client, server = build_split(model, 2, shape, 10)
    net = nn.Sequential(client, server).eval()  # eval: no dropout randomness
    fast = use_fast_layers(nn.Sequential(*build_split(model, 2, shape, 10))).eval()
    fast.load_state_dict(net.state_dict())
    assert list(fast.state_dict()) == list(net.state_dict())
    assert any(isinstance(m, FastMaxPool2d) for m in fast.modules())
    x = torch.randn(4, *shape)
    torch.testing.assert_close(fast(x), net(x))
    net(x).square().sum().backward()
    fast(x).square().sum().backward()
    for (name, p), q in zip(net.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_per_sample_servers():
    assert per_sample(build_split("lenet", 1, (1, 28, 28), 10)[1])
    assert not per_sample(build_split("stripnet", 1, (1, 28, 28), 10)[1])  # BatchNorm, dropout
    assert not per_sample(build_split("resnet9", 1, (3, 32, 32), 10)[1])


@pytest.mark.parametrize("impl", ["foreach", "fused", "lean"])
def test_adam_implementations_give_the_same_update(impl):
    cfg = resolve(tiny_config())
    torch.manual_seed(0)
    a = nn.Linear(20, 5)
    b = nn.Linear(20, 5)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = make_adam(a.parameters(), cfg, "loop"), make_adam(b.parameters(), cfg, impl)
    for _ in range(5):
        x = torch.randn(8, 20)
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)


def test_prestamped_share_gives_the_same_batches(tiny):
    cfg = resolve(tiny.replace(attack="surrogate"))
    ctx = build_context(cfg, lambda e: None, None)
    share = ctx.data.shares[0]
    plain = PoisonedShare(share, 0.5, torch.Generator().manual_seed(3), 64)
    fast = PoisonedShare(share, 0.5, torch.Generator().manual_seed(3), 64)
    fast.prestamp(ctx.data.norm.apply(share.x), ctx.trigger)
    for _ in range(2 * (len(share) // 64 + 1)):  # two passes, fresh orders
        xa, ya = plain.batch(ctx.data.norm, ctx.trigger)
        xb, yb = fast.batch(ctx.data.norm, ctx.trigger)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_prepared_data_and_fast_evaluation_match_the_reference(tiny):
    cfg = resolve(tiny.replace(eval_batch_size=64))
    ctx = build_context(cfg, lambda e: None, None)
    data, p, t = ctx.data, ctx.speed.prepared, ctx.trigger
    assert p is not None
    assert torch.equal(p.test_x, data.norm.apply(data.test.x))
    keep = data.test.y != t.target
    assert torch.equal(p.asr_x, stamp(data.norm.apply(data.test.x[keep]), t))
    joined = ctx.joined()
    ref_val = evaluate(joined, data.val, data.norm, 64)
    ref_test = evaluate(joined, data.test, data.norm, 64, t)
    val, test = evaluate_epoch(ctx)
    assert val.acc == ref_val.acc and test.acc == ref_test.acc and test.asr == ref_test.asr
    assert val.loss == pytest.approx(ref_val.loss, rel=1e-5)
    assert test.loss == pytest.approx(ref_test.loss, rel=1e-5)


def test_one_server_pass_equals_two_passes(tiny):
    """The surrogate attack's concatenated server pass: same losses and same gradients
    (wire, server, surrogate) as the two separate passes, up to float rounding."""
    cfg = resolve(tiny.replace(attack="surrogate", alpha=0.3))
    grads = {}
    for one_pass in (False, True):
        ctx = build_context(cfg, lambda e: None, None, options=EngineOptions(server_batch=one_pass))
        ctx.attack.prepare(ctx)
        assert ctx.attack.one_pass == one_pass
        x, y = ctx.client_batch(1, torch.arange(32))
        wire = ctx.client(x).detach().requires_grad_()
        loss = ctx.attack.server_loss(ctx, wire, y)
        loss.total.backward()
        grads[one_pass] = (loss.total.detach(), loss.clean, loss.malicious, wire.grad,
                           [p.grad for p in ctx.server.parameters()],
                           [p.grad for p in ctx.attack.surrogate.parameters()])
    a, b = grads[False], grads[True]
    for u, v in zip(a[:4], b[:4]):
        torch.testing.assert_close(v, u, rtol=1e-5, atol=1e-7)
    for us, vs in zip(a[4:], b[4:]):
        for u, v in zip(us, vs):
            torch.testing.assert_close(v, u, rtol=1e-4, atol=1e-6)


def test_batch_coupled_servers_keep_two_passes(tiny):
    cfg = resolve(tiny.replace(attack="surrogate", model="stripnet"))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.attack.prepare(ctx)
    assert ctx.attack.one_pass is False


def metrics(result):
    return [{k: e[k] for k in METRICS} for e in result.epochs]


@pytest.mark.parametrize("attack", ["none", "surrogate"])
def test_default_options_same_metrics_twice(attack):
    cfg = tiny_config(attack=attack, alpha=0.5)
    assert metrics(run(cfg)) == metrics(run(cfg))


def _networks_and_optimizers(ctx):
    """The run's networks and optimizers in a fixed order (the client's optimizers, one
    per client, all over the one client network)."""
    nets, opts = [ctx.client, ctx.server], [*ctx.client_opts, ctx.server_opt]
    if hasattr(ctx.attack, "surrogate"):
        nets.append(ctx.attack.surrogate)
        opts.append(ctx.attack.opt)
    return nets, opts


def _snapshot(ctx):
    nets, opts = _networks_and_optimizers(ctx)
    return ([copy.deepcopy(n.state_dict()) for n in nets],
            [[{k: v.clone() for k, v in o.state[p].items()} if p in o.state else None
              for p in o.param_groups[0]["params"]] for o in opts],
            torch.get_rng_state())


def _restore(ctx, snapshot):
    """Put a snapshot of another engine's run into `ctx`: weights, Adam moments and steps
    (in place, so the optimizers' own lists of their state stay valid) and the global RNG
    (dropout)."""
    weights, states, rng = snapshot
    nets, opts = _networks_and_optimizers(ctx)
    for net, sd in zip(nets, weights):
        net.load_state_dict(sd)
    for opt, per_param in zip(opts, states):
        for p, state in zip(opt.param_groups[0]["params"], per_param):
            if state is None:
                continue
            if p in opt.state and opt.state[p]:
                for k, v in state.items():
                    opt.state[p][k].copy_(v)
            else:
                opt.state[p] = {k: v.clone() for k, v in state.items()}
    torch.set_rng_state(rng)


def per_step(cfg, options, monkeypatch, start_states=None, epochs=2):
    """The losses (total, clean, malicious) of every training step of `epochs` epochs,
    the run's state before each step and its weights after each step. With `start_states` (another engine's states
    before each step), every step starts from that state instead of from this engine's
    previous step, so the steps are compared one at a time."""
    from engine.training import protocol

    ctx = build_context(resolve(cfg), lambda e: None, None, options=options)
    ctx.attack.prepare(ctx)
    losses, states, ends = [], [], []
    step = protocol.wire_step

    def recording(*args, **kwargs):
        if losses:
            ends.append(_snapshot(ctx)[0])
        if start_states is not None:
            _restore(ctx, start_states[len(losses)])
        states.append(_snapshot(ctx))
        result = step(*args, **kwargs)
        losses.append([None if t is None else float(t.detach()) for t in (result.total, result.clean, result.malicious)])
        return result

    monkeypatch.setattr(protocol, "wire_step", recording)
    for _ in range(epochs):
        train_epoch(ctx)
    monkeypatch.undo()
    ends.append(_snapshot(ctx)[0])
    return losses, states, ends, ctx


def assert_same_losses(fast, ref):
    assert len(fast) == len(ref) > 10
    for i, (a, b) in enumerate(zip(fast, ref)):
        for x, y in zip(a, b):
            assert (x is None) == (y is None)
            if x is not None:
                assert x == pytest.approx(y, rel=1e-5), f"step {i}: {a} vs {b}"


@pytest.mark.parametrize("attack", ["none", "surrogate"])
def test_default_options_give_the_reference_engines_losses_step_by_step(attack, monkeypatch):
    """LeNet, every optimisation on (fast layers, numba kernels, prepared data, LeanAdam,
    one server pass) vs every optimisation off, at one thread: the same loss at every
    step of two epochs, up to float rounding. Both engines draw the same batches: the
    batch order and the surrogate's share come from generators seeded by the config, not
    from the options."""
    cfg = tiny_config(attack=attack, alpha=0.5)
    fast = per_step(cfg, EngineOptions(), monkeypatch)[0]
    ref = per_step(cfg, EngineOptions.reference(), monkeypatch)[0]
    assert_same_losses(fast, ref)


@pytest.mark.parametrize("attack", ["none", "surrogate"])
def test_stripnet_fast_steps_match_the_reference_steps(attack, monkeypatch):
    """StripNet, every optimisation on (channels_last, fast ELU and pooling, LeanAdam) vs
    off, one step at a time: each step of the fast engine starts from the reference
    engine's state before that step (weights, Adam state, RNG for dropout) and must give
    its losses, and end in its state after the step, up to float rounding. Free-running,
    the two would drift apart: Adam's first updates are lr * sign(gradient), so a gradient
    element that rounds to the other side of zero moves its weight by 2 * lr, and
    BatchNorm amplifies such differences; one step at a time they cannot compound."""
    cfg = tiny_config(model="stripnet", attack=attack, alpha=0.5)
    ref, ref_states, ref_ends, _ = per_step(cfg, EngineOptions.reference(), monkeypatch)
    fast, _, fast_ends, ctx = per_step(cfg, EngineOptions(), monkeypatch, start_states=ref_states)
    assert ctx.speed.options.channels_last and ctx.speed.options.fast_pool
    assert_same_losses(fast, ref)
    # The weights each fast step ends with against the reference step's: all within
    # rounding, bar elements whose gradient rounded to the other sign or off zero (moved
    # by up to 2 * lr: Adam divides by the gradient's own scale). Seen: 0.54% of all
    # steps' elements with the surrogate attack, nearly all at its second step (Adam's
    # second update, 19,352 of 300,080 elements beyond rtol 1e-4, each within 2 * lr);
    # the bound is 1% of all elements.
    flipped = total = 0
    for i, (after, ref_after) in enumerate(zip(fast_ends, ref_ends)):
        for ours, theirs in zip(after, ref_after):
            for name in theirs:
                a, b = ours[name].double(), theirs[name].double()
                close = torch.isclose(a, b, rtol=1e-4, atol=1e-6)
                assert ((a - b).abs()[~close] <= 2.02 * cfg.lr).all(), (i, name)
                flipped += int((~close).sum())
                total += close.numel()
    assert flipped <= total // 100


def test_resolved_options_are_recorded_and_auto_resolves_per_device():
    cpu = resolve_options(EngineOptions(), torch.device("cpu"), "resnet9", 1024)
    lean = "lean" if lean_available() else "fused"  # fused: SLTUI_PUBLIC_API_ONLY (engine/speed/fallbacks.py)
    assert cpu.fast_pool and cpu.channels_last and cpu.adam == lean and cpu.eval_batch_size == 1024
    assert cpu.streams and cpu.kernels == kernels.usable()
    assert not resolve_options(EngineOptions(), torch.device("cpu"), "lenet", 1024).channels_last
    cuda = resolve_options(EngineOptions(), torch.device("cuda"), "resnet9", 1024)
    assert not cuda.fast_pool and cuda.channels_last and not cuda.streams and not cuda.kernels
    assert cuda.adam == "fused"
    ref = resolve_options(EngineOptions.reference(), torch.device("cpu"), "lenet", 1024)
    assert not ref.fast_pool and ref.adam == "loop" and ref.eval_batch_size == 1024 and not ref.prenormalize
    assert not ref.kernels and not ref.streams
    events = []
    run(tiny_config(epochs=1), events.append, options=EngineOptions(fast_pool=False))
    assert events[0].env["engine_options"]["fast_pool"] is False
    assert events[0].env["engine_options"]["eval_batch_size"] == 4096  # LeNet 28x28: 13.5 KiB/sample
    # The suite runs with one intra-op thread: no second stream, and the record says so.
    assert events[0].env["engine_options"]["streams"] is False


def test_auto_eval_batch_keeps_activations_small():
    from engine.speed.options import auto_eval_batch

    lenet = nn.Sequential(*build_split("lenet", 1, (1, 28, 28), 10))
    stripnet = nn.Sequential(*build_split("stripnet", 1, (1, 28, 28), 10))
    resnet9 = nn.Sequential(*build_split("resnet9", 1, (3, 32, 32), 10))
    cpu = torch.device("cpu")
    assert auto_eval_batch(lenet, (1, 28, 28), cpu) == 4096
    assert auto_eval_batch(stripnet, (1, 28, 28), cpu) == 512
    assert auto_eval_batch(resnet9, (3, 32, 32), cpu) == 128  # 128x32x32 floats per sample
    assert auto_eval_batch(resnet9, (3, 32, 32), torch.device("cuda")) == 2048 if torch.cuda.is_available() else True


def test_auto_threads_chooses_and_records_a_thread_count(tiny):
    before = torch.get_num_threads()
    try:
        ctx = build_context(resolve(tiny), lambda e: None, None, options=EngineOptions(threads="auto"))
        assert ctx.speed.options.threads in (1, 2) and torch.get_num_threads() == ctx.speed.options.threads
        train_epoch(ctx)
    finally:
        torch.set_num_threads(before)


def test_channels_last_option_trains_the_same(tiny):
    cfg = tiny_config(model="stripnet", epochs=1)
    a = run(cfg, options=EngineOptions(channels_last=True))
    b = run(cfg, options=EngineOptions(channels_last=False))
    for x, y in zip(metrics(a), metrics(b)):
        for k in ("train_loss", "val_loss"):
            assert x[k] == pytest.approx(y[k], rel=1e-3), k
