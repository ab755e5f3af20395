"""Attack 9a: the feature-space hijacking backdoor (docs/protocol.md section 9a)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.config import resolve
from engine.events import PhaseProgress
from engine.store import RunStore
from engine.training.runner import build_context, run
from tests.conftest import tiny_config


def hijack_config(**changes):
    base = dict(attack="hijack", epochs=3, hijack_warmup_epochs=1, hijack_shadow_epochs=2, clients=1)
    base.update(changes)
    return tiny_config(**base)


def test_every_stage_runs_and_records_its_losses_per_epoch(tmp_path):
    store = RunStore(tmp_path)
    events = []
    recorder = store.recorder()

    def emit(event):
        events.append(event)
        recorder(event)

    cfg = hijack_config()
    result = run(cfg, emit)
    assert result.status == "completed"
    doc = store.load(recorder.doc["id"])
    phases = doc["phases"]
    assert list(phases) == ["hijack-steal", "hijack-finetune", "hijack-implant"]
    for name in ("hijack-steal", "hijack-finetune"):
        history = phases[name]["history"]
        assert [h["epoch"] for h in history] == [1, 2]
        # Stolen and finetuned after the honest warm-up epoch.
        assert all(h["after_epoch"] == cfg.hijack_warmup_epochs for h in history)
        assert all(isinstance(h["loss"], float) and "shadow_acc" in h for h in history)
    implant = phases["hijack-implant"]["history"]
    # One entry per training epoch after the warm-up, written after that epoch's metrics.
    assert [h["after_epoch"] for h in implant] == [2, 3]
    for h in implant:
        for key in ("d_loss", "gp", "wasserstein", "f_loss", "task_loss", "alignment"):
            assert isinstance(h[key], float), key
        assert len(h["alignment_per_class"]) == 10
    # The shadow learned the backdoor in Finetune: that is what Implant transfers.
    assert phases["hijack-finetune"]["history"][-1]["shadow_asr"] > 50
    # The phase order in the event stream: warm-up epoch, Steal, Finetune, then epochs with Implant.
    kinds = [type(e).__name__ if not isinstance(e, PhaseProgress) else e.phase for e in events]
    first_implant = kinds.index("hijack-implant")
    assert kinds.index("EpochMetrics") < kinds.index("hijack-steal") < kinds.index("hijack-finetune") < first_implant
    assert doc["attack_info"]["stage"] == "implant" and doc["config"]["trigger"] == "patch"


def implant_context(**changes):
    cfg = resolve(hijack_config(**changes))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.attack.prepare(ctx)
    ctx.attack.start_epoch(ctx, cfg.hijack_warmup_epochs)  # Steal and Finetune: Implant from now on
    assert ctx.attack.stage == "implant"
    return cfg, ctx


@pytest.mark.parametrize("beta,train_h,critic", [(0.3, False, "conditional"), (0.0, False, "conditional"),
                                                 (1.0, False, "conditional"), (0.5, True, "conditional"),
                                                 (0.0, False, "plain")])
def test_client_receives_beta_task_plus_one_minus_beta_grad_of_mean_d(beta, train_h, critic):
    cfg, ctx = implant_context(hijack_beta=beta, hijack_train_h=train_h, hijack_critic=critic)
    share = ctx.data.shares[1]
    x, y = ctx.data.norm.apply(share.x[:32]), share.y[:32]
    wire = ctx.client(x).detach().requires_grad_()
    d_before = [p.clone() for p in ctx.attack.disc.parameters()]
    step = ctx.attack.server_loss(ctx, wire, y)
    step.total.backward()
    received = wire.grad.clone()
    # D took its own step first; the client's signal comes from D as it is after it.
    assert any(not torch.equal(a, b) for a, b in zip(d_before, ctx.attack.disc.parameters()))
    probe = wire.detach().requires_grad_()
    task = torch.autograd.grad(F.cross_entropy(ctx.server(probe), y), probe)[0]
    hijack = torch.autograd.grad(ctx.attack.disc(probe, y).mean(), probe)[0]
    torch.testing.assert_close(received, beta * task + (1 - beta) * hijack)
    assert all((p.grad is not None) == train_h for p in ctx.server.parameters())


def test_discriminator_step_lowers_its_loss_on_fixed_features():
    _, ctx = implant_context()
    attack = ctx.attack
    share = ctx.data.shares[1]
    z, y = ctx.client(ctx.data.norm.apply(share.x[:64])).detach(), share.y[:64]
    first = attack.discriminator_step(ctx, z, y)[0].item()
    for _ in range(30):
        last = attack.discriminator_step(ctx, z, y)[0].item()
    assert last < first


def test_hijack_leaves_the_global_rng_alone():
    """The runner seeds the global RNG (dropout, init); the attack's own draws (shadows'
    and D's init, batches, interpolation) must not move it."""
    cfg = resolve(hijack_config())
    ctx = build_context(cfg, lambda e: None, None)
    state = torch.random.get_rng_state()
    ctx.attack.prepare(ctx)
    ctx.attack.start_epoch(ctx, cfg.hijack_warmup_epochs)
    share = ctx.data.shares[1]
    x, y = ctx.data.norm.apply(share.x[:16]), share.y[:16]
    ctx.attack.server_loss(ctx, ctx.client(x).detach().requires_grad_(), y).total.backward()
    assert torch.equal(torch.random.get_rng_state(), state)


def test_aux_size_limits_the_auxiliary_set():
    cfg = resolve(hijack_config(aux_size=40))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.attack.prepare(ctx)
    assert len(ctx.attack.clean.share) == 40 and ctx.attack.summary()["aux_samples"] == 40
    assert int(ctx.attack.poisoned.mask.sum()) == round(cfg.poison_ratio * 40)


def test_discriminator_compares_each_row_with_auxiliary_rows_of_its_class():
    cfg = resolve(hijack_config(aux_size=60))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.attack.prepare(ctx)
    aux_y = ctx.attack.clean.share.y
    present = torch.unique(aux_y)
    labels = present.repeat(30)
    idx = ctx.attack.aux_indices(ctx, labels)
    assert torch.equal(aux_y[idx], labels)
    # Rows are drawn at random within the class, not always the first one.
    assert len(torch.unique(idx)) > len(present)


def test_plain_critic_ignores_the_labels_and_the_conditional_one_does_not():
    scores = {}
    for critic in ("conditional", "plain"):
        cfg = resolve(hijack_config(hijack_critic=critic))
        ctx = build_context(cfg, lambda e: None, None)
        ctx.attack.prepare(ctx)
        share = ctx.data.shares[1]
        z = ctx.client(ctx.data.norm.apply(share.x[:32])).detach()
        y = share.y[:32]
        other = (y + 1) % ctx.data.num_classes
        scores[critic] = [ctx.attack.disc(z, labels) for labels in (y, other)]
        if critic == "plain":
            torch.testing.assert_close(ctx.attack.disc(z), scores[critic][0])
    assert not torch.allclose(*scores["conditional"])
    torch.testing.assert_close(*scores["plain"])


def test_plain_critic_draws_auxiliary_rows_of_any_class():
    cfg = resolve(hijack_config(aux_size=60, hijack_critic="plain"))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.attack.prepare(ctx)
    aux_y = ctx.attack.clean.share.y
    assert len(torch.unique(aux_y)) > 1
    labels = torch.full((300,), int(aux_y[0]))
    drawn = aux_y[ctx.attack.aux_indices(ctx, labels)]
    # Every row asked for one class; the rows drawn span the auxiliary set's classes.
    assert torch.equal(torch.unique(drawn), torch.unique(aux_y))


@pytest.mark.parametrize("finetune", ["h", "both"])
def test_finetune_h_keeps_the_shadows_as_steal_left_them(finetune, monkeypatch):
    from engine.attacks.hijack import HijackAttack

    cfg = resolve(hijack_config(hijack_finetune=finetune))
    ctx = build_context(cfg, lambda e: None, None)
    attack = ctx.attack
    attack.prepare(ctx)
    after_steal = {}
    steal = HijackAttack._steal

    def steal_then_copy(self, ctx, lr):
        steal(self, ctx, lr)
        after_steal.update({k: v.clone() for k, v in self.shadows.state_dict().items()})
        after_steal["h"] = torch.cat([p.detach().flatten().clone() for p in ctx.server.parameters()])

    monkeypatch.setattr(HijackAttack, "_steal", steal_then_copy)
    attack.start_epoch(ctx, cfg.hijack_warmup_epochs)
    same = all(torch.equal(v, after_steal[k]) for k, v in attack.shadows.state_dict().items())
    h_now = torch.cat([p.detach().flatten() for p in ctx.server.parameters()])
    assert same == (finetune == "h")
    assert not torch.equal(h_now, after_steal["h"])  # h learns the backdoor either way
    assert all(p.requires_grad is False for p in attack.shadows.parameters())  # frozen for Implant


def test_clean_task_head_is_h_before_finetune_and_the_task_gradient_goes_through_it(monkeypatch):
    from engine.attacks.hijack import HijackAttack

    before = {}
    steal = HijackAttack._steal

    def copy_then_steal(self, ctx, lr):
        before["h"] = [p.detach().clone() for p in ctx.server.parameters()]
        steal(self, ctx, lr)

    monkeypatch.setattr(HijackAttack, "_steal", copy_then_steal)
    beta = 0.6
    cfg, ctx = implant_context(hijack_task_head="clean", hijack_beta=beta)
    head = ctx.attack.task_head
    assert all(torch.equal(a, b) for a, b in zip(head.parameters(), before["h"]))
    assert any(not torch.equal(a, b) for a, b in zip(ctx.server.parameters(), before["h"]))  # h learnt the backdoor
    share = ctx.data.shares[1]
    x, y = ctx.data.norm.apply(share.x[:32]), share.y[:32]
    wire = ctx.client(x).detach().requires_grad_()
    ctx.attack.server_loss(ctx, wire, y).total.backward()
    probe = wire.detach().requires_grad_()
    task = torch.autograd.grad(F.cross_entropy(head(probe), y), probe)[0]
    hijack = torch.autograd.grad(ctx.attack.disc(probe, y).mean(), probe)[0]
    torch.testing.assert_close(wire.grad, beta * task + (1 - beta) * hijack)
    assert all(p.grad is None for p in head.parameters())


@pytest.mark.slow
def test_h_is_frozen_in_implant_batchnorm_statistics_included():
    """StripNet's server part has BatchNorm: from Implant on (h frozen) its running
    statistics must stay as Finetune left them, though the client's features move."""
    import engine.attacks.hijack as hijack_module
    from engine.config import RunConfig
    from engine.events import WeightsReady

    cfg = RunConfig(dataset="synthetic", model="stripnet", cut=1, clients=1, attack="hijack", epochs=4,
                    hijack_warmup_epochs=1, hijack_shadow_epochs=1, batch_size=32, train_limit=600, eval_limit=100,
                    save_weights=True, device="cpu", seed=2)
    states = []
    original = hijack_module.HijackAttack.start_epoch

    def start_epoch(self, ctx, epoch):
        original(self, ctx, epoch)
        if epoch == ctx.cfg.hijack_warmup_epochs:
            states.append({k: v.clone() for k, v in ctx.server.state_dict().items() if "running" in k})

    hijack_module.HijackAttack.start_epoch = start_epoch
    try:
        final = {}
        run(cfg, emit=lambda e: final.update(e.state) if isinstance(e, WeightsReady) else None)
    finally:
        hijack_module.HijackAttack.start_epoch = original
    (after_finetune,) = states
    assert after_finetune, "StripNet's server part should have BatchNorm statistics"
    for name, value in after_finetune.items():
        assert torch.equal(final["server"][name], value), name
