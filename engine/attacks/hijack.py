"""Attack 9a, the feature-space hijacking backdoor (docs/protocol.md section 9a).

FSHA's mechanism (Pasquini et al., CCS'21) turned into a backdoor in the Steal / Finetune /
Implant stages of Chronic Poisoning (Yu et al., AAAI'24). Names: f the real client, h the
server's network (ctx.server), f_s a shadow client the server keeps (f's architecture,
its own init), D a discriminator on smashed data. The auxiliary set is share 0
(`aux_size` of it).

- Warm-up: for `hijack_warmup_epochs` epochs the server is honest, so h learns the task
  on f's features.
- Steal (start of the next epoch): f_s trains on the clean auxiliary set through h
  frozen, for `hijack_shadow_epochs` epochs, so that f_s speaks h's feature language.
- Finetune: h and f_s train together on the auxiliary set, `poison_ratio` of it
  triggered and relabelled, for `hijack_shadow_epochs` epochs: h learns the backdoor on
  f_s's features.
- Implant, for the rest of training, f_s and h frozen (h keeps training with
  `hijack_train_h`): per innocent batch z = f(x) with labels y, D takes one WGAN-GP step
  (L_D = mean D(f_s(x_aux), y) - mean D(z, y) + lambda * GP on x_hat = eps z + (1 - eps)
  f_s(x_aux), x_aux of the same classes as the batch), and the client receives
  g = beta * grad_z CE(h(z), y) + (1 - beta) * grad_z mean D(z, y), which pulls f's
  features onto f_s's, class by class (docs/protocol.md says why the class matters).
  With `hijack_critic` "plain", D ignores y and x_aux is drawn regardless of class
  (FSHA's unconditional critic), a control for what the class adds.

Every stage emits PhaseProgress per epoch (hijack-steal, hijack-finetune, hijack-implant),
so its losses land in the run file's `phases` and on the TUI's run screen.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import lr_multiplier
from ..data.trigger import stamp
from ..events import PhaseProgress
from ..models import build_split, smashed_shape
from ..models.frozen import Frozen
from ..models.seeded import built
from ..speed.adam import set_lr
from ..training.context import RunContext, StepLoss
from ..training.local_training import train_pass
from .base import Attack
from .discriminator import Discriminator
from .poisoned import PoisonedShare, auxiliary_set

SEED_OFFSET = 5
PROBE = 512  # auxiliary images the per-class diagnostics are measured on
GP_SHARE = 4  # the gradient penalty is taken on 1/GP_SHARE of each batch's rows


class HijackAttack(Attack):
    name = "hijack"

    def __init__(self) -> None:
        self.stage = "warmup"
        self.info: dict[str, Any] = {}
        self.task_head: nn.Module | None = None

    # ---------------------------------------------------------------- setup
    def prepare(self, ctx: RunContext) -> None:
        cfg = ctx.cfg
        seed = cfg.seed + SEED_OFFSET
        # Initial weights from the attack's own generator, built on the host and moved to
        # the run's device (engine/models/seeded.py): the global RNG is left as it was.
        init = torch.Generator(device="cpu").manual_seed(seed)
        self.shadows = nn.ModuleList(
            build_split(cfg.model, cfg.cut, ctx.data.input_shape, ctx.data.num_classes,
                        device=ctx.device, generator=init)[0]
            for _ in range(cfg.hijack_shadows))
        shape = smashed_shape(self.shadows[0], ctx.data.input_shape)
        # Plain layers for D: its gradient penalty needs second-order gradients.
        conditional = cfg.hijack_critic == "conditional"
        self.disc = built(lambda: Discriminator(shape, ctx.data.num_classes, conditional=conditional),
                          ctx.device, init).train()
        for shadow in self.shadows:
            ctx.setup_module(shadow).train()
        self.shadow = self.shadows[0]  # the one D aligns the client to
        self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.hijack_d_lr, betas=(0.5, 0.9))
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        aux = auxiliary_set(ctx)
        self.clean = PoisonedShare(aux, 0.0, self.gen, cfg.batch_size)
        self.poisoned = PoisonedShare(aux, cfg.poison_ratio, self.gen, cfg.batch_size)
        if ctx.speed.prepared is not None:
            prepared = auxiliary_set(ctx, prepared=True).x
            self.clean.prestamp(prepared, ctx.trigger)
            self.poisoned.prestamp(prepared, ctx.trigger)
        # Auxiliary rows sorted by class, with each class's first position and count: the
        # conditional D compares each innocent row with a shadow row of its class.
        counts = torch.bincount(aux.y, minlength=ctx.data.num_classes)
        self.class_matched = conditional
        self.by_class = torch.argsort(aux.y, stable=True)
        self.class_start = torch.cumsum(counts, 0) - counts
        self.class_count = counts
        self.beta, self.gp_weight = cfg.hijack_beta, cfg.hijack_gp
        self.train_h = cfg.hijack_train_h
        self.info.update(aux_samples=len(aux), poisoned_samples=int(self.poisoned.mask.sum()))
        self._reset_sums(ctx)

    def start_epoch(self, ctx: RunContext, epoch: int) -> None:
        if epoch != ctx.cfg.hijack_warmup_epochs:
            return
        lr = ctx.cfg.lr * lr_multiplier(ctx.cfg, epoch)
        # h as the honest warm-up left it, before Finetune plants the backdoor in it.
        self.task_head = self._frozen_copy(ctx.server) if ctx.cfg.hijack_task_head == "clean" else None
        self._steal(ctx, lr)
        self._finetune(ctx, lr)
        self.shadows.eval().requires_grad_(False)
        self.shadows.zero_grad(set_to_none=True)
        ctx.server.zero_grad(set_to_none=True)
        ctx.server.requires_grad_(self.train_h)
        self.stage = "implant"
        self.implant_start = epoch

    # ---------------------------------------------------------------- Steal, Finetune
    def _fit_shadows(self, ctx: RunContext, phase: str, share: PoisonedShare, with_h: bool, lr: float,
                     with_shadows: bool = True) -> None:
        """Cross-entropy through h on `share` for `hijack_shadow_epochs` passes; batch i
        goes through shadow i mod S and trains it (with `with_shadows`) and h (with
        `with_h`), so every shadow is trained against the same h and h, in Finetune,
        learns the backdoor on all of them."""
        cfg = ctx.cfg
        params = [*(self.shadows.parameters() if with_shadows else []), *(ctx.server.parameters() if with_h else [])]
        opt = ctx.make_adam(params)
        set_lr(opt, lr)
        epochs = cfg.hijack_shadow_epochs

        def batch_loss(i: int, idx: torch.Tensor) -> torch.Tensor:
            x, y = share.take(idx, ctx.data.norm, ctx.trigger)
            return F.cross_entropy(ctx.server(self.shadows[i % len(self.shadows)](ctx.batch_input(x))), y)

        for epoch in range(epochs):
            self.shadows.train(with_shadows)
            ctx.server.train(with_h)
            order = torch.randperm(len(share.share), generator=self.gen, device="cpu").to(ctx.device)
            loss_mean = train_pass(opt, order, cfg.batch_size, batch_loss, ctx.check_stop)
            probe = self._probe(ctx)
            self.info.update({f"{phase}_{k}": v for k, v in probe.items()})
            ctx.emit(PhaseProgress(ctx.run_id, phase, epoch + 1, epochs, loss_mean, probe))
        ctx.server.train()

    def _steal(self, ctx: RunContext, lr: float) -> None:
        """The shadows against h frozen, on the clean auxiliary set."""
        ctx.server.requires_grad_(False)
        try:
            self._fit_shadows(ctx, "hijack-steal", self.clean, False, lr)
        finally:
            ctx.server.requires_grad_(True)

    def _finetune(self, ctx: RunContext, lr: float) -> None:
        """h (and the shadows, with `hijack_finetune` "both") on the auxiliary set with its
        poisoned share. With "h" the shadows stay as Steal left them, trained on clean
        images only, as the real client is: h must then read the trigger in how a
        clean-trained client answers the patch, which is what it will meet in f."""
        with_shadows = ctx.cfg.hijack_finetune == "both"
        self.shadows.requires_grad_(with_shadows)
        try:
            self._fit_shadows(ctx, "hijack-finetune", self.poisoned, True, lr, with_shadows)
        finally:
            self.shadows.requires_grad_(True)

    @torch.no_grad()
    def _probe(self, ctx: RunContext) -> dict[str, Any]:
        """Diagnostics on the first PROBE auxiliary images (a simulation's view: the real
        server could not compute those that use f): h(f_s(x)) accuracy, the backdoor on
        the shadow (h(f_s(x + trigger)) = target), h(f(x)) accuracy and backdoor, and the
        per-class cosine similarity of the class-mean features of f and f_s."""
        x, y = self.clean.take(torch.arange(min(PROBE, len(self.clean.share)), device=ctx.device),
                               ctx.data.norm, ctx.trigger)
        stamped = stamp(x[y != ctx.trigger.target], ctx.trigger)
        x, stamped = ctx.batch_input(x), ctx.batch_input(stamped)
        modes = (self.shadow.training, ctx.server.training, ctx.client.training)
        self.shadow.eval(), ctx.server.eval(), ctx.client.eval()
        try:
            zs, zf, zt, zft = self.shadow(x), ctx.client(x), self.shadow(stamped), ctx.client(stamped)
            shadow_acc = float((ctx.server(zs).argmax(1) == y).float().mean()) * 100
            client_acc = float((ctx.server(zf).argmax(1) == y).float().mean()) * 100
            shadow_asr = float((ctx.server(zt).argmax(1) == ctx.trigger.target).float().mean()) * 100 if len(zt) else float("nan")
            client_asr = float((ctx.server(zft).argmax(1) == ctx.trigger.target).float().mean()) * 100 if len(zt) else float("nan")
            per_class = []
            for c in range(ctx.data.num_classes):
                rows = y == c
                if rows.any():
                    a, b = zs[rows].flatten(1).mean(0), zf[rows].flatten(1).mean(0)
                    per_class.append(round(float(F.cosine_similarity(a, b, dim=0)), 4))
        finally:
            self.shadow.train(modes[0]), ctx.server.train(modes[1]), ctx.client.train(modes[2])
        return {"shadow_acc": shadow_acc, "shadow_asr": shadow_asr, "client_acc": client_acc, "client_asr": client_asr,
                "alignment": round(sum(per_class) / max(len(per_class), 1), 4), "alignment_per_class": per_class}

    # ---------------------------------------------------------------- Implant
    def _aux_batch(self, ctx: RunContext, labels: torch.Tensor) -> torch.Tensor:
        """Random auxiliary images with the same labels as `labels`."""
        idx = self.aux_indices(ctx, labels)
        return ctx.batch_input(self.clean.take(idx, ctx.data.norm, ctx.trigger)[0])

    def aux_indices(self, ctx: RunContext, labels: torch.Tensor) -> torch.Tensor:
        """Random auxiliary rows with the same labels as `labels` (from any class where
        the auxiliary set has none of that class); with the plain critic, random rows of
        any class, one per label."""
        u = torch.rand(labels.shape[0], generator=self.gen, device="cpu").to(ctx.device)
        if not self.class_matched:
            return self.by_class[(u * len(self.by_class)).long().clamp_(max=len(self.by_class) - 1)]
        count = self.class_count[labels]
        start = torch.where(count > 0, self.class_start[labels], torch.zeros_like(labels))
        count = torch.where(count > 0, count, torch.full_like(count, len(self.by_class)))
        pos = start + (u * count).long().clamp_(max=len(self.by_class) - 1)
        return self.by_class[pos]

    def discriminator_step(self, ctx: RunContext, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One WGAN-GP step of D on the innocent batch's smashed data z (labels y) and
        the first shadow's features of auxiliary images of the same classes: those are
        'real', z 'fake' (FSHA's signs: D scores the client's features high). Returns
        (L_D, GP, mean D(z) - mean D(f_s(x_aux))), detached."""
        n = z.shape[0]
        with torch.no_grad():
            za = self.shadow(self._aux_batch(ctx, labels))
        # The penalty is estimated on a quarter of the rows (its second-order gradient is the
        # step's costliest part); the mean over random rows estimates the mean over all.
        m = max(1, n // GP_SHARE)
        eps = torch.rand(m, *([1] * (z.dim() - 1)), generator=self.gen, device="cpu").to(ctx.device)
        x_hat = (eps * z[:m] + (1 - eps) * za[:m]).requires_grad_()
        self.disc.requires_grad_(True)
        scores = self.disc(torch.cat([z, za, x_hat]), torch.cat([labels, labels, labels[:m]]))
        fake, real, mixed = scores[:n], scores[n:2 * n], scores[2 * n:]
        grad, = torch.autograd.grad(mixed.sum(), x_hat, create_graph=True)
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        loss = real.mean() - fake.mean() + self.gp_weight * gp
        self.disc_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_opt.step()
        self.disc.requires_grad_(False)
        return torch.stack([loss, gp, fake.mean() - real.mean()]).detach()

    @staticmethod
    def _frozen_copy(module: nn.Module) -> nn.Module:
        """A copy of `module` on its device that never trains: no gradients kept, and in
        eval mode for good, so its BatchNorm statistics stay as they were copied."""
        return Frozen(copy.deepcopy(module))

    def server_trains(self) -> bool:
        """h is frozen in Implant (unless `hijack_train_h`): eval mode, so its BatchNorm
        statistics do not drift on the client's features."""
        return self.stage != "implant" or self.train_h

    def client_signal(self, ctx: RunContext, wire: torch.Tensor, labels: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(beta * CE(h(wire), y) + (1 - beta) * mean D(wire, y), the CE, mean D(wire, y)):
        the first is what the wire's gradient comes from. With `hijack_task_head` "clean"
        the CE is taken through h as the warm-up left it, which knows no trigger, so the
        task signal never teaches the client to hide the features h reads as one."""
        head = self.task_head if self.task_head is not None else ctx.server
        task = F.cross_entropy(head(wire), labels)
        hijack = self.disc(wire, labels).mean()
        return self.beta * task + (1 - self.beta) * hijack, task, hijack

    def server_loss(self, ctx: RunContext, wire: torch.Tensor, labels: torch.Tensor) -> StepLoss:
        if self.stage != "implant":
            return super().server_loss(ctx, wire, labels)
        d_stats = self.discriminator_step(ctx, wire.detach(), labels)
        total, task, hijack = self.client_signal(ctx, wire, labels)
        if self.train_h:
            # h keeps learning the task (the innocent term above) and the backdoor on a
            # poisoned shadow batch; neither term adds to the wire's gradient.
            xs, ys = self.poisoned.batch(ctx.data.norm, ctx.trigger)
            with torch.no_grad():
                zs = self.shadow(ctx.batch_input(xs))
            total = total + F.cross_entropy(ctx.server(zs), ys)
        self.sums += torch.cat([d_stats, hijack.detach().view(1), task.detach().view(1)])
        self.steps += 1
        return StepLoss(total, task.detach(), hijack.detach())

    def end_epoch(self, ctx: RunContext, epoch: int) -> None:
        if self.stage != "implant":
            return
        d_loss, gp, distance, hijack, task = (self.sums / max(self.steps, 1)).tolist()
        info = {"d_loss": d_loss, "gp": gp, "wasserstein": distance, "f_loss": hijack, "task_loss": task,
                **self._probe(ctx)}
        self.info.update({f"implant_{k}": v for k, v in info.items()})
        total = ctx.cfg.epochs - self.implant_start  # type: ignore[operator]
        ctx.emit(PhaseProgress(ctx.run_id, "hijack-implant", epoch + 1 - self.implant_start, total, d_loss, info))
        self._reset_sums(ctx)

    def _reset_sums(self, ctx: RunContext) -> None:
        self.sums = torch.zeros(5, device=ctx.device)
        self.steps = 0

    def summary(self) -> dict[str, Any]:
        return {"stage": self.stage, **self.info}
