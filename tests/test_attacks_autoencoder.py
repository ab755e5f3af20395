"""Attack 2: the injector autoencoder (docs/protocol.md section 7)."""
import pytest
import torch
import torch.nn.functional as F

from engine.attacks.autoencoder import AutoencoderAttack
from engine.attacks.injector import InjectorAutoencoder
from engine.models import build_split, smashed_shape
from engine.store import RunStore
from engine.training.runner import run


@pytest.mark.parametrize("model", ["lenet", "stripnet", "resnet9"])
@pytest.mark.parametrize("cut", [1, 2, 3])
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32)])
def test_injector_maps_every_smashed_shape_to_itself(model, cut, input_shape):
    client, _ = build_split(model, cut, input_shape, 10)
    shape = smashed_shape(client, input_shape)
    smashed = client(torch.rand(2, *input_shape))
    out = InjectorAutoencoder(shape)(smashed)
    assert out.shape == smashed.shape


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
