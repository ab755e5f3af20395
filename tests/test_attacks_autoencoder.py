"""Attack 2: the injector autoencoder (docs/protocol.md section 7)."""
import pytest
import torch
import torch.nn.functional as F

from engine.attacks.autoencoder import AutoencoderAttack
from engine.attacks.injector import InjectorAutoencoder, TraceAutoencoder, injector_for
from engine.models import build_split, smashed_shape
from engine.store import RunStore
from engine.training.runner import run


@pytest.mark.parametrize("variant", ["paper", "code"])
@pytest.mark.parametrize("model", ["lenet", "stripnet", "resnet9"])
@pytest.mark.parametrize("cut", [1, 2, 3])
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32)])
def test_injector_maps_every_smashed_shape_to_itself(variant, model, cut, input_shape):
    """Both variants' injectors fit every (model, cut); the code variant's (the trace's)
    ends in a Tanh, so even smashed data far outside (-1, 1) maps into it."""
    client, _ = build_split(model, cut, input_shape, 10)
    shape = smashed_shape(client, input_shape)
    smashed = 50 * client(torch.rand(2, *input_shape))
    injector = injector_for(variant, shape)
    out = injector(smashed)
    assert out.shape == smashed.shape
    assert isinstance(injector, TraceAutoencoder if variant == "code" else InjectorAutoencoder)
    if variant == "code":
        assert isinstance(list(injector.modules())[-1], torch.nn.Tanh)
        assert out.abs().max() < 1


def deployed_attack(grad_mode: str, shape=(6, 24, 24), share=0.5):
    attack = AutoencoderAttack()
    torch.manual_seed(0)
    attack.injector = InjectorAutoencoder(shape).eval().requires_grad_(False)
    attack.share, attack.through = share, grad_mode == "through"
    attack.batch_gen = torch.Generator().manual_seed(0)
    return attack


def test_injection_replaces_share_of_rows_and_labels():
    attack = deployed_attack("straight")
    wire = torch.randn(10, 6, 24, 24)
    labels = torch.arange(10) % 10
    server_in, new_labels, mask = attack.inject(wire, labels, target=0)
    assert int(mask.sum()) == 5
    assert torch.equal(server_in[~mask], wire[~mask])
    torch.testing.assert_close(server_in[mask], attack.injector(wire[mask]))
    assert (new_labels[mask] == 0).all() and torch.equal(new_labels[~mask], labels[~mask])


def gradients(grad_mode: str):
    """(gradient reaching the wire, gradient w.r.t. the server's input, the attack, mask, wire)."""
    attack = deployed_attack(grad_mode)
    torch.manual_seed(1)
    server = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6 * 24 * 24, 10))
    wire = torch.randn(8, 6, 24, 24).requires_grad_()
    labels = torch.randint(0, 10, (8,))
    server_in, new_labels, mask = attack.inject(wire, labels, target=0)
    server_in.retain_grad()
    F.cross_entropy(server(server_in), new_labels).backward()
    return wire.grad, server_in.grad, attack, mask, wire


def test_straight_sends_the_gradient_wrt_the_autoencoder_output():
    wire_grad, server_in_grad, _, mask, _ = gradients("straight")
    # Every row, injected or not, receives exactly dL/d(server input row).
    torch.testing.assert_close(wire_grad, server_in_grad)


def test_through_sends_the_gradient_through_the_autoencoder():
    wire_grad, server_in_grad, attack, mask, wire = gradients("through")
    torch.testing.assert_close(wire_grad[~mask], server_in_grad[~mask])
    rows = wire.detach()[mask].requires_grad_()
    (vjp,) = torch.autograd.grad(attack.injector(rows), rows, server_in_grad[mask])
    torch.testing.assert_close(wire_grad[mask], vjp)
    # ...which is not what `straight` sends.
    assert not torch.allclose(wire_grad[mask], server_in_grad[mask])


def test_autoencoder_run_end_to_end_records_phases(tmp_path, tiny):
    cfg = tiny.replace(attack="autoencoder", ae_phase1_epochs=3, ae_epochs=2, train_limit=400)
    store = RunStore(tmp_path)
    result = run(cfg, store.recorder())
    assert result.status == "completed", result.error
    doc = store.load(result.run_id)
    phases = doc["phases"]
    assert set(phases) == {"phase1-clean", "phase1-backdoor", "phase2-pairs", "phase3-autoencoder"}
    assert len(phases["phase1-clean"]["history"]) == 3
    assert len(phases["phase3-autoencoder"]["history"]) == 2
    info = doc["attack_info"]
    assert 0 < info["pairs"] <= info["attacker_samples"] == 200
    assert info["ae_train_mse"] > 0 and info["ae_val_mse"] > 0
    assert doc["epochs"][0]["train_loss_malicious"] is not None


def autoencoder_context(tiny, **changes):
    from engine.config import resolve
    from engine.training.runner import build_context

    events = []
    cfg = resolve(tiny.replace(attack="autoencoder", train_limit=400, **changes))
    return build_context(cfg, events.append, None), events


@pytest.mark.parametrize("poisoned_copy", [False, True])
def test_phase1_trains_on_the_share_and_on_its_whole_poisoned_copy(tiny, monkeypatch, poisoned_copy):
    """Phase 1's backdoored network sees every sample of the attacker's share plus a
    triggered, target-labelled copy of every one of them (100% poisoned copy); the clean
    network the share alone."""
    from engine.attacks import autoencoder
    from engine.data.trigger import stamp

    ctx, _ = autoencoder_context(tiny)
    seen = {}
    monkeypatch.setattr(autoencoder, "fit", lambda net, opt, n, get_batch, *a, **k: seen.update(n=n, batch=get_batch))
    ctx.attack._train_phase1(ctx, "phase", "copy" if poisoned_copy else "clean",
                             generator=torch.Generator().manual_seed(0), init=torch.Generator().manual_seed(1))
    share, norm, t = ctx.data.shares[0], ctx.data.norm, ctx.trigger
    n = len(share)
    assert seen["n"] == (2 * n if poisoned_copy else n)
    x, y = seen["batch"](torch.arange(seen["n"]))
    assert torch.equal(x[:n], norm.apply(share.x)) and torch.equal(y[:n], share.y)
    if poisoned_copy:
        assert torch.equal(x[n:], stamp(norm.apply(share.x), t))
        assert (y[n:] == t.target).all()
        assert not torch.equal(x[n:], x[:n])


class PlantedServer(torch.nn.Module):
    """Classifies a sample as `target` exactly when its bottom-right pixel (far from the
    trigger) is above `threshold`, as some other class otherwise."""

    def __init__(self, target: int, threshold: float) -> None:
        super().__init__()
        self.target, self.threshold = target, threshold

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(z.shape[0], 10)
        logits[:, self.target] = torch.where(z[:, 0, -1, -1] > self.threshold, 1.0, -1.0)
        return logits


def test_phase2_keeps_only_pairs_whose_triggered_copy_hits_the_target(tiny):
    """Phase 2's filter against a planted backdoored network whose hits are known: the
    pairs kept are (clean client(x), backdoored client(x + trigger)) for exactly the
    samples it classifies as the target, in share order."""
    from engine.data.trigger import stamp

    ctx, events = autoencoder_context(tiny, eval_batch_size=64)  # several batches
    share, t = ctx.data.shares[0], ctx.trigger
    x = ctx.data.norm.apply(share.x)
    threshold = float(x[:, 0, -1, -1].median())
    hit = x[:, 0, -1, -1] > threshold
    assert 0 < int(hit.sum()) < len(share)
    clean_net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Identity())
    backdoor_net = torch.nn.Sequential(torch.nn.Identity(), PlantedServer(t.target, threshold))
    clean_in, bd_out = ctx.attack._collect_pairs(ctx, clean_net, backdoor_net)
    assert torch.equal(clean_in, x[hit])
    assert torch.equal(bd_out, stamp(x, t)[hit])
    assert ctx.attack.info["pairs"] == int(hit.sum())


def test_injector_mse_falls_over_its_epochs(tiny):
    """Phase 3 on pairs with a learnable map (clean smashed data -> the same plus a fixed
    patch): the injector's training and validation MSE both fall from the first epoch
    to the last."""
    from engine.events import PhaseProgress

    ctx, events = autoencoder_context(tiny, ae_epochs=8, batch_size=32)
    g = torch.Generator().manual_seed(0)
    clean_in = torch.relu(torch.randn(160, 6, 12, 12, generator=g))
    bd_out = clean_in.clone()
    bd_out[:, :, :4, 4:8] += 2.0
    ctx.attack.injector = InjectorAutoencoder((6, 12, 12))
    ctx.attack._train_injector(ctx, clean_in, bd_out, torch.Generator().manual_seed(1))
    history = [e.info for e in events if isinstance(e, PhaseProgress) and e.phase == "phase3-autoencoder"]
    assert len(history) == 8
    assert history[-1]["train_mse"] < 0.5 * history[0]["train_mse"]
    assert history[-1]["val_mse"] < 0.5 * history[0]["val_mse"]


# ------------------------------------------------------------------ --ae-variant code


def test_ae_variant_is_checked_and_defaults_to_the_paper():
    from engine.config import ConfigError, RunConfig, stored_config

    assert RunConfig().ae_variant == "paper"
    with pytest.raises(ConfigError, match="--ae-variant must be one of paper, code"):
        RunConfig(ae_variant="authors").replace()
    # A run file from before the option existed ran the paper's variant.
    legacy = {k: v for k, v in RunConfig(attack="autoencoder").to_dict().items() if k != "ae_variant"}
    assert stored_config(legacy).ae_variant == "paper"


def test_ae_variant_splits_autoencoder_experiments_only():
    from engine.config import RunConfig
    from engine.sweeps.grid import experiment_key

    ae = RunConfig(attack="autoencoder").to_dict()
    assert experiment_key(ae) != experiment_key({**ae, "ae_variant": "code"})
    none = RunConfig().to_dict()
    assert experiment_key(none) == experiment_key({**none, "ae_variant": "code"})


def test_trace_autoencoder_pads_only_sides_that_are_not_multiples_of_8():
    assert TraceAutoencoder((6, 24, 24)).padded == (24, 24)  # MNIST LeNet cut 1: the trace's own plan
    assert TraceAutoencoder((16, 8, 8)).padded == (8, 8)
    assert TraceAutoencoder((6, 12, 12)).padded == (16, 16)
    # The latent is 1024 wide, as the trace's 32 * 32.
    assert TraceAutoencoder((6, 24, 24)).encoder[-1].out_features == 1024


class StopPrepare(Exception):
    pass


def prepared_phase1(tiny, monkeypatch, variant):
    """prepare() of `variant` up to phase 2, its two fit calls recorded instead of run."""
    from engine.attacks import autoencoder

    ctx, _ = autoencoder_context(tiny, ae_variant=variant)
    calls = []
    monkeypatch.setattr(autoencoder, "fit", lambda net, opt, n, get_batch, *a, **k: calls.append((net, opt, n, get_batch)))

    def stop(self, ctx, clean_net, backdoor_net):
        raise StopPrepare

    monkeypatch.setattr(AutoencoderAttack, "_collect_pairs", stop)
    with pytest.raises(StopPrepare):
        ctx.attack.prepare(ctx)
    return ctx, calls


def test_code_variant_backdoored_network_sees_only_poisoned_samples(tiny, monkeypatch):
    """The trace trains its backdoored reference network on batches in which every sample
    is stamped and relabelled: the attacker's share once, all of it poisoned."""
    from engine.data.trigger import stamp

    ctx, calls = prepared_phase1(tiny, monkeypatch, "code")
    (_, _, n_clean, clean_batch), (_, _, n_bd, bd_batch) = calls
    share, norm, t = ctx.data.shares[0], ctx.data.norm, ctx.trigger
    assert n_clean == n_bd == len(share)
    x, y = bd_batch(torch.arange(n_bd))
    assert torch.equal(x, stamp(norm.apply(share.x), t))
    assert (y == t.target).all()
    x, y = clean_batch(torch.arange(n_clean))
    assert torch.equal(x, norm.apply(share.x)) and torch.equal(y, share.y)


def test_code_variant_clean_reference_network_is_the_runs_own_server(tiny, monkeypatch):
    """The code variant's clean reference network trains the deployment server, with the
    server's own optimizer; the paper's trains a server of its own."""
    from engine.attacks.autoencoder import Together

    ctx, calls = prepared_phase1(tiny, monkeypatch, "code")
    clean_net, clean_opt = calls[0][0], calls[0][1]
    assert clean_net[1] is ctx.server
    assert isinstance(clean_opt, Together) and ctx.server_opt in clean_opt.optimizers
    assert calls[1][0][1] is not ctx.server

    ctx, calls = prepared_phase1(tiny, monkeypatch, "paper")
    assert all(net[1] is not ctx.server for net, *_ in calls)
    assert calls[1][2] == 2 * len(ctx.data.shares[0])  # the paper's share plus its poisoned copy


def test_paper_variant_never_reaches_the_code_variants_parts(tiny, monkeypatch):
    """The default variant runs without the code variant's networks, optimizer wrappers or
    LR offset (its numbers were also compared with the code before the option existed:
    identical, see the commit that added it)."""
    from engine.attacks import autoencoder, injector

    def refuse(*args, **kwargs):
        raise AssertionError("the paper variant used a part of the code variant")

    monkeypatch.setattr(injector.TraceAutoencoder, "__init__", refuse)
    monkeypatch.setattr(autoencoder.Together, "__init__", refuse)
    monkeypatch.setattr(autoencoder.IdleSteps, "__init__", refuse)
    cfg = tiny.replace(attack="autoencoder", ae_phase1_epochs=2, ae_epochs=2, train_limit=400, epochs=2)
    events = []
    result = run(cfg, events.append)
    assert result.status == "completed", result.error
    info = events[-1].attack_info
    assert "server_schedule_offset" not in info and "server_phase3_drift" not in info
    assert info["ae_val_pairs"] >= 1


def test_code_variant_deploys_the_trained_server_at_its_stepped_down_lr(tiny, monkeypatch, tmp_path):
    """Deployment starts from the server the clean reference network trained (moved only by
    phase 3's idle optimizer steps), its LR `ae_phase1_epochs` epochs further along the
    schedule than the clients'; the run file records the variant."""
    from engine.attacks import autoencoder
    from engine.config import lr_multiplier
    from engine.training import runner

    cfg = tiny.replace(attack="autoencoder", ae_variant="code", ae_phase1_epochs=2, ae_epochs=2, train_limit=400,
                       epochs=2, patience=0, lr_milestones=(1, 3))
    seen = {}
    real_fit, real_train_epoch = autoencoder.fit, runner.train_epoch

    def vector(module):
        return torch.nn.utils.parameters_to_vector(module.parameters()).detach().clone()

    def fit(net, *args, **kwargs):
        if "start" not in seen:  # the first fit: the clean reference network
            seen["start"] = vector(net[1])
        out = real_fit(net, *args, **kwargs)
        seen.setdefault("trained", vector(net[1]))
        return out

    def train_epoch(ctx):
        seen.setdefault("deployed", vector(ctx.server))
        seen.setdefault("lrs", []).append((ctx.server_opt.param_groups[0]["lr"], ctx.client_opts[0].param_groups[0]["lr"]))
        return real_train_epoch(ctx)

    monkeypatch.setattr(autoencoder, "fit", fit)
    monkeypatch.setattr(runner, "train_epoch", train_epoch)
    store = RunStore(tmp_path)
    result = run(cfg, store.recorder())
    assert result.status == "completed", result.error
    doc = store.load(result.run_id)
    assert doc["config"]["ae_variant"] == "code"
    info = doc["attack_info"]
    moved = (seen["trained"] - seen["start"]).norm()
    drift = (seen["deployed"] - seen["trained"]).norm()
    assert moved > 0 and drift < moved
    assert info["server_phase3_drift"] == pytest.approx(float(drift / seen["trained"].norm()), rel=1e-4)
    assert info["server_schedule_offset"] == 2
    for epoch, (server_lr, client_lr) in enumerate(seen["lrs"]):
        assert server_lr == pytest.approx(cfg.lr * lr_multiplier(cfg, 2 + epoch))
        assert client_lr == pytest.approx(cfg.lr * lr_multiplier(cfg, epoch))
    assert seen["lrs"][0][0] < seen["lrs"][0][1]
    assert info["ae_val_pairs"] == 0 and info["ae_all_pairs_mse"] > 0
    assert len(info["train_acc"]) == 2


def test_train_accuracy_counts_replaced_rows_against_the_target(tiny):
    """end_epoch's train accuracy: predictions against the labels the server trained on.
    With a server that always answers the target, the hits are the replaced rows plus
    the untouched rows whose own label is the target."""
    from types import SimpleNamespace

    class Always(torch.nn.Module):
        def forward(self, z):
            logits = torch.zeros(z.shape[0], 10)
            logits[:, 0] = 1.0
            return logits

    Ctx = SimpleNamespace(server=Always(), trigger=SimpleNamespace(target=0))
    attack = deployed_attack("straight", share=0.25)
    labels = torch.tensor([0, 1, 2, 3, 0, 5, 6, 7])
    expected = 0
    for _ in range(3):
        gen_state = attack.batch_gen.get_state()
        _, new_labels, mask = attack.inject(torch.randn(8, 6, 24, 24), labels, 0)
        attack.batch_gen.set_state(gen_state)
        expected += int(mask.sum()) + int(((labels == 0) & ~mask).sum())
        attack.server_loss(Ctx, torch.randn(8, 6, 24, 24), labels)
    attack.end_epoch(Ctx, 0)
    assert attack.train_acc == [pytest.approx(100.0 * expected / 24)]
