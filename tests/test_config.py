"""RunConfig: validation with one-line messages, JSON round-trip, the paper's defaults."""
from __future__ import annotations

import dataclasses
import json

import pytest

from engine.config import ConfigError, RunConfig, lr_multiplier, resolve, validate


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as err:
        fn(*args, **kwargs)
    message = str(err.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


@pytest.mark.parametrize("changes,flag", [
    ({"cut": 4}, "--cut"),
    ({"cut": 0}, "--cut"),
    ({"alpha": 1.5}, "--alpha"),
    ({"alpha": 0.0}, "--alpha"),
    ({"alpha": -0.1}, "--alpha"),
    ({"clients": 0}, "--clients"),
    ({"dataset": "nope"}, "--dataset"),
    ({"model": "vgg"}, "--model"),
    ({"attack": "magic"}, "--attack"),
    ({"device": "tpu"}, "--device"),
    ({"rr_granularity": "step"}, "--rr-granularity"),
    ({"poison_ratio": 1.2}, "--poison-ratio"),
    ({"epochs": 0}, "--epochs"),
    ({"batch_size": 0}, "--batch-size"),
    ({"lr": 0.0}, "--lr"),
    ({"target": 10}, "--target"),
    ({"cut": "2"}, "--cut"),
    ({"alpha": float("nan")}, "--alpha"),
    ({"loss_halved": 1}, "--loss-halved"),
    ({"lr_milestones": (40, 25)}, "--lr-milestones"),
    ({"hijack_critic": "unconditional"}, "--hijack-critic"),
])
def test_invalid_values_raise_one_line(changes, flag):
    message = one_line_error(RunConfig(**changes).replace)
    assert flag in message


@pytest.mark.parametrize("changes", [
    {"trigger_size": 30},
    {"trigger_row": 25},
    {"trigger_col": 22},
    {"dataset": "synthetic-rgb", "trigger_col": 26},
])
def test_trigger_not_fitting(changes):
    assert "trigger" in one_line_error(validate, RunConfig(**changes))


def test_trigger_that_fits_the_larger_image_only():
    validate(RunConfig(dataset="cifar10", trigger_col=24))
    one_line_error(validate, RunConfig(dataset="mnist", trigger_col=24))


def test_valid_edges():
    validate(RunConfig(alpha=1.0, cut=3, clients=7, poison_ratio=0.0))
    validate(RunConfig(dataset="fmnist-5", target=4))
    one_line_error(validate, RunConfig(dataset="fmnist-5", target=5))


def test_unknown_json_field():
    message = one_line_error(RunConfig.from_json, json.dumps({"cut": 2, "alhpa": 0.5}))
    assert "alhpa" in message


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '"mnist"', "{'cut': 2}"])
def test_invalid_json(text):
    one_line_error(RunConfig.from_json, text)


def test_json_invalid_value():
    assert "--cut" in one_line_error(RunConfig.from_json, '{"cut": 4}')


def test_json_round_trip_defaults_and_resolved():
    for cfg in (RunConfig(), resolve(RunConfig(dataset="cifar10", model="resnet9", attack="surrogate", alpha=0.09,
                                                clients=5, cut=3, loss_halved=True, lr_milestones=(3, 5)))):
        text = cfg.to_json()
        back = RunConfig.from_json(text)
        assert back == cfg
        assert set(json.loads(text)) == {f.name for f in dataclasses.fields(RunConfig)}


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().cut = 2  # type: ignore[misc]


def test_spec_defaults():
    cfg = RunConfig()
    assert (cfg.dataset, cfg.model, cfg.cut, cfg.clients, cfg.attack, cfg.alpha) == ("mnist", "lenet", 1, 1, "none", 0.5)
    assert (cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.seed) == (128, 1e-3, 1e-4, 47)
    assert (cfg.trigger_size, cfg.trigger_row, cfg.trigger_seed, cfg.target) == (8, 0, 56, 0)
    assert (cfg.poison_ratio, cfg.loss_halved, cfg.rr_granularity, cfg.ae_share, cfg.ae_grad) == (0.5, False, "epoch", 0.5, "straight")


@pytest.mark.parametrize("dataset,model,epochs,patience,milestones,col", [
    ("mnist", "lenet", 90, 70, (26, 41, 56, 71), 10),
    ("fmnist", "stripnet", 90, 70, (26, 41, 56, 71), 10),
    ("mnist", "resnet9", 90, 70, (21, 31, 41, 51), 10),
    ("cifar10", "lenet", 140, 90, (26, 41, 56, 71), 12),
    ("cifar10", "stripnet", 140, 90, (26, 41, 56, 71), 12),
    ("cifar10", "resnet9", 140, 90, (21, 31, 41, 51), 12),
])
def test_resolve_fills_spec_defaults(dataset, model, epochs, patience, milestones, col):
    cfg = resolve(RunConfig(dataset=dataset, model=model))
    assert (cfg.epochs, cfg.patience, cfg.lr_milestones, cfg.trigger_col) == (epochs, patience, milestones, col)
    assert (cfg.ae_phase1_epochs, cfg.ae_epochs) == ((100, 180) if dataset == "cifar10" else (70, 100))
    assert resolve(cfg) == cfg, "resolve is idempotent"


def test_resolve_keeps_given_values():
    cfg = resolve(RunConfig(epochs=3, patience=0, lr_milestones=(), trigger_col=2))
    assert (cfg.epochs, cfg.patience, cfg.lr_milestones, cfg.trigger_col) == (3, 0, (), 2)


# The authors' LambdaLR: the factor changes when the 0-based epoch index e exceeds 25, 40,
# 55, 70 (ResNet9: 20, 30, 40, 50), so e = 25 still runs at x1 and e = 26 (the 27th epoch)
# is the first at x0.1.
@pytest.mark.parametrize("model,table", [
    ("lenet", [(0, 1), (25, 1), (26, 0.1), (40, 0.1), (41, 0.01), (55, 0.01), (56, 1e-3), (70, 1e-3), (71, 1e-4), (139, 1e-4)]),
    ("stripnet", [(25, 1), (26, 0.1), (70, 1e-3), (71, 1e-4)]),
    ("resnet9", [(0, 1), (20, 1), (21, 0.1), (30, 0.1), (31, 0.01), (40, 0.01), (41, 1e-3), (50, 1e-3), (51, 1e-4), (139, 1e-4)]),
])
def test_lr_multiplier_follows_spec_schedule(model, table):
    """0-indexed epochs: LeNet x1 for epochs 1-25 (1-indexed), x0.1 to 40, ..."""
    cfg = RunConfig(model=model)
    for epoch, mult in table:
        assert lr_multiplier(cfg, epoch) == pytest.approx(mult), (model, epoch)
        assert lr_multiplier(resolve(cfg), epoch) == pytest.approx(mult)


def test_lr_multiplier_constant_without_milestones():
    assert lr_multiplier(RunConfig(lr_milestones=()), 500) == 1.0


def test_the_hijacks_warm_up_follows_the_dataset_and_leaves_attack_epochs():
    from engine.config import attack_start_epoch, resolve
    assert resolve(RunConfig(dataset="mnist", attack="hijack")).hijack_warmup_epochs == 6
    assert resolve(RunConfig(dataset="fmnist", attack="hijack")).hijack_warmup_epochs == 12
    assert resolve(RunConfig(dataset="synthetic", attack="hijack")).hijack_warmup_epochs == 2
    assert resolve(RunConfig(dataset="fmnist", attack="hijack", epochs=5)).hijack_warmup_epochs == 4
    assert resolve(RunConfig(dataset="mnist", attack="hijack", hijack_warmup_epochs=1)).hijack_warmup_epochs == 1
    # A stored config from before the default moved has its 2; a resolved one its own value.
    assert attack_start_epoch({"attack": "hijack"}) == 3
    assert attack_start_epoch(resolve(RunConfig(dataset="fmnist", attack="hijack"))) == 13
