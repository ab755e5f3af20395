"""Compiled CPU loops (numba) for the ops that torch runs as several full passes.

2x2/stride-2 max pooling as torch ops is a de-interleaving copy and four comparisons
forward and four more passes backward (engine/speed/fastops.py); one compiled loop does each
direction in a single pass over the activation, faster than both the tensor ops and
F.max_pool2d (bench/kernels.py; see docs/benchmark.md). The loops release the GIL, so two
training streams can run them at once.

Semantics are exactly F.max_pool2d's: the first maximum in scan order wins a window
(left before right, top row before bottom), so outputs and input gradients are
bit-identical to it (tests/test_options.py). numba is the optional extra ``sltui[fast]``:
where it is not installed or does not load, ``AVAILABLE`` is False and callers keep
their torch-op paths, as they do when SLTUI_PUBLIC_API_ONLY is set (``usable``). The loops run on
the calling thread only (no numba threading layer beside torch's OpenMP).
"""
from __future__ import annotations

import functools

import torch

from .fallbacks import may_use

try:  # pragma: no cover - exercised by whichever branch the environment has
    import numba
except Exception:  # ImportError, or a numba/llvmlite that does not load on this platform
    numba = None

AVAILABLE = numba is not None


def usable() -> bool:
    """Whether runs may take these loops: numba loads and SLTUI_PUBLIC_API_ONLY is unset."""
    return may_use("numba", lambda: AVAILABLE)


def _jit(func):
    if numba is None:
        return func
    return numba.njit(nogil=True, cache=True, boundscheck=False)(func)


@_jit
def _window_max(v0, v1, v2, v3):  # pragma: no cover - compiled
    # The max of a 2x2 window (v0 v1 / v2 v3) and which cell holds it, 0 top-left,
    # 1 top-right, 2 bottom-left, 3 bottom-right. Like max_pool2d's scan (row by row, left
    # to right; a cell wins if it is greater or NaN): ties keep the earlier cell, a NaN
    # the later one.
    right_top = v1 > v0 or v1 != v1
    m_top = v1 if right_top else v0
    right_bottom = v3 > v2 or v3 != v3
    m_bottom = v3 if right_bottom else v2
    if m_bottom > m_top or m_bottom != m_bottom:
        return m_bottom, 2 + right_bottom
    return m_top, 0 + right_top


@_jit
def _pool_forward(x, out, arg):  # pragma: no cover - compiled
    # x (N, C, H, W); out and arg (N, C, H/2, W/2); arg: the winning cell (_window_max).
    n, c, h, w = x.shape
    for b in range(n):
        for ch in range(c):
            for i in range(h // 2):
                top = x[b, ch, 2 * i]
                bottom = x[b, ch, 2 * i + 1]
                o = out[b, ch, i]
                a = arg[b, ch, i]
                for j in range(w // 2):
                    o[j], a[j] = _window_max(top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1])


@_jit
def _pool_values(x, out):  # pragma: no cover - compiled
    n, c, h, w = x.shape
    for b in range(n):
        for ch in range(c):
            for i in range(h // 2):
                top = x[b, ch, 2 * i]
                bottom = x[b, ch, 2 * i + 1]
                o = out[b, ch, i]
                for j in range(w // 2):
                    o[j] = _window_max(top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1])[0]


@_jit
def _pool_backward(grad, arg, grad_in):  # pragma: no cover - compiled
    n, c, h2, w2 = grad.shape
    for b in range(n):
        for ch in range(c):
            for i in range(h2):
                g = grad[b, ch, i]
                a = arg[b, ch, i]
                top = grad_in[b, ch, 2 * i]
                bottom = grad_in[b, ch, 2 * i + 1]
                for j in range(w2):
                    k = a[j]
                    v = g[j]
                    top[2 * j] = v if k == 0 else 0.0
                    top[2 * j + 1] = v if k == 1 else 0.0
                    bottom[2 * j] = v if k == 2 else 0.0
                    bottom[2 * j + 1] = v if k == 3 else 0.0


_POOL_DTYPES = (torch.float32, torch.float64)


def pool_applies(x: torch.Tensor) -> bool:
    """Whether the compiled pool takes `x`: a contiguous NCHW float32/float64 CPU tensor
    with even H and W."""
    if not AVAILABLE or not x.is_cpu or x.dtype not in _POOL_DTYPES or x.dim() != 4 or not x.is_contiguous():
        return False
    _, _, h, w = x.shape
    return not (h & 1 or w & 1)


def max_pool2x2_forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(max_pool2d(x, 2), the winning cell of each window as uint8) for pool_applies(x)."""
    n, c, h, w = x.shape
    out = x.new_empty((n, c, h // 2, w // 2))
    arg = torch.empty((n, c, h // 2, w // 2), dtype=torch.uint8, device=x.device)
    if n and c:
        _pool_forward(x.detach().numpy(), out.numpy(), arg.numpy())
    return out, arg


def max_pool2x2_values(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    out = x.new_empty((n, c, h // 2, w // 2))
    if n and c:
        _pool_values(x.detach().numpy(), out.numpy())
    return out


def max_pool2x2_backward(grad: torch.Tensor, arg: torch.Tensor) -> torch.Tensor:
    """The input gradient: each window's gradient goes to the cell `arg` names."""
    n, c, h2, w2 = arg.shape
    grad = grad.contiguous()
    grad_in = grad.new_empty((n, c, 2 * h2, 2 * w2))
    if n and c:
        _pool_backward(grad.detach().numpy(), arg.numpy(), grad_in.numpy())
    return grad_in


# ---------------------------------------------------------------- conv (1 channel) + ReLU
# The forward of a 1-input-channel KxK convolution (stride 1, no padding) and its ReLU:
# LeNet's first layer. oneDNN is built for many channels, and the ReLU is one more pass;
# the loop below, generated for one (O, K, H, W) so that every offset and trip count is a
# constant LLVM can vectorise and unroll, does both in one pass, faster (bench/kernels.py;
# see docs/benchmark.md). Compiled weight-gradient loops were slower than oneDNN's, so
# the backward stays with aten.


def _conv_relu_source(out_channels: int, k: int, h: int, w: int) -> str:
    ho, wo = h - k + 1, w - k + 1
    taps = " + ".join(f"w[o, {a * k + c}] * xn[q + {a * w + c}]" for a in range(k) for c in range(k))
    return f"""
def forward(x, w, b, out):
    # x (N, H*W), w (O, K*K), b (O,), out (N, O, Ho, Wo) = relu(conv(x, w) + b)
    for n in range(x.shape[0]):
        xn = x[n]
        for o in range({out_channels}):
            bo = b[o]
            for i in range({ho}):
                row = out[n, o, i]
                for j in range({wo}):
                    q = i * {w} + j
                    v = bo + {taps}
                    row[j] = v if v > 0 else 0.0

"""


@functools.lru_cache(maxsize=None)
def _conv_relu_kernel(out_channels: int, k: int, h: int, w: int):
    namespace: dict = {}
    exec(_conv_relu_source(out_channels, k, h, w), namespace)  # noqa: S102 - our own template
    # contract: multiply-adds become FMAs (one rounding each); no reassociation, so
    # each output sums its taps in a fixed order.
    return numba.njit(nogil=True, boundscheck=False, fastmath={"contract"})(namespace["forward"])


def conv_relu_applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether the compiled conv+ReLU takes this call: float32 CPU, one input channel,
    a square kernel no larger than the image, a bias."""
    return (AVAILABLE and x.device.type == "cpu" and x.dim() == 4 and x.shape[1] == 1
            and x.dtype == torch.float32 and weight.dtype == torch.float32 and bias is not None
            and weight.shape[1] == 1 and weight.shape[2] == weight.shape[3]
            and weight.shape[2] <= min(x.shape[2], x.shape[3]))


def _conv_shapes(x: torch.Tensor, weight: torch.Tensor):
    n, _, h, w = x.shape
    o, _, k, _ = weight.shape
    return n, o, k, h, w


def conv_relu_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """relu(conv2d(x, weight, bias)) for conv_relu_applies(...)."""
    n, o, k, h, w = _conv_shapes(x, weight)
    out = x.new_empty((n, o, h - k + 1, w - k + 1))
    if n:
        _conv_relu_kernel(o, k, h, w)(x.detach().contiguous().view(n, h * w).numpy(), weight.detach().contiguous().view(o, k * k).numpy(),
                bias.detach().contiguous().numpy(), out.numpy())
    return out
