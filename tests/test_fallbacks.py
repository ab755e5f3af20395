"""SLTUI_PUBLIC_API_ONLY: every fast path that uses a torch internal or numba has a public
fallback, the switch forces them all, and the fallbacks give the private paths' numbers."""
from __future__ import annotations

import pytest
import torch

from engine.speed import adam, fallbacks, fastops, kernels
from engine.speed.options import EngineOptions, resolve_options
from engine.training.runner import run
from tests.conftest import tiny_config

METRICS = ("train_loss", "train_loss_clean", "train_loss_malicious", "val_loss", "val_acc", "cda", "asr")


def test_the_switch_forces_every_fallback(monkeypatch):
    monkeypatch.setenv(fallbacks.ENV, "1")
    assert not fallbacks.may_use("anything", lambda: True)
    assert not kernels.usable() and not adam.lean_available()
    resolved = resolve_options(EngineOptions(), torch.device("cpu"), "lenet")
    assert resolved.adam == "fused" and not resolved.kernels and resolved.fast_pool
    monkeypatch.setenv(fallbacks.ENV, "0")
    assert fallbacks.may_use("anything else", lambda: True)


def test_a_failing_probe_means_the_fallback(monkeypatch):
    monkeypatch.delenv(fallbacks.ENV, raising=False)
    assert not fallbacks.may_use("probe that raises", lambda: 1 / 0)
    assert not fallbacks.may_use("probe that says no", lambda: False)


def test_public_elu_backward_matches_atens():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 6, 6, generator=g) * 3
    grad = torch.randn(x.shape, generator=g)
    for alpha in (1.0, 0.5):
        aten = torch.ops.aten.elu_backward.default(grad, alpha, 1, 1, False, x)
        torch.testing.assert_close(fastops.elu_backward_public(grad, alpha, x), aten, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("model,attack", [("lenet", "surrogate"), ("stripnet", "none")])
def test_public_fallbacks_train_like_the_private_paths(model, attack, monkeypatch):
    """The default options with and without the switch (LeanAdam or torch's fused Adam,
    the direct autograd call or Tensor.backward, aten's elu_backward or its formula,
    numba or torch ops): one epoch, the same metrics up to float rounding; the run file
    records which."""
    if not (adam.lean_available() and kernels.usable()):
        pytest.skip("the private paths are off here already")
    cfg = tiny_config(model=model, attack=attack, alpha=0.5, epochs=1)
    results = {}
    for public in (False, True):
        monkeypatch.setenv(fallbacks.ENV, "1" if public else "0")
        events = []
        result = run(cfg, events.append)
        assert events[0].env["public_api_only"] is public
        assert events[0].env["engine_options"]["adam"] == ("fused" if public else "lean")
        results[public] = result.epochs[0]
    for k in METRICS:
        a, b = results[False][k], results[True][k]
        if a is None:
            assert b is None
        elif k in ("val_acc", "cda", "asr"):
            assert a == pytest.approx(b, abs=1.0), k  # 200 images: at most two flip
        else:
            assert a == pytest.approx(b, rel=1e-3), k
