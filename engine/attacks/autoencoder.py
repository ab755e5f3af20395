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

`ae_variant` "code" follows the trace of the authors' code instead (docs/protocol.md
section 7, "The code variant"): the clean reference network's server part is the run's
own server, trained with its own optimizer, so deployment starts from it with the LR
schedule already `ae_phase1_epochs` epochs on; the backdoored network sees every sample
poisoned; the injector is the trace's Tanh autoencoder, fitted on every pair, and the
server's optimizer steps (with zero gradients) along with it, as the trace's loop does.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RunConfig, lr_multiplier
from ..data.trigger import poison_, stamp_
from ..events import PhaseProgress
from ..models import build_split, smashed_shape
from ..models.seeded import built
from ..speed.adam import set_lr
from ..training.context import RunContext, StepLoss
from ..training.local_training import fit, train_pass
from .base import Attack
from .injector import injector_for
from .poisoned import auxiliary_set

PAIR_VAL_SHARE = 0.1
# Phase-1 training data: the clean share; the share plus a poisoned copy of every sample
# (the paper's "100% poisoned"); every sample poisoned (the trace of the authors' code).
PHASE1_DATA = ("clean", "copy", "all")


def straight_through(inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Forward: `outputs`. Backward: the incoming gradient goes to `inputs` unchanged."""
    return inputs + (outputs - inputs).detach()


class Together:
    """Several optimizers stepped as one: what fit and train_pass call (zero_grad, step,
    param_groups for the epoch's LR)."""

    def __init__(self, *optimizers: Any) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.optimizers for group in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()


class IdleSteps:
    """An optimizer stepped while its parameters get no gradient, as a training loop that
    zeroes (not drops) every optimizer's gradients and steps them all does under torch
    1.x: each step applies only weight decay and the decaying Adam moments."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)

    def step(self) -> None:
        self.optimizer.step()


class AutoencoderAttack(Attack):
    name = "autoencoder"

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.train_acc: list[float] = []
        # The code variant's: the run's config and server optimizer, whose LR it moves.
        self.cfg: RunConfig | None = None
        self.server_opt: torch.optim.Optimizer | None = None
        self.server_offset = 0
        self.epoch = 0
        self._hits: torch.Tensor | None = None
        self._rows = 0

    # ---------------------------------------------------------------- phases 1-3
    def prepare(self, ctx: RunContext) -> None:
        cfg, data = ctx.cfg, ctx.data
        # Two generators of its own, both from seed + 2: one for the initial weights of
        # its three networks, one for data orders and the pair split; a third (seed + 3)
        # picks the injected rows. torch's global random state is left alone.
        init = torch.Generator(device="cpu").manual_seed(cfg.seed + 2)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 2)
        code = cfg.ae_variant == "code"
        clean_net = self._train_phase1(ctx, "phase1-clean", "clean", generator=gen, init=init, on_server=code)
        backdoor_net = self._train_phase1(ctx, "phase1-backdoor", "all" if code else "copy", generator=gen, init=init)
        clean_in, bd_out = self._collect_pairs(ctx, clean_net, backdoor_net)
        shape = smashed_shape(clean_net[0], data.input_shape)
        self.injector = built(lambda: injector_for(cfg.ae_variant, shape), ctx.device, init)  # type: ignore[arg-type]
        if code:
            # The server's schedule has run through phase 1: it stays that far on.
            self.cfg, self.server_opt, self.server_offset = cfg, ctx.server_opt, cfg.ae_phase1_epochs
            set_lr(ctx.server_opt, cfg.lr * lr_multiplier(cfg, self.server_offset))
            self.info.update(server_schedule_offset=self.server_offset)
            before = nn.utils.parameters_to_vector(ctx.server.parameters()).detach().clone()
        self._train_injector(ctx, clean_in, bd_out, gen, all_pairs=code)
        if code:
            # How far phase 3's idle steps moved the server: |change| / |weights|.
            after = nn.utils.parameters_to_vector(ctx.server.parameters()).detach()
            self.info.update(server_phase3_drift=float((after - before).norm() / before.norm()))
        self.injector.eval().requires_grad_(False)
        self.share = cfg.ae_share
        self.through = cfg.ae_grad == "through"
        self.batch_gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 3)

    def _train_phase1(self, ctx: RunContext, phase: str, poisoned: str,
                      generator: torch.Generator, init: torch.Generator, on_server: bool = False) -> nn.Sequential:
        """A whole network trained on the attacker's share, `poisoned` one of PHASE1_DATA.
        With `on_server`, its server part is the run's own server, stepped by the run's
        own server optimizer (the code variant's clean reference network)."""
        assert poisoned in PHASE1_DATA, poisoned
        cfg, data = ctx.cfg, ctx.data
        share = auxiliary_set(ctx)
        client, server = build_split(cfg.model, cfg.cut, data.input_shape, data.num_classes,
                                     device=ctx.device, generator=init)
        if on_server:
            net = nn.Sequential(client, ctx.server)
            opt: Any = Together(torch.optim.Adam(client.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
                                ctx.server_opt)
        else:
            net = nn.Sequential(client, server)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = len(share)

        def get_batch(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # "copy": indices >= n are the triggered, target-labelled copies of samples idx - n.
            stamped = torch.ones_like(idx, dtype=torch.bool) if poisoned == "all" else idx >= n
            src = torch.where(stamped, idx - n, idx) if poisoned == "copy" else idx
            return poison_(data.norm.apply(share.x[src]), share.y[src].clone(), stamped, ctx.trigger)

        epochs = cfg.ae_phase1_epochs
        fit(net, opt, 2 * n if poisoned == "copy" else n, get_batch, epochs, cfg.batch_size, generator, ctx.device,
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
                        generator: torch.Generator, all_pairs: bool = False) -> None:
        """Phase 3. With `all_pairs` (the code variant) the injector trains on every pair,
        its plateau schedule follows the error on those same pairs, and the server's
        optimizer (set by prepare) steps beside it with zero gradients."""
        cfg = ctx.cfg
        n = clean_in.shape[0]
        perm = torch.randperm(n, generator=generator, device="cpu").to(ctx.device)
        n_val = 0 if all_pairs else max(1, int(n * PAIR_VAL_SHARE))
        val_idx, train_idx = (perm, perm) if all_pairs else (perm[:n_val], perm[n_val:])
        opt = torch.optim.Adam(self.injector.parameters(), lr=cfg.lr)
        stepped: Any = Together(opt, IdleSteps(self.server_opt)) if all_pairs and self.server_opt is not None else opt
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.2, patience=20, min_lr=5e-5)
        epochs = cfg.ae_epochs
        train_mse = val_mse = float("nan")
        val_key = "all_pairs_mse" if all_pairs else "val_mse"
        for epoch in range(epochs):
            self.injector.train()
            order = train_idx[torch.randperm(len(train_idx), generator=generator, device="cpu").to(ctx.device)]
            train_mse = train_pass(stepped, order, cfg.batch_size,
                                   lambda i, idx: F.mse_loss(self.injector(clean_in[idx]), bd_out[idx]), ctx.check_stop)
            val_mse = self._mse(clean_in[val_idx], bd_out[val_idx], ctx.speed.options.eval_batch_size)
            sched.step(val_mse)
            ctx.emit(PhaseProgress(ctx.run_id, "phase3-autoencoder", epoch + 1, epochs, train_mse,
                                   {"train_mse": train_mse, val_key: val_mse, "lr": opt.param_groups[0]["lr"]}))
        self.info.update({"ae_train_mse": train_mse, f"ae_{val_key}": val_mse, "ae_val_pairs": int(n_val)})

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

    def start_epoch(self, ctx: RunContext, epoch: int) -> None:
        """The epoch whose LR set_lr is about to be given (the protocol calls this first)."""
        self.epoch = epoch

    def set_lr(self, lr: float) -> None:
        """The code variant: the server's LR is its schedule's, `ae_phase1_epochs` on."""
        if self.server_opt is not None and self.cfg is not None:
            server_lr = self.cfg.lr * lr_multiplier(self.cfg, self.server_offset + self.epoch)
            set_lr(self.server_opt, server_lr)
            self.info.setdefault("server_lr_first", server_lr)

    def end_epoch(self, ctx: RunContext, epoch: int) -> None:
        """The epoch's train accuracy as the authors' code reports it: predictions against
        the labels the server trained on (replaced rows count as right only when classified
        as the target), over every row of the epoch."""
        if self._rows:
            self.train_acc.append(100.0 * int(self._hits) / self._rows)  # type: ignore[arg-type]
        self._hits, self._rows = None, 0

    def server_loss(self, ctx: RunContext, wire: torch.Tensor, labels: torch.Tensor) -> StepLoss:
        server_in, new_labels, mask = self.inject(wire, labels, ctx.trigger.target)
        logits = ctx.server(server_in)
        per_sample = F.cross_entropy(logits, new_labels, reduction="none")
        hits = (logits.detach().argmax(1) == new_labels).sum()
        self._hits = hits if self._hits is None else self._hits + hits
        self._rows += int(new_labels.shape[0])
        # The parts' means for the record: masked sums over row counts known on the host.
        n, k = int(mask.shape[0]), int(round(self.share * mask.shape[0]))
        values = per_sample.detach()
        clean = values.masked_fill(mask, 0.0).sum() / (n - k) if k < n else values.new_zeros(())
        malicious = values.masked_fill(~mask, 0.0).sum() / k if k else values.new_zeros(())
        return StepLoss(per_sample.mean(), clean, malicious)

    def summary(self) -> dict[str, Any]:
        return {**self.info, "train_acc": list(self.train_acc)}
