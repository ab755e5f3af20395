"""The numba-compiled loops (engine/speed/kernels.py) and the layers that use them
(engine/speed/fastops.py): the stock ops' numbers, the stock path wherever they do not apply."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.models import build_split
from engine.speed import fallbacks, kernels
from engine.speed.adam import LeanAdam
from engine.speed.fastops import CompiledMaxPool2x2, FastConvReLU, FastMaxPool2d, max_pool2x2_values, use_fast_layers
from tests.test_options import pool_inputs

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not importable here")
# The engine takes the loops only without SLTUI_PUBLIC_API_ONLY (which the second CI pass sets).
needs_usable = pytest.mark.skipif(not kernels.usable(), reason="SLTUI_PUBLIC_API_ONLY is set")


def nan_input() -> torch.Tensor:
    """NaNs where a diverged run has them: max_pool2d takes a NaN over any number (the
    last NaN of a window in scan order gets the gradient)."""
    x = torch.randn(2, 2, 4, 6, generator=torch.Generator().manual_seed(5))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = float("nan")  # two NaNs in one window
    x[0, 1, 1, 1] = float("nan")
    x[1, 0, 0, 2] = float("nan")
    x[1, 1, 2:4, 4:6] = float("nan")  # a whole window
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_pool_is_bit_identical_to_max_pool2d(dtype):
    for x in [*pool_inputs(), nan_input()]:
        x = x.to(dtype)
        assert kernels.pool_applies(x)
        ref_in, fast_in = x.clone().requires_grad_(), x.clone().requires_grad_()
        ref = F.max_pool2d(ref_in, 2)
        out = CompiledMaxPool2x2.apply(fast_in)
        torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True)
        g = torch.randn(ref.shape, dtype=dtype)
        (ref_grad,) = torch.autograd.grad(ref, ref_in, g)
        (fast_grad,) = torch.autograd.grad(out, fast_in, g)
        assert torch.equal(fast_grad, ref_grad)  # ties to the first maximum, as max_pool2d
        torch.testing.assert_close(max_pool2x2_values(x, compiled=True), ref.detach(), rtol=0, atol=0, equal_nan=True)


def test_compiled_pool_leaves_other_inputs_to_the_tensor_ops():
    x = torch.randn(2, 3, 8, 8)
    assert not kernels.pool_applies(x.contiguous(memory_format=torch.channels_last))
    assert not kernels.pool_applies(torch.randn(2, 3, 7, 8))
    assert not kernels.pool_applies(x.half())
    assert not kernels.pool_applies(x[:, :, :, ::2].repeat_interleave(2, 3).transpose(2, 3))
    empty = torch.zeros(0, 3, 8, 8, requires_grad=True)
    assert CompiledMaxPool2x2.apply(empty).shape == (0, 3, 4, 4)


def conv_and_fused(out_channels=6, k=5, bias=True):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, out_channels, k, bias=bias)
    fused = use_fast_layers(nn.Sequential(nn.Conv2d(1, out_channels, k, bias=bias), nn.ReLU()), compiled=True)
    fused.load_state_dict(nn.Sequential(conv, nn.ReLU()).state_dict())
    return nn.Sequential(conv, nn.ReLU()), fused


@needs_usable
def test_use_fast_layers_fuses_a_one_channel_conv_with_its_relu_keeping_the_state_dict():
    stock, fused = conv_and_fused()
    assert isinstance(fused[0], FastConvReLU) and isinstance(fused[1], nn.Identity)
    assert list(fused.state_dict()) == list(stock.state_dict()) == ["0.weight", "0.bias"]
    client = use_fast_layers(build_split("lenet", 1, (1, 28, 28), 10)[0], compiled=True)
    stage1 = next(iter(client.children()))
    assert isinstance(stage1[0], FastConvReLU) and isinstance(stage1[1], nn.Identity)
    # Not compiled, or not a 1-channel conv: untouched.
    plain = use_fast_layers(build_split("lenet", 1, (1, 28, 28), 10)[0])
    cifar = use_fast_layers(build_split("lenet", 1, (3, 32, 32), 10)[0], compiled=True)
    for net in (plain, cifar):
        assert not any(isinstance(m, FastConvReLU) for m in net.modules())
        assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 1


@pytest.mark.parametrize("shape", [(16, 1, 28, 28), (3, 1, 9, 11)])
def test_fused_conv_relu_matches_conv_then_relu(shape):
    stock, fused = conv_and_fused(k=5 if shape[2] > 9 else 3)
    x = torch.randn(shape)
    out, ref = fused(x), stock(x)
    assert (out >= 0).all()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)  # taps summed in another order
    g = torch.randn(ref.shape)
    ref_grads = torch.autograd.grad(ref, list(stock.parameters()), g)
    fast_grads = torch.autograd.grad(out, list(fused.parameters()), g)
    for a, b in zip(fast_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), stock(x), rtol=1e-5, atol=1e-6)


def test_fused_conv_relu_takes_the_stock_path_where_it_must():
    stock, fused = conv_and_fused()
    x = torch.randn(4, 1, 28, 28, requires_grad=True)  # e.g. a generator upstream
    out, ref = fused(x), stock(x)
    torch.testing.assert_close(out, ref)
    (gx,) = torch.autograd.grad(out.sum(), x)
    (gx_ref,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(gx, gx_ref)
    assert not kernels.conv_relu_applies(torch.randn(2, 1, 8, 8).double(), fused[0].weight, fused[0].bias)
    assert not kernels.conv_relu_applies(torch.randn(2, 1, 4, 4), fused[0].weight, fused[0].bias)  # 5x5 kernel
    stock_nb, fused_nb = conv_and_fused(bias=False)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(fused_nb(x), stock_nb(x))


def test_lean_adam_runs_step_hooks_once_per_step():
    torch.optim.Adam(nn.Linear(2, 2).parameters())  # a plain Adam wraps Adam.step in hooks
    net = nn.Linear(4, 3)
    opt = LeanAdam(net.parameters(), lr=1e-2)
    calls = []
    handle = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 4)).sum().backward()
        opt.step()
    assert calls == ["pre", "post"] * 3
    handle.remove()
    before = net.weight.detach().clone()
    net(torch.randn(5, 4)).sum().backward()
    opt.step()
    assert not torch.equal(before, net.weight)  # the unhooked path steps too
    assert opt.state[net.weight]["step"].item() == 4


def test_lean_adam_takes_the_stock_path_for_a_parameter_without_gradient():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    lean, stock = LeanAdam(a.parameters(), lr=1e-2), torch.optim.Adam(b.parameters(), lr=1e-2, fused=True)
    for step in range(4):
        x = torch.randn(5, 4)
        for net, opt in ((a, lean), (b, stock)):
            opt.zero_grad(set_to_none=True)
            (net(x).sum() if step != 2 else (x @ net.weight.t()).sum()).backward()  # step 2: no bias grad
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@needs_usable
def test_fast_max_pool_module_uses_the_compiled_loop_only_when_asked():
    pool = use_fast_layers(nn.Sequential(nn.MaxPool2d(2)), compiled=True)[0]
    assert isinstance(pool, FastMaxPool2d) and pool.compiled
    assert not use_fast_layers(nn.Sequential(nn.MaxPool2d(2)))[0].compiled


@pytest.mark.parametrize("direct", [True, False])
def test_backward_accumulates_like_tensor_backward(direct, monkeypatch):
    from engine.speed import backward as backward_module

    if direct:
        monkeypatch.delenv(fallbacks.ENV, raising=False)
        if not fallbacks.may_use("autograd-engine", backward_module._engine_takes_direct_calls):  # probed here
            pytest.skip("this torch's autograd engine does not take the direct call")
    else:
        monkeypatch.setenv(fallbacks.ENV, "1")  # the public path: Tensor.backward
    direct_calls = []
    run = backward_module._run
    monkeypatch.setattr(backward_module, "_run", lambda *args: direct_calls.append(1) or run(*args))
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 4)
    g = torch.randn(5, 3)
    backward_module.backward(a(x), g)
    b(x).backward(g)
    backward_module.backward(a(x).square().sum())  # a scalar loss, accumulating
    b(x).square().sum().backward()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p.grad, q.grad)
    assert len(direct_calls) == (2 if direct else 0)
    with pytest.raises(RuntimeError):
        backward_module.backward(a(x))  # a non-scalar needs its gradient
