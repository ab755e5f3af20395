"""docs/protocol.md section 4: the three networks as stages, split at cuts 1-3."""
from __future__ import annotations

import functools
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.models import build_stages, smashed_shape, split
from engine.training.context import StepLoss
from engine.training.protocol import wire_step

MODELS = ("lenet", "stripnet", "resnet9")
CUTS = (1, 2, 3)
INPUTS = ((1, 28, 28), (3, 32, 32))


def expected_smashed(model: str, cut: int, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    _, h, w = shape
    if model == "lenet":
        return {1: (6, h - 4, w - 4), 2: (6, (h - 4) // 2, (w - 4) // 2),
                3: (16, (h - 4) // 2 - 4, (w - 4) // 2 - 4)}[cut]
    if model == "stripnet":
        return (32, h, w)
    return {1: (64, h, w), 2: (128, h // 2, w // 2), 3: (128, h // 2, w // 2)}[cut]


@functools.lru_cache(maxsize=None)
def stages_for(model: str, shape: tuple[int, int, int]) -> list[nn.Module]:
    """One seeded build per (model, input), shared by the tests (they only read weights)."""
    torch.manual_seed(0)
    return build_stages(model, shape, 10)


def first_linear(module: nn.Module) -> nn.Linear:
    return next(m for m in module.modules() if isinstance(m, nn.Linear))


@pytest.mark.parametrize("shape", INPUTS, ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("model", MODELS)
def test_split_equals_joined_model(model, cut, shape):
    stages = stages_for(model, shape)
    assert len(stages) == 4
    client, server = split(stages, cut)
    joined = nn.Sequential(*stages).eval()
    client.eval()
    server.eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        smashed = client(x)
        out = server(smashed)
        ref = joined(x)
    assert tuple(smashed.shape[1:]) == expected_smashed(model, cut, shape)
    assert smashed_shape(client, shape) == expected_smashed(model, cut, shape)
    assert out.shape == (2, 10)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.parametrize("shape,features", [((1, 28, 28), 256), ((3, 32, 32), 400)])
def test_lenet_flatten_size(shape, features):
    _, server = split(stages_for("lenet", shape), 1)
    assert first_linear(server).in_features == features


@pytest.mark.parametrize("model,features", [("stripnet", {28: 128 * 3 * 3, 32: 128 * 4 * 4}),
                                            ("resnet9", {28: 512 * 2 * 2, 32: 512})])
def test_head_sizes_follow_the_input(model, features):
    """Linear input sizes are computed from the input, not hard-coded per dataset."""
    for shape in INPUTS:
        assert first_linear(stages_for(model, shape)[3]).in_features == features[shape[1]]


def test_split_rejects_bad_cut():
    stages = build_stages("lenet", (1, 28, 28), 10)
    for cut in (0, 4):
        with pytest.raises(ValueError):
            split(stages, cut)


# Every model and cut; LeNet on both inputs, the heavier two on one each (CPU time).
GRAD_CASES = [("lenet", (1, 28, 28)), ("lenet", (3, 32, 32)), ("stripnet", (1, 28, 28)), ("resnet9", (3, 32, 32))]


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("model,shape", GRAD_CASES, ids=[f"{m}-{s[0]}x{s[1]}" for m, s in GRAD_CASES])
def test_wire_gradient_equals_joined_autograd(model, shape, cut):
    """The gradient that crosses the wire and the client's parameter gradients are those
    of ordinary backprop through the joined network (train mode, same dropout draws)."""
    stages = stages_for(model, shape)
    client, server = split(stages, cut)
    joined = nn.Sequential(*stages).train()
    joined.zero_grad(set_to_none=True)  # the stages are shared between tests
    x = torch.randn(2, *shape)
    y = torch.tensor([3, 7])

    # Reference: plain autograd through the joined model, keeping the cut's output grad.
    kept: list[torch.Tensor] = []

    def keep(module, inputs, output):
        output.retain_grad()
        kept.append(output)

    handle = stages[cut - 1].register_forward_hook(keep)
    torch.manual_seed(1)
    F.cross_entropy(joined(x), y).backward()
    handle.remove()
    ref_cut_grad = kept[0].grad.clone()
    ref_param_grads = [p.grad.clone() for p in client.parameters()]
    joined.zero_grad(set_to_none=True)

    # The protocol: client forward, wire, server loss, wire gradient back to the client.
    wires: list[torch.Tensor] = []

    def server_side(wire: torch.Tensor) -> StepLoss:
        assert wire.is_leaf and wire.requires_grad
        wires.append(wire)
        loss = F.cross_entropy(server(wire), y)
        return StepLoss(loss, loss.detach())

    frozen = torch.optim.SGD(client.parameters(), lr=0.0)  # keeps .grad, leaves weights
    torch.manual_seed(1)
    wire_step(client, server_side, frozen, x, lambda: None)

    torch.testing.assert_close(wires[0].grad, ref_cut_grad)
    for got, ref in zip((p.grad for p in client.parameters()), ref_param_grads):
        torch.testing.assert_close(got, ref)
    # The server's parameters got their ordinary gradients too.
    assert all(p.grad is not None for p in server.parameters())
