"""Clones and `--config run.json` keep the user's fields and resolve the dataset/model
defaults again (issue 11, section 4)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Select

from engine.config import resolved_in, user_config
from engine.config import DEPENDENT_FIELDS, RunConfig, default_milestones, resolve, spec_defaults
from sltui.cli import commands as cli
from sltui.tui import form_model

from fake_data import write_idx_dataset
from test_cli import sltui  # noqa: F401 - the fixture


@pytest.fixture
def mnist_run(sltui, tmp_path) -> Path:
    """The run file of a real MNIST LeNet run (tiny fake MNIST) at its default epochs,
    patience, milestones and trigger column, but with a few fields the user chose."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    write_idx_dataset(data, "MNIST", 120, 40, gz=True)
    code, out, err = sltui("run", "--headless", "--dataset", "mnist", "--model", "lenet", "--data-root", str(data),
                           "--runs-dir", str(runs), "--device", "cpu", "--batch-size", "64", "--clients", "2",
                           "--no-save-weights")
    assert code == 0, err
    [file] = list(runs.rglob("run.json"))
    return file


def assert_resolved_for_cifar_resnet9(cfg: RunConfig) -> None:
    assert (cfg.dataset, cfg.model) == ("cifar10", "resnet9")
    assert cfg.epochs == 140 and cfg.patience == 90
    assert cfg.lr_milestones == default_milestones("resnet9") != default_milestones("lenet")
    assert cfg.trigger_col == 12
    assert (cfg.ae_phase1_epochs, cfg.ae_epochs) == (100, 180)
    assert cfg.batch_size == 64 and cfg.clients == 2 and cfg.device == "cpu", "the user's fields are kept"


def test_the_run_file_names_the_fields_resolved_from_defaults(mnist_run):
    doc = json.loads(mnist_run.read_text())
    assert sorted(doc["config_resolved"]) == sorted(DEPENDENT_FIELDS)
    assert doc["config"]["epochs"] == 90 and doc["config"]["trigger_col"] == 10   # stored concrete


def test_cli_config_from_a_run_file_resolves_defaults_again(sltui, mnist_run, monkeypatch):
    opened = []
    monkeypatch.setattr(cli, "open_tui", lambda runs_dir, data_root, config=None: opened.append(config))
    code, out, err = sltui("run", "--config", str(mnist_run), "--dataset", "cifar10", "--model", "resnet9")
    assert code == 0, err
    assert_resolved_for_cifar_resnet9(resolve(opened[0]))


def test_cli_config_keeps_what_the_user_set(sltui, tmp_path, monkeypatch):
    doc = {"schema": 1, "config": resolve(RunConfig(dataset="mnist", epochs=5, trigger_col=3)).to_dict(),
           "config_resolved": ["patience", "lr_milestones", "ae_phase1_epochs", "ae_epochs"]}
    (tmp_path / "run.json").write_text(json.dumps(doc))
    opened = []
    monkeypatch.setattr(cli, "open_tui", lambda runs_dir, data_root, config=None: opened.append(config))
    code, out, err = sltui("run", "--config", str(tmp_path / "run.json"), "--dataset", "cifar10")
    assert code == 0, err
    cfg = resolve(opened[0])
    assert (cfg.epochs, cfg.trigger_col, cfg.patience) == (5, 3, 90)


def test_tui_form_clone_resolves_defaults_again(mnist_run):
    doc = json.loads(mnist_run.read_text())
    values = form_model.to_text(form_model.config_from_run(doc))
    assert values["epochs"] == "" and values["trigger_col"] == "", "resolved fields start empty in the form"
    values.update(dataset="cifar10", model="resnet9")
    cfg, errors = form_model.build(values)
    assert errors == {}
    assert_resolved_for_cifar_resnet9(resolve(cfg))


async def test_clone_key_in_the_browser_resolves_defaults_again(mnist_run):
    from test_tui_app import SIZE, make_app, table_ids, wait_for
    from sltui.tui.screens.browser import BrowserScreen
    from sltui.tui.screens.new_run import NewRunScreen

    app = make_app(mnist_run.parent.parent)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and len(table_ids(app)) == 1)
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        form = app.screen
        form.query_one("#f-dataset", Select).value = "cifar10"
        form.query_one("#f-model", Select).value = "resnet9"
        await pilot.pause()
        assert_resolved_for_cifar_resnet9(resolve(form.validate_form()))


def test_old_run_files_infer_the_resolved_fields_from_the_defaults():
    # Written before config_resolved existed: fields at their dataset/model default count as resolved.
    config = resolve(RunConfig(dataset="mnist", epochs=5, lr_milestones=(3,))).to_dict()
    old = {"schema": 1, "config": config}
    assert set(resolved_in(old)) == set(DEPENDENT_FIELDS) - {"epochs", "lr_milestones"}
    kept = user_config(old)
    assert kept["epochs"] == 5 and kept["lr_milestones"] == [3] and "patience" not in kept
    cfg = resolve(RunConfig.from_dict({**kept, "dataset": "synthetic-rgb"}))
    assert cfg.patience == spec_defaults(cfg)["patience"] != config["patience"]


def test_an_unreadable_config_is_kept_whole():
    assert user_config({"config": {"cut": 9, "epochs": 90}}) == {"cut": 9, "epochs": 90}
