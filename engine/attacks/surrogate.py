"""Attack 1, the surrogate client (docs/protocol.md section 6).

The server trains its own client network (same architecture, its own init and Adam) on
its share, `poison_ratio` of which is triggered and relabelled once at the start. For
every innocent batch it also runs one surrogate batch, cycling through that share, and
backpropagates L = alpha * L_innocent + (1 - alpha) * L_surrogate (halved with
`loss_halved`) through the server to both clients. The innocent client still only gets
the gradient w.r.t. its own smashed data: the wire's .grad of L.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..models import build_split
from ..speed.adam import set_lr
from ..speed.backward import backward
from ..speed.fastops import per_sample
from ..training.context import ConcurrentHalf, RunContext, StepLoss
from .base import Attack
from .poisoned import PoisonedShare, auxiliary_set


class SurrogateAttack(Attack):
    name = "surrogate"

    def prepare(self, ctx: RunContext) -> None:
        cfg = ctx.cfg
        # Own init from its own generator (seed + 1); torch's global random state is
        # neither reseeded nor advanced (engine/models/seeded.py).
        self.surrogate, _ = build_split(cfg.model, cfg.cut, ctx.data.input_shape, ctx.data.num_classes,
                                        device=ctx.device,
                                        generator=torch.Generator(device="cpu").manual_seed(cfg.seed + 1))
        ctx.setup_module(self.surrogate).train()
        self.opt = ctx.make_adam(self.surrogate.parameters())
        self.poisoned = PoisonedShare(auxiliary_set(ctx), cfg.poison_ratio,
                                      torch.Generator(device="cpu").manual_seed(cfg.seed + 1), cfg.batch_size)
        if ctx.speed.prepared is not None:
            self.poisoned.prestamp(auxiliary_set(ctx, prepared=True).x, ctx.trigger)
        self.alpha = cfg.alpha
        self.scale = 0.5 if cfg.loss_halved else 1.0
        # One server pass over both batches when that is the same per-sample math.
        self.one_pass = ctx.speed.options.server_batch and per_sample(ctx.server)

    def server_loss(self, ctx: RunContext, wire: torch.Tensor, labels: torch.Tensor) -> StepLoss:
        if self.alpha == 1.0:
            # L = 1 * L_innocent + 0 * L_surrogate: the surrogate batch is not even run, so the
            # server's BatchNorm statistics see only innocent data, as with no attack.
            innocent = F.cross_entropy(ctx.server(wire), labels)
            return StepLoss(innocent * self.scale, innocent.detach(), None)
        xs, ys = self.poisoned.batch(ctx.data.norm, ctx.trigger)
        xs = ctx.batch_input(xs)
        if self.one_pass:
            # The server has no batch-coupled layer: rows are independent, so one pass
            # over [innocent; surrogate] is the two passes' math (and the wire's gradient
            # is still dL/d(wire) through the innocent rows only).
            n = wire.shape[0]
            logits = ctx.server(torch.cat([wire, self.surrogate(xs)]))
            innocent = F.cross_entropy(logits[:n], labels)
            malicious = F.cross_entropy(logits[n:], ys)
        else:
            innocent = F.cross_entropy(ctx.server(wire), labels)
            malicious = F.cross_entropy(ctx.server(self.surrogate(xs)), ys)
        total = (self.alpha * innocent + (1 - self.alpha) * malicious) * self.scale
        return StepLoss(total, innocent.detach(), malicious.detach())

    def concurrent_half(self, ctx: RunContext) -> ConcurrentHalf | None:
        """The surrogate's term of L on its own: surrogate forward, server forward on its
        smashed data and backward of (1 - alpha) * scale * L_surrogate (into the server's
        and the surrogate's gradients), surrogate step. The innocent half backpropagates
        alpha * scale * L_innocent; the server's gradient is their sum, as for L. Not for
        servers with batch-coupled layers (BatchNorm statistics would be updated in either
        order) or alpha = 1 (no surrogate term)."""
        if self.alpha == 1.0 or not per_sample(ctx.server):
            return None
        malicious_scale, innocent_scale = (1 - self.alpha) * self.scale, self.alpha * self.scale

        def run() -> torch.Tensor:
            xs, ys = self.poisoned.batch(ctx.data.norm, ctx.trigger)
            malicious = F.cross_entropy(ctx.server(self.surrogate(ctx.batch_input(xs))), ys)
            backward(malicious_scale * malicious)
            self.opt.step()
            return malicious.detach()

        def innocent(wire: torch.Tensor, labels: torch.Tensor) -> StepLoss:
            loss = F.cross_entropy(ctx.server(wire), labels)
            return StepLoss(innocent_scale * loss, loss.detach())

        return ConcurrentHalf(run, innocent, lambda clean, other: innocent_scale * clean + malicious_scale * other)

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        if self.alpha != 1.0:
            self.opt.step()

    def set_lr(self, lr: float) -> None:
        set_lr(self.opt, lr)

    def summary(self) -> dict[str, Any]:
        return {"poisoned_samples": int(self.poisoned.mask.sum()), "surrogate_samples": len(self.poisoned.share)}
