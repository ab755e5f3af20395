"""Attack 2, the injector autoencoder (docs/protocol.md section 7).

prepare() runs phases 1-3 on the attacker's share (share 0), emitting PhaseProgress:
  phase1-clean / phase1-backdoor: two single-client networks of the target architecture,
      one on the clean share, one on the share plus a triggered, target-labelled copy
      of every sample;
  phase2-pairs: (clean client(x), backdoored client(x + trigger)) for each attacker
      sample x whose triggered copy the backdoored network classifies as the target;
  phase3-autoencoder: the injector learns clean -> backdoored smashed data (MSE, Adam,
      ReduceLROnPlateau(patience 20, factor 0.2, min lr 5e-5)), on 90% of the pairs,
      validated on the other 10%.
Phase 4 is server_loss(): in every batch `ae_share` of the smashed rows go through the
frozen injector and are labelled with the target. The client gets the gradient w.r.t.
the injector's output as if it were w.r.t. its own output (`straight`), or the gradient
through the injector (`through`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import lr_multiplier
from ..data.trigger import stamp_
from ..events import PhaseProgress
from ..models import build_split, smashed_shape
from ..training.context import RunContext, StepLoss
from ..training.local_training import fit
from .base import Attack
from .injector import InjectorAutoencoder
from .poisoned import auxiliary_set

PAIR_VAL_SHARE = 0.1


def straight_through(inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Forward: `outputs`. Backward: the incoming gradient goes to `inputs` unchanged."""
    return inputs + (outputs - inputs).detach()


class AutoencoderAttack(Attack):
    name = "autoencoder"

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}

    # ---------------------------------------------------------------- phases 1-3
    def prepare(self, ctx: RunContext) -> None:
        cfg, data = ctx.cfg, ctx.data
        gen = torch.Generator().manual_seed(cfg.seed + 2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 2)
            clean_net = self._train_phase1(ctx, "phase1-clean", poisoned_copy=False, generator=gen)
            backdoor_net = self._train_phase1(ctx, "phase1-backdoor", poisoned_copy=True, generator=gen)
            clean_in, bd_out = self._collect_pairs(ctx, clean_net, backdoor_net)
            shape = smashed_shape(clean_net[0], data.input_shape)
            self.injector = InjectorAutoencoder(shape).to(ctx.device)  # type: ignore[arg-type]
            self._train_injector(ctx, clean_in, bd_out, gen)
        self.injector.eval().requires_grad_(False)
        self.share = cfg.ae_share
        self.through = cfg.ae_grad == "through"
        self.batch_gen = torch.Generator().manual_seed(cfg.seed + 3)

    def _train_phase1(self, ctx: RunContext, phase: str, poisoned_copy: bool,
                      generator: torch.Generator) -> nn.Sequential:
        cfg, data = ctx.cfg, ctx.data
        share = auxiliary_set(ctx)
        client, server = build_split(cfg.model, cfg.cut, data.input_shape, data.num_classes)
        net = nn.Sequential(client, server).to(ctx.device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = len(share)

        def get_batch(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # Indices >= n are the triggered, target-labelled copies of samples idx - n.
            copy = idx >= n
            src = torch.where(copy, idx - n, idx)
            x = data.norm.apply(share.x[src])
            y = share.y[src].clone()
            if copy.any():
                x[copy] = stamp_(x[copy], ctx.trigger)
                y[copy] = ctx.trigger.target
            return x, y

        epochs = cfg.ae_phase1_epochs
        fit(net, opt, 2 * n if poisoned_copy else n, get_batch, epochs, cfg.batch_size, generator, ctx.device,
            lr_for_epoch=lambda e: cfg.lr * lr_multiplier(cfg, e),
            on_epoch=lambda e, loss: ctx.emit(PhaseProgress(ctx.run_id, phase, e, epochs, loss)),
            check_stop=ctx.check_stop)
        return net.eval()

    @torch.inference_mode()
    def _collect_pairs(self, ctx: RunContext, clean_net: nn.Sequential,
                       backdoor_net: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
        data, share = ctx.data, auxiliary_set(ctx)
        inputs, targets = [], []
        bs = ctx.cfg.eval_batch_size
        for start in range(0, len(share), bs):
            ctx.check_stop()
            x = data.norm.apply(share.x[start:start + bs])
            clean_smashed = clean_net[0](x)
            bd_smashed = backdoor_net[0](stamp_(x.clone(), ctx.trigger))
            hit = backdoor_net[1](bd_smashed).argmax(1) == ctx.trigger.target
            inputs.append(clean_smashed[hit])
            targets.append(bd_smashed[hit])
        clean_in, bd_out = torch.cat(inputs), torch.cat(targets)
        self.info.update(pairs=int(clean_in.shape[0]), attacker_samples=len(share))
        ctx.emit(PhaseProgress(ctx.run_id, "phase2-pairs", 1, 1, None,
                               {"pairs": self.info["pairs"], "attacker_samples": len(share)}))
        if clean_in.shape[0] < 2:
            raise RuntimeError(
                f"phase 2 kept {clean_in.shape[0]} pairs: the backdoored network did not learn the trigger; "
                f"raise --ae-phase1-epochs")
        return clean_in.clone(), bd_out.clone()

    def _train_injector(self, ctx: RunContext, clean_in: torch.Tensor, bd_out: torch.Tensor,
                        generator: torch.Generator) -> None:
        cfg = ctx.cfg
        n = clean_in.shape[0]
        perm = torch.randperm(n, generator=generator).to(ctx.device)
        n_val = max(1, int(n * PAIR_VAL_SHARE))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        opt = torch.optim.Adam(self.injector.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.2, patience=20, min_lr=5e-5)
        epochs = cfg.ae_epochs
        train_mse = val_mse = float("nan")
        for epoch in range(epochs):
            self.injector.train()
            total, batches = torch.zeros((), device=ctx.device), 0
            order = train_idx[torch.randperm(len(train_idx), generator=generator).to(ctx.device)]
            for idx in order.split(cfg.batch_size):
                ctx.check_stop()
                loss = F.mse_loss(self.injector(clean_in[idx]), bd_out[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach()
                batches += 1
            train_mse = (total / max(batches, 1)).item()
            val_mse = self._mse(clean_in[val_idx], bd_out[val_idx], cfg.eval_batch_size)
            sched.step(val_mse)
            ctx.emit(PhaseProgress(ctx.run_id, "phase3-autoencoder", epoch + 1, epochs, train_mse,
                                   {"train_mse": train_mse, "val_mse": val_mse, "lr": opt.param_groups[0]["lr"]}))
        self.info.update(ae_train_mse=train_mse, ae_val_mse=val_mse, ae_val_pairs=int(n_val))

    @torch.inference_mode()
    def _mse(self, inputs: torch.Tensor, targets: torch.Tensor, bs: int) -> float:
        self.injector.eval()
        total = 0.0
        for start in range(0, inputs.shape[0], bs):
            out = self.injector(inputs[start:start + bs])
            total += F.mse_loss(out, targets[start:start + bs], reduction="sum").item()
        return total / targets.numel()

    # ---------------------------------------------------------------- phase 4
    def inject(self, wire: torch.Tensor, labels: torch.Tensor, target: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The server's input and labels for one batch, and the mask of injected rows."""
        n = wire.shape[0]
        k = int(round(self.share * n))
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.randperm(n, generator=self.batch_gen)[:k]] = True
        mask = mask.to(wire.device)
        if k == 0:
            return wire, labels, mask
        rows = wire[mask]
        injected = self.injector(rows) if self.through else straight_through(rows, self.injector(rows))
        server_in = wire.clone()
        server_in[mask] = injected  # overwritten rows get their gradient only through `injected`
        new_labels = torch.where(mask, torch.full_like(labels, target), labels)
        return server_in, new_labels, mask

    def server_loss(self, ctx: RunContext, wire: torch.Tensor, labels: torch.Tensor) -> StepLoss:
        server_in, new_labels, mask = self.inject(wire, labels, ctx.trigger.target)
        per_sample = F.cross_entropy(ctx.server(server_in), new_labels, reduction="none")
        clean = per_sample[~mask].mean() if (~mask).any() else per_sample.new_zeros(())
        malicious = per_sample[mask].mean() if mask.any() else per_sample.new_zeros(())
        return StepLoss(per_sample.mean(), clean.detach(), malicious.detach())

    def summary(self) -> dict[str, Any]:
        return dict(self.info)
