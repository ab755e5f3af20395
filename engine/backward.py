"""backward(): Tensor.backward for the training step, without its per-call Python.

torch.autograd.backward validates and wraps its arguments (torch-function overrides,
GradientEdges, _make_grads, a copy of the contextvars for compiled autograd, logging
hooks) before it calls the C++ engine: about 25 us of Python a call, twice per stream
and step, and on a CPU with two training streams (engine/streams.py) Python time is
GIL time both streams wait for. Our calls are always one plain tensor with one gradient
(or a scalar loss), so this calls the engine the way torch.autograd.backward ends up
calling it; if the engine entry point is missing or refuses the call (another torch),
Tensor.backward is used from then on.
"""
from __future__ import annotations

import torch

_engine = getattr(getattr(torch.autograd, "Variable", None), "_execution_engine", None)
_direct = _engine is not None and hasattr(_engine, "run_backward")


def backward(tensor: torch.Tensor, grad: torch.Tensor | None = None) -> None:
    """tensor.backward(grad): gradients accumulate into the leaves' .grad, the graph is freed."""
    global _direct
    if _direct and type(tensor) is torch.Tensor and (grad is None or type(grad) is torch.Tensor):
        if grad is None:
            if tensor.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            grad = torch.ones_like(tensor, memory_format=torch.preserve_format)
        try:
            _engine.run_backward((tensor,), (grad,), False, False, (), allow_unreachable=True, accumulate_grad=True)
            return
        except TypeError:  # a signature this module does not know: the public path from now on
            _direct = False
    tensor.backward(grad)
