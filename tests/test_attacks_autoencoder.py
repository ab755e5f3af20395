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
