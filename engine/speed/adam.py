"""LeanAdam: torch's fused Adam, stepped without Optimizer.step's per-call bookkeeping.

A LeNet step updates three small optimizers (client, server, surrogate); torch's
Optimizer.step spends Python time on every call (grouping tensors by device and dtype,
state lookups, hooks) around a kernel of similar length (see docs/benchmark.md), and on a CPU
where two training streams share the GIL (engine/speed/streams.py) that Python time is paid
by both. LeanAdam keeps the parameter and state lists of its one group and calls the
same fused kernel the same way torch.optim.Adam(fused=True) does, so the update is
bit-identical (tests/test_options.py); anything unusual (a closure, several groups, a
parameter without a gradient, options the shortcut does not cover, state just loaded)
takes the stock path. zero_grad (to None) skips the profiler record as well.

The kernel, the hook lists and the step wrapper are torch internals: ``lean_available``
probes them once (engine/speed/fallbacks.py), and where the probe fails or
SLTUI_PUBLIC_API_ONLY is set, runs take torch.optim.Adam(fused=True) instead, whose update
is the same.
"""
from __future__ import annotations

import torch
from torch.optim import optimizer as _optimizer

from ..config import RunConfig
from .fallbacks import may_use


class LeanAdam(torch.optim.Adam):
    def __init__(self, params, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, fused=True)
        self._plan: tuple | None = None
        self._planned_state: object = None

    def _lists(self) -> tuple | None:
        """(params, exp_avgs, exp_avg_sqs, steps) of the one group, or None when the
        shortcut does not apply to this step."""
        if len(self.param_groups) != 1:
            return None
        group = self.param_groups[0]
        if (group["amsgrad"] or group["maximize"] or group["capturable"] or group["differentiable"]
                or group.get("decoupled_weight_decay", False) or not group["fused"]
                or isinstance(group["lr"], torch.Tensor)):
            return None
        params = group["params"]
        if self._plan is not None and self._planned_state is self.state and self._plan[0] is params:
            return self._plan
        states = [self.state.get(p) for p in params]
        if not params or any(not s for s in states):
            return None  # the first step creates the state
        if any(p.device != params[0].device or p.dtype != params[0].dtype for p in params):
            return None  # torch groups those by device and dtype
        self._plan = (params, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                      [s["step"] for s in states])
        self._planned_state = self.state
        return self._plan

    def _step(self, closure=None):
        plan = self._lists() if closure is None else None
        grads = [p.grad for p in plan[0]] if plan is not None else None
        if plan is None or any(g is None or g.is_sparse for g in grads):  # type: ignore[union-attr]
            return _stock_step(self, closure)
        params, exp_avgs, exp_avg_sqs, steps = plan
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        with torch.no_grad():
            # What torch.optim.adam._fused_adam does for one device and dtype.
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                               lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                               eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)
        return None

    _hooked_step = torch.optim.Optimizer.profile_hook_step(_step)

    def step(self, closure=None):  # type: ignore[override]
        # torch.optim.Optimizer wraps every subclass's step in a profiler record and the
        # step-hook calls unless it is marked as wrapped already: here
        # the wrapped step runs only when some step hook is registered.
        if self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks or _global_step_hooks():
            return self._hooked_step(closure)
        return self._step(closure)

    step.hooked = True  # type: ignore[attr-defined]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Optimizer.zero_grad without its profiler record (set_to_none, the default)."""
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return None


def _stock_step(opt: LeanAdam, closure):
    """torch.optim.Adam.step without the hook wrapper that creating a plain Adam puts
    around it (LeanAdam runs the hooks itself, once)."""
    step = torch.optim.Adam.step
    if getattr(step, "hooked", False):
        step = step.__wrapped__
    return step(opt, closure)


def _global_step_hooks() -> bool:
    return bool(getattr(_optimizer, "_global_optimizer_pre_hooks", None)
                or getattr(_optimizer, "_global_optimizer_post_hooks", None))


def _lean_matches_fused() -> bool:
    """Three steps of LeanAdam and of torch.optim.Adam(fused=True) on the same weights
    and gradients end bit-identical (and LeanAdam took its own path)."""
    if not (hasattr(torch, "_fused_adam_") and hasattr(torch, "_foreach_add_")):
        return False
    g = torch.Generator().manual_seed(0)
    start, grads = torch.randn(5, generator=g), [torch.randn(5, generator=g) for _ in range(3)]
    a, b = start.clone().requires_grad_(), start.clone().requires_grad_()
    lean = LeanAdam([a], lr=1e-2, weight_decay=1e-4)
    stock = torch.optim.Adam([b], lr=1e-2, weight_decay=1e-4, fused=True)
    for grad in grads:
        a.grad, b.grad = grad.clone(), grad.clone()
        lean.step()
        stock.step()
    return lean._plan is not None and torch.equal(a, b)


def lean_available() -> bool:
    """Whether LeanAdam's shortcut may be used here (engine/speed/fallbacks.py)."""
    return may_use("lean-adam", _lean_matches_fused)


def make_adam(params, cfg: RunConfig, impl: str = "loop") -> torch.optim.Adam:
    """Adam(lr, weight_decay) of the config. `impl` (EngineOptions.adam): "loop" is torch's
    per-parameter for-loop, "foreach" and "fused" the multi-tensor and fused kernels,
    "lean" the fused kernel called directly (LeanAdam above): the same update up to float
    rounding ("fused" and "lean" bit-identical)."""
    if impl == "lean":
        return LeanAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    kwargs = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group (the per-epoch schedule)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
