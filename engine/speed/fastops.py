"""Fast CPU paths for layers whose stock kernels are slow at these small sizes.

Each one computes the same function as the stock layer, with the same gradient (up to
float rounding where noted); tests/test_options.py compares them on random input.

* ``MaxPool2x2``: 2x2/stride-2 max pooling. PyTorch's CPU ``max_pool2d_with_indices``
  walks each window with index bookkeeping, slow at LeNet's sizes (see docs/benchmark.md).
  Contiguous float CPU input goes to one compiled loop each way (engine/speed/kernels.py,
  numba); otherwise (channels_last, no numba) the forward is one de-interleaving copy
  plus four vectorised ops, and the backward routes the gradient with two saved 0/1
  masks. Ties go to the first maximum in scan order (row 0 before row 1, left before
  right) exactly as ``F.max_pool2d``, so outputs and input gradients are bit-identical.
* ``FastConvReLU``: a 1-input-channel conv and the ReLU after it, the forward in one
  compiled loop (engine/speed/kernels.py), the backward torch's.
* ``FastELU``: ELU with a vectorised exp.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels
from .fallbacks import may_use


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class MaxPool2x2(torch.autograd.Function):
    """max_pool2d(x, 2) for (N, C, H, W) with even H and W, contiguous or channels_last
    (the output keeps the input's memory format)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n, c, h, w = x.shape
        h2, w2 = h // 2, w // 2
        ctx.nhwc = _channels_last(x)
        if ctx.nhwc:
            # (N, H, W, C) in memory: the two columns of a window are C-long contiguous runs.
            v = x.permute(0, 2, 3, 1).view(n, h, w2, 2, c)
            even, odd = v.select(3, 0), v.select(3, 1)  # (N, H, W2, C)
            colmask = torch.gt(odd, even, out=x.new_empty((n, h, w2, c)))
            rows = torch.maximum(even, odd).view(n, h2, 2, w2, c)
            top, bottom = rows.select(2, 0), rows.select(2, 1)  # (N, H2, W2, C)
            rowmask = torch.gt(bottom, top, out=x.new_empty((n, h2, w2, c)))
            ctx.save_for_backward(colmask, rowmask)
            return torch.maximum(top, bottom).permute(0, 3, 1, 2)
        # Even and odd columns side by side: d[0] = x[..., 0::2], d[1] = x[..., 1::2].
        d = x.new_empty((2, n, c, h, w2))
        d.copy_(x.unflatten(3, (w2, 2)).permute(4, 0, 1, 2, 3))
        even, odd = d[0], d[1]
        # 1.0 where the odd column wins; a tie goes to the even (left) column.
        colmask = torch.gt(odd, even, out=x.new_empty((n, c, h, w2)))
        rows = torch.maximum(even, odd).view(n, c, h2, 2, w2)
        top, bottom = rows.select(3, 0), rows.select(3, 1)
        # 1.0 where the bottom row wins; a tie goes to the top row.
        rowmask = torch.gt(bottom, top, out=x.new_empty((n, c, h2, w2)))
        ctx.save_for_backward(colmask, rowmask)
        return torch.maximum(top, bottom)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        colmask, rowmask = ctx.saved_tensors
        if ctx.nhwc:
            n, h, w2, c = colmask.shape
            g = grad.permute(0, 2, 3, 1).contiguous()  # (N, H2, W2, C)
            by_row = g.new_empty((n, h // 2, 2, w2, c))
            bottom = torch.mul(g, rowmask, out=by_row.select(2, 1))
            torch.sub(g, bottom, out=by_row.select(2, 0))
            by_row = by_row.view(n, h, w2, c)
            out = g.new_empty((n, h, w2, 2, c))
            odd = torch.mul(by_row, colmask, out=out.select(3, 1))
            torch.sub(by_row, odd, out=out.select(3, 0))
            return out.view(n, h, 2 * w2, c).permute(0, 3, 1, 2)
        n, c, h, w2 = colmask.shape
        grad = grad.contiguous()
        # Row level: the gradient goes to the winning row (m * g and g - m * g are exact).
        by_row = grad.new_empty((n, c, h // 2, 2, w2))
        bottom = torch.mul(grad, rowmask, out=by_row.select(3, 1))
        torch.sub(grad, bottom, out=by_row.select(3, 0))
        by_row = by_row.view(n, c, h, w2)
        # Column level, then interleave even and odd columns back.
        d = grad.new_empty((2, n, c, h, w2))
        torch.mul(by_row, colmask, out=d[1])
        torch.sub(by_row, d[1], out=d[0])
        out = grad.new_empty((n, c, h, w2, 2))
        out.copy_(d.permute(1, 2, 3, 4, 0))
        return out.view(n, c, h, 2 * w2)


class CompiledMaxPool2x2(torch.autograd.Function):
    """max_pool2d(x, 2) for kernels.pool_applies(x): one compiled pass each way."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out, arg = kernels.max_pool2x2_forward(x)
        ctx.save_for_backward(arg)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return kernels.max_pool2x2_backward(grad, ctx.saved_tensors[0])


def max_pool2x2_values(x: torch.Tensor, compiled: bool = False) -> torch.Tensor:
    """max_pool2d(x, 2) without anything for a backward pass (inference)."""
    if compiled and kernels.pool_applies(x):
        return kernels.max_pool2x2_values(x)
    n, c, h, w = x.shape
    if _channels_last(x):
        v = x.permute(0, 2, 3, 1).view(n, h, w // 2, 2, c)
        rows = torch.maximum(v.select(3, 0), v.select(3, 1)).view(n, h // 2, 2, w // 2, c)
        return torch.maximum(rows.select(2, 0), rows.select(2, 1)).permute(0, 3, 1, 2)
    cols = x.unflatten(3, (w // 2, 2))
    rows = torch.maximum(cols.select(4, 0), cols.select(4, 1)).view(n, c, h // 2, 2, w // 2)
    return torch.maximum(rows.select(3, 0), rows.select(3, 1))


def max_pool2x2(x: torch.Tensor, compiled: bool = False) -> torch.Tensor:
    """`compiled`: take engine/speed/kernels.py's loops where they apply."""
    if torch.is_grad_enabled() and x.requires_grad:
        return CompiledMaxPool2x2.apply(x) if compiled and kernels.pool_applies(x) else MaxPool2x2.apply(x)
    return max_pool2x2_values(x, compiled)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


class FastMaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d that takes the fast path for 2x2/stride-2 pooling of even-sized
    4-D inputs and falls back to the stock op otherwise. Same state_dict (none), same repr.
    `compiled`: use engine/speed/kernels.py's loops where they apply."""

    compiled = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Worked out once (the forward runs on every batch; the configuration is fixed).
        self._two_by_two = (_pair(self.kernel_size) == (2, 2) and _pair(self.stride or self.kernel_size) == (2, 2)
                            and _pair(self.padding) == (0, 0) and _pair(self.dilation) == (1, 1)
                            and not self.ceil_mode and not self.return_indices)

    def _fast(self, x: torch.Tensor) -> bool:
        if not self._two_by_two or x.dim() != 4 or not x.is_floating_point():
            return False
        _, _, h, w = x.shape
        return not (h & 1 or w & 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast(x):
            return max_pool2x2(x, self.compiled)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class ConvReLUFunction(torch.autograd.Function):
    """relu(conv2d(x, weight, bias)) for a 1-channel input that needs no gradient: the
    forward in engine/speed/kernels.py's compiled loop (the same function as the stock pair up
    to float rounding: the taps are summed in another order), the backward ReLU's mask
    and torch's own convolution weight gradient (torch.nn.grad.conv2d_weight)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = kernels.conv_relu_forward(x, weight, bias)
        ctx.save_for_backward(x, weight, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight, out = ctx.saved_tensors
        grad = grad.masked_fill(out <= 0, 0)  # ReLU's backward: zero where the output was clamped
        return None, torch.nn.grad.conv2d_weight(x, weight.shape, grad), grad.sum((0, 2, 3))


class FastConvReLU(nn.Conv2d):
    """An nn.Conv2d whose ReLU (the next layer of its Sequential, replaced there by an
    nn.Identity) is computed with it: compiled loops for a 1-channel, unpadded, stride-1
    conv whose input needs no gradient (LeNet's first layer), the stock conv + ReLU
    otherwise. The state_dict is the conv's, so weights load either way."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Worked out once, as FastMaxPool2d does (the configuration is fixed).
        self._unpadded_stride_one = (_pair(self.stride) == (1, 1) and _pair(self.padding) == (0, 0)
                                     and _pair(self.dilation) == (1, 1) and self.groups == 1
                                     and self.padding_mode == "zeros")

    def _compiled(self, x: torch.Tensor) -> bool:
        return (self._unpadded_stride_one and not x.requires_grad
                and kernels.conv_relu_applies(x, self.weight, self.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled(x):
            if torch.is_grad_enabled() and (self.weight.requires_grad or self.bias.requires_grad):
                return ConvReLUFunction.apply(x, self.weight, self.bias)
            return kernels.conv_relu_forward(x, self.weight, self.bias)
        return F.relu(super().forward(x))


class ELUFunction(torch.autograd.Function):
    """ELU with exp(x) - 1 for the negative part instead of expm1(x): this torch build's
    CPU expm1 is not vectorised, which made ELU a large part of StripNet's step (see
    docs/benchmark.md). exp(x) - 1 differs from expm1(x) by at most about one float32
    ulp of 1.0 (6e-8) in absolute terms. The backward is aten's own elu_backward on the
    saved input, so gradients are exactly the stock ones for the same input; where that
    internal op is missing or SLTUI_PUBLIC_API_ONLY is set (engine/speed/fallbacks.py),
    the same formula in public tensor ops."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return elu_values(x, alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if may_use("aten-elu-backward", _aten_elu_backward_matches):
            return torch.ops.aten.elu_backward.default(grad, ctx.alpha, 1, 1, False, x), None
        return elu_backward_public(grad, ctx.alpha, x), None


def elu_backward_public(grad: torch.Tensor, alpha: float, x: torch.Tensor) -> torch.Tensor:
    """d elu(x) / dx times `grad` in public ops, multiplied in aten's order."""
    return torch.where(x > 0, grad, grad * alpha * torch.exp(x))


def _aten_elu_backward_matches() -> bool:
    x = torch.linspace(-3, 3, 64)
    grad = torch.linspace(1, 2, 64)
    aten = torch.ops.aten.elu_backward.default(grad, 0.5, 1, 1, False, x)
    return torch.allclose(aten, elu_backward_public(grad, 0.5, x))


def elu_values(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    neg = torch.exp(torch.clamp(x, max=0)).sub_(1)
    if alpha != 1.0:
        neg.mul_(alpha)
    return neg.add_(torch.clamp(x, min=0))


class FastELU(nn.ELU):
    """nn.ELU computed by ELUFunction (CPU); the stock op elsewhere and when in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace or x.device.type != "cpu" or not x.is_floating_point():
            return super().forward(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return ELUFunction.apply(x, float(self.alpha))
        return elu_values(x, float(self.alpha))


def use_fast_layers(module: nn.Module, compiled: bool = False) -> nn.Module:
    """Swap every stock nn.MaxPool2d / nn.ELU inside `module` for its fast twin, in place
    (no parameters, so the state_dict is unchanged). With `compiled` (and numba present),
    pools use engine/speed/kernels.py's loops and a 1-input-channel nn.Conv2d followed by an
    nn.ReLU in a Sequential becomes one FastConvReLU (the ReLU's slot an nn.Identity)."""
    compiled = compiled and kernels.usable()
    children = list(module.named_children())
    for i, (name, child) in enumerate(children):
        if type(child) is nn.MaxPool2d:
            fast: nn.Module = FastMaxPool2d(child.kernel_size, child.stride, child.padding, child.dilation,
                                            child.return_indices, child.ceil_mode)
            fast.compiled = compiled
        elif type(child) is nn.ELU:
            fast = FastELU(child.alpha, child.inplace)
        elif (compiled and isinstance(module, nn.Sequential) and type(child) is nn.Conv2d
              and child.in_channels == 1 and i + 1 < len(children) and type(children[i + 1][1]) is nn.ReLU):
            fast = _fused_conv_relu(child)
            setattr(module, children[i + 1][0], nn.Identity())
        else:
            use_fast_layers(child, compiled)
            continue
        fast.train(child.training)
        setattr(module, name, fast)
    return module


def _fused_conv_relu(conv: nn.Conv2d) -> FastConvReLU:
    # Made on the meta device, so its own (discarded) initial weights draw no random
    # numbers, then given the conv's Parameters themselves.
    fused = FastConvReLU(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                         device="meta", dtype=conv.weight.dtype)
    fused.weight, fused.bias = conv.weight, conv.bias  # the same Parameters
    return fused


# Layers whose training-mode output for a sample depends on the rest of the batch or on
# random numbers (public classes only; GroupNorm and LocalResponseNorm kept for caution).
BATCH_COUPLED = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LazyBatchNorm1d, nn.LazyBatchNorm2d,
                 nn.LazyBatchNorm3d, nn.SyncBatchNorm, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                 nn.AlphaDropout, nn.FeatureAlphaDropout, nn.GroupNorm, nn.LocalResponseNorm)


def per_sample(module: nn.Module) -> bool:
    """True when `module`'s training-mode output for a sample depends on that sample only
    and uses no random numbers, so one pass over a concatenated batch equals two passes."""
    return not any(isinstance(m, BATCH_COUPLED) for m in module.modules())
