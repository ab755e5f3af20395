"""docs/protocol.md section 13: the reproduction's plan (which runs) and its comparison rules."""
from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.sweeps.grid import expand, make_sweep
from engine.sweeps.reproduction import DEFAULT_PARTS, PART_NAMES, parse_parts, part_points, parts_by_key, reproduction_sweep


@pytest.mark.parametrize("part,runs", [("fig34", 90), ("fig7", 18), ("fig6", 12), ("halved", 3), ("ae-share", 3),
                                       ("ae-code", 6), ("appd", 6), ("table3", 0), ("clients", 90)])
def test_each_part_plans_the_runs_section_13_names(part, runs):
    points = part_points(part, {})
    assert len(points) == runs
    configs = [p.config for p in points]
    protocol = (100, 0) if part == "ae-code" else (90, 70)  # the trace deploys 100 epochs, no early stopping
    assert all(c.model == "lenet" and (c.epochs, c.patience) == protocol and c.train_limit is None for c in configs)
    assert all(c.trigger_rng == "numpy" and c.lr_milestones == (26, 41, 56, 71) for c in configs)


def test_the_paper_grid_is_the_plain_sweep_of_the_same_axes():
    # A reproduction run is an ordinary run: `sltui sweep` with the same axes finds it done, whatever the device.
    plain = expand(make_sweep({"datasets": "mnist,fmnist", "models": "lenet", "cuts": "1,2,3", "clients": "1",
                               "attacks": "surrogate", "alphas": "0.5,0.2,0.09,0.06,0.04", "seeds": "1,2,3"},
                              {"device": "cpu", "data_root": "/somewhere"}))
    assert {p.key for p in plain} == {p.key for p in part_points("fig34", {"device": "cuda"})}


def test_side_cells_differ_from_their_main_cell_only_by_the_authors_code_choice():
    halved = part_points("halved", {})
    assert all(p.config.loss_halved and p.config.alpha == 0.09 and p.config.cut == 1 for p in halved)
    main = {p.config.replace(loss_halved=False).to_dict().__repr__() for p in halved}
    fig34 = {p.config.to_dict().__repr__() for p in part_points("fig34", {})}
    assert main <= fig34
    assert all(p.config.ae_share == 0.25 for p in part_points("ae-share", {}))


def test_parts_parse_and_the_sweep_holds_each_experiment_once():
    assert parse_parts(None) == DEFAULT_PARTS and "clients" not in DEFAULT_PARTS
    assert parse_parts("all") == PART_NAMES
    assert parse_parts("fig7, fig34,fig7") == ("fig7", "fig34")
    with pytest.raises(ConfigError, match="unknown part 'fig99'"):
        parse_parts("fig7,fig99")
    sweep, points = reproduction_sweep(("fig34", "halved", "fig34"), {"device": "cpu"})
    assert len(points) == 93 and len({p.key for p in points}) == 93
    assert sweep.sweep_id() != reproduction_sweep(("fig34",), {"device": "cpu"})[0].sweep_id()
    mnist_only = reproduction_sweep(("fig34", "appd"), {}, datasets=("mnist", "mnist-10k"))[1]
    assert {p.config.dataset for p in mnist_only} == {"mnist", "mnist-10k"} and len(mnist_only) == 48
    owners = parts_by_key()
    assert {owners[p.key] for p in points} == {"fig34", "halved"}
