"""backward(): Tensor.backward for the training step, without its per-call Python.

torch.autograd.backward validates and wraps its arguments (torch-function overrides,
GradientEdges, _make_grads, a copy of the contextvars for compiled autograd, logging
hooks) before it calls the C++ engine: Python time on every call (see docs/benchmark.md),
twice per stream and step, and on a CPU with two training streams (engine/speed/streams.py) Python time is
GIL time both streams wait for. Our calls are always one plain tensor with one gradient
(or a scalar loss), so this calls the engine the way torch.autograd.backward ends up
calling it. Whether this torch's engine takes that call is tried once, on a throwaway
graph (engine/speed/fallbacks.py); if it does not, or SLTUI_PUBLIC_API_ONLY is set,
Tensor.backward is used. CPU tensors only: on CUDA the autograd
engine runs device threads that torch.autograd.backward hands some context to (and
there is no second CPU stream to save GIL time for).
"""
from __future__ import annotations

import torch

from .fallbacks import may_use

_engine = getattr(getattr(torch.autograd, "Variable", None), "_execution_engine", None)


def _run(tensor: torch.Tensor, grad: torch.Tensor) -> None:
    _engine.run_backward((tensor,), (grad,), False, False, (), allow_unreachable=True, accumulate_grad=True)


def _engine_takes_direct_calls() -> bool:
    if _engine is None or not hasattr(_engine, "run_backward"):
        return False
    leaf = torch.zeros(2, requires_grad=True, device="cpu")
    try:
        _run((leaf * 3).sum(), torch.ones((), device="cpu"))
    except (TypeError, RuntimeError):
        return False
    return leaf.grad is not None and bool((leaf.grad == 3).all())


def backward(tensor: torch.Tensor, grad: torch.Tensor | None = None) -> None:
    """tensor.backward(grad): gradients accumulate into the leaves' .grad, the graph is freed."""
    if (type(tensor) is not torch.Tensor or not tensor.is_cpu or (grad is not None and type(grad) is not torch.Tensor)
            or not may_use("autograd-engine", _engine_takes_direct_calls)):
        tensor.backward(grad)
        return
    if grad is None:
        if tensor.numel() != 1:
            raise RuntimeError("grad can be implicitly created only for scalar outputs")
        grad = torch.ones_like(tensor, memory_format=torch.preserve_format)
    _run(tensor, grad)
