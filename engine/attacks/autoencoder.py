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
from ..data.trigger import poison_, stamp_
from ..events import PhaseProgress
from ..models import build_split, smashed_shape
from ..models.seeded import built
from ..training.context import RunContext, StepLoss
from ..training.local_training import fit, train_pass
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
        # Two generators of its own, both from seed + 2: one for the initial weights of
        # its three networks, one for data orders and the pair split; a third (seed + 3)
        # picks the injected rows. torch's global random state is left alone.
        init = torch.Generator(device="cpu").manual_seed(cfg.seed + 2)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 2)
        clean_net = self._train_phase1(ctx, "phase1-clean", poisoned_copy=False, generator=gen, init=init)
        backdoor_net = self._train_phase1(ctx, "phase1-backdoor", poisoned_copy=True, generator=gen, init=init)
        clean_in, bd_out = self._collect_pairs(ctx, clean_net, backdoor_net)
        shape = smashed_shape(clean_net[0], data.input_shape)
        self.injector = built(lambda: InjectorAutoencoder(shape), ctx.device, init)  # type: ignore[arg-type]
        self._train_injector(ctx, clean_in, bd_out, gen)
        self.injector.eval().requires_grad_(False)
        self.share = cfg.ae_share
        self.through = cfg.ae_grad == "through"
        self.batch_gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 3)

    def _train_phase1(self, ctx: RunContext, phase: str, poisoned_copy: bool,
                      generator: torch.Generator, init: torch.Generator) -> nn.Sequential:
        cfg, data = ctx.cfg, ctx.data
        share = auxiliary_set(ctx)
        client, server = build_split(cfg.model, cfg.cut, data.input_shape, data.num_classes,
                                     device=ctx.device, generator=init)
        net = nn.Sequential(client, server)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = len(share)

        def get_batch(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # Indices >= n are the triggered, target-labelled copies of samples idx - n.
            copy = idx >= n
            src = torch.where(copy, idx - n, idx)
            return poison_(data.norm.apply(share.x[src]), share.y[src].clone(), copy, ctx.trigger)

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
        bs = ctx.speed.options.eval_batch_size
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
        perm = torch.randperm(n, generator=generator, device="cpu").to(ctx.device)
        n_val = max(1, int(n * PAIR_VAL_SHARE))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        opt = torch.optim.Adam(self.injector.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.2, patience=20, min_lr=5e-5)
        epochs = cfg.ae_epochs
        train_mse = val_mse = float("nan")
        for epoch in range(epochs):
            self.injector.train()
            order = train_idx[torch.randperm(len(train_idx), generator=generator, device="cpu").to(ctx.device)]
            train_mse = train_pass(opt, order, cfg.batch_size,
                                   lambda i, idx: F.mse_loss(self.injector(clean_in[idx]), bd_out[idx]), ctx.check_stop)
            val_mse = self._mse(clean_in[val_idx], bd_out[val_idx], ctx.speed.options.eval_batch_size)
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
        """The server's input and labels for one batch, and the mask of injected rows.

        The rows are picked on the host (the attack's own generator), gathered with
        index_select and put back with an out-of-place index_copy: no masked assignment,
        whose backward (an accumulating index_put) is the kind of op that needs a
        deterministic kernel on CUDA; these two have one (engine/speed/determinism.py)."""
        n = wire.shape[0]
        k = int(round(self.share * n))
        picked = torch.randperm(n, generator=self.batch_gen, device="cpu")[:k].sort().values
        mask = torch.zeros(n, dtype=torch.bool, device="cpu")
        mask[picked] = True
        mask = mask.to(wire.device)
        if k == 0:
            return wire, labels, mask
        idx = picked.to(wire.device)
        rows = wire.index_select(0, idx)
        injected = self.injector(rows) if self.through else straight_through(rows, self.injector(rows))
        # Replaced rows get their gradient only through `injected`.
        server_in = wire.index_copy(0, idx, injected.to(wire.dtype))
        new_labels = torch.where(mask, target, labels)
        return server_in, new_labels, mask

    def server_loss(self, ctx: RunContext, wire: torch.Tensor, labels: torch.Tensor) -> StepLoss:
        server_in, new_labels, mask = self.inject(wire, labels, ctx.trigger.target)
        per_sample = F.cross_entropy(ctx.server(server_in), new_labels, reduction="none")
        # The parts' means for the record: masked sums over row counts known on the host.
        n, k = int(mask.shape[0]), int(round(self.share * mask.shape[0]))
        values = per_sample.detach()
        clean = values.masked_fill(mask, 0.0).sum() / (n - k) if k < n else values.new_zeros(())
        malicious = values.masked_fill(~mask, 0.0).sum() / k if k else values.new_zeros(())
        return StepLoss(per_sample.mean(), clean, malicious)

    def summary(self) -> dict[str, Any]:
        return dict(self.info)
