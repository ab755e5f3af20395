"""docs/protocol.md section 12a: the client that reacts (--on-flag stop)."""
from __future__ import annotations

import pytest

from engine.config import ConfigError, RunConfig
from engine.store import RunStore
from engine.training.runner import run


def config(**changes) -> RunConfig:
    # SplitOut on raw gradients flags honest training within the first epochs (its honest
    # examples come from the first steps): a flag that is sure to come.
    base = dict(dataset="synthetic", clients=2, epochs=6, batch_size=32, train_limit=2400, eval_limit=300,
                defenses=("splitout",), splitout_features="raw", save_weights=False, device="cpu", seed=3)
    return RunConfig(**{**base, **changes})


def test_stop_needs_a_detector_and_an_honest_client():
    with pytest.raises(ConfigError, match="--on-flag stop"):
        RunConfig.from_dict({"on_flag": "stop"})
    with pytest.raises(ConfigError, match="honest client"):
        RunConfig.from_dict({"on_flag": "stop", "attack": "client", "clients": 1, "defenses": ["splitout"]})
    with pytest.raises(ConfigError, match="--on-flag"):
        RunConfig.from_dict({"on_flag": "flee", "defenses": ["splitout"]})
    assert RunConfig.from_dict({"on_flag": "stop", "defenses": ["splitout"]}).local_epochs >= 1


@pytest.mark.slow
def test_the_clients_stop_at_the_flag_and_train_their_local_models(tmp_path):
    stopped_store, going_store = RunStore(tmp_path / "stop"), RunStore(tmp_path / "go")
    stopped = run(config(on_flag="stop", local_epochs=2), emit=stopped_store.recorder())
    going = run(config(), emit=going_store.recorder())
    flag = stopped.defenses["splitout"]["flagged_at"]
    assert flag is not None and flag == going.defenses["splitout"]["flagged_at"]
    # Split learning ends in the flag's epoch; up to it, training is the continuing run's.
    assert len(stopped.epochs) == flag["epoch"] < len(going.epochs) == 6
    for a, b in zip(stopped.epochs[:-1], going.epochs):
        assert (a["cda"], a["train_loss"]) == (b["cda"], b["train_loss"])
    doc = stopped_store.entries()[0].doc
    assert doc["status"] == "completed" and doc["reaction"] == stopped.reaction
    reaction = doc["reaction"]
    assert reaction["epoch"] == flag["epoch"] and reaction["flags"] == {"splitout": flag}
    assert [m["client"] for m in reaction["local"]] == [1, 2] and all(m["epochs"] == 2 for m in reaction["local"])
    assert all(0 <= m["cda"] <= 100 and 0 <= m["asr"] <= 100 for m in reaction["local"])
    assert reaction["mean"]["cda"] == pytest.approx(sum(m["cda"] for m in reaction["local"]) / 2)
    # A fresh server part trained on the client's own share under its frozen network learns the task.
    assert reaction["mean"]["cda"] > 20
    assert going_store.entries()[0].doc["reaction"] is None
