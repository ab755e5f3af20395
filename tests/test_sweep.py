"""Sweeps: the grid, experiment identity, resuming, aggregation over seeds, the report, the CLI."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from engine.config import RunConfig, resolve
from engine.errors import ConfigError
from engine.store import RunStore, read_run_file
from engine.sweeps.aggregate import aggregate, mean_std
from engine.sweeps.executors import pending, threads_per_job
from engine.sweeps.grid import PAPER_GRID, expand, experiment_key, load_sweep_file, make_sweep
from sltui.reports.sweep import write_report

from test_cli import assert_one_line_error, sltui  # noqa: F401 - the fixture
from tui_helpers import write_run

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--epochs", "1", "--train-limit", "160", "--eval-limit", "64", "--batch-size", "64", "--device", "cpu",
        "--no-save-weights"]


# ---- the grid -------------------------------------------------------------------
def test_grid_is_the_product_of_its_axes_and_alpha_only_varies_for_the_surrogate():
    sweep = make_sweep({"datasets": "mnist", "models": "lenet", "cuts": "1,3", "alphas": "0.5,0.09",
                        "seeds": "1,2", "attacks": "surrogate,none"}, {"epochs": 2})
    points = expand(sweep)
    surrogate = [p for p in points if p.config.attack == "surrogate"]
    clean = [p for p in points if p.config.attack == "none"]
    assert len(surrogate) == 2 * 2 * 2 and len(clean) == 2 * 2       # no alpha axis without the attack
    assert {(p.config.cut, p.config.alpha, p.config.seed) for p in surrogate} == {
        (c, a, s) for c in (1, 3) for a in (0.5, 0.09) for s in (1, 2)}
    assert all(p.config.epochs == 2 and p.config.lr_milestones == (26, 41, 56, 71) for p in points)  # resolved
    assert len({p.key for p in points}) == len(points)


def test_trigger_axis_varies_only_for_attacks():
    sweep = make_sweep({"datasets": "mnist", "attacks": "none,client,hijack", "triggers": "patch,blend,sig"},
                       {"epochs": 3})
    points = expand(sweep)
    by_attack = {a: sorted(p.config.trigger for p in points if p.config.attack == a) for a in ("none", "client", "hijack")}
    assert by_attack == {"none": ["patch"], "client": ["blend", "patch", "sig"], "hijack": ["blend", "patch", "sig"]}


def test_bad_trigger_axis_value_is_one_line(sltui, tmp_path):  # noqa: F811
    line = assert_one_line_error(*sltui("sweep", "--datasets", "mnist", "--triggers", "patch,wanet",
                                        "--dry-run", "--runs-dir", str(tmp_path)))
    assert "--triggers" in line and "wanet" in line


def test_aggregate_and_report_keep_attacks_and_triggers_apart(tmp_path):
    root = tmp_path / "runs"
    for i, (attack, trigger) in enumerate([("hijack", "patch"), ("hijack", "sig"), ("client", "patch"), ("none", "patch")]):
        write_run(root, f"r{i}", attack=attack, trigger=trigger, cda0=70.0 + i)
    docs = [read_run_file(p) for p in sorted(root.rglob("run.json"))]
    rows = aggregate(docs)
    assert sorted((r["attack"], r["trigger"]) for r in rows) == [
        ("client", "patch"), ("hijack", "patch"), ("hijack", "sig"), ("none", "patch")]
    written = write_report(docs, tmp_path / "report", title="t")
    names = sorted(p.name for p in written)
    assert "mnist-hijack-asr.png" in names and "mnist-client-cda.png" in names
    table = (tmp_path / "report" / "summary.md").read_text()
    assert "| hijack | - | sig |" in table and "| trigger |" in table


def test_paper_grid_is_the_authors_settings():
    points = expand(make_sweep({}, {}, paper=True))
    settings = {(p.config.model, p.config.dataset, p.config.clients, p.config.cut, p.config.alpha) for p in points}
    authors = set()
    for name in ("mnist", "fmnist", "cifar10"):
        with (ROOT / "sltui" / "reference" / f"results_{name}.csv").open() as fh:
            authors |= {(r["NETWORK_ARCH"], r["DATASET"], int(r["NUMBER_OF_CLIENTS"]), int(r["CUT_LAYER"]),
                         float(r["ALPHA"])) for r in csv.DictReader(fh)}
    assert settings == authors and len(points) == len(settings)
    narrowed = expand(make_sweep({"datasets": "mnist", "models": "lenet", "clients": "1"}, {}, paper=True))
    assert len(narrowed) == len(PAPER_GRID["cuts"]) * len(PAPER_GRID["alphas"])


def test_a_field_at_its_default_does_not_change_the_key():
    # A field added later at its default (here: dropped from a stored config) keeps old keys.
    cfg = resolve(RunConfig(dataset="mnist", epochs=3)).to_dict()
    older = {k: v for k, v in cfg.items() if k != "rr_granularity"}
    assert experiment_key(older) == experiment_key(cfg)


def test_experiment_key_ignores_where_a_run_ran_but_not_what_it_computed():
    cfg = resolve(RunConfig(dataset="mnist", epochs=3))
    key = experiment_key(cfg.to_dict())
    assert key == experiment_key(cfg.replace(device="cuda", data_root="/x", name="mine", save_weights=False).to_dict())
    assert key != experiment_key(cfg.replace(seed=48).to_dict())
    assert key != experiment_key(cfg.replace(epochs=4).to_dict())
    assert experiment_key(cfg.to_dict(), drop=("seed",)) == experiment_key(cfg.replace(seed=48).to_dict(), drop=("seed",))


def test_same_grid_same_sweep_id():
    a = make_sweep({"datasets": "mnist", "cuts": "1,3"}, {"epochs": 2})
    b = make_sweep({"datasets": "mnist", "cuts": "1, 3"}, {"epochs": 2})
    assert a.sweep_id() == b.sweep_id() != make_sweep({"datasets": "mnist", "cuts": "1"}, {"epochs": 2}).sweep_id()


@pytest.mark.parametrize("axes,base,needle", [
    ({"datasets": "nope"}, {}, "--datasets"),
    ({"datasets": "mnist", "cuts": "4"}, {}, "--cuts"),
    ({"datasets": "mnist", "seeds": ""}, {}, "--seeds"),
    ({"datasets": "mnist", "alphas": "half"}, {}, "--alphas"),
    ({"datasets": "mnist", "alphas": "1.5", "attacks": "surrogate"}, {}, "alpha"),
    ({"datasets": "mnist", "cuts": "1"}, {"cut": 2}, "cut"),
    ({}, {}, "--datasets"),
])
def test_bad_grids_are_one_clear_error(axes, base, needle):
    with pytest.raises(ConfigError, match=needle):
        expand(make_sweep(axes, base))


def test_sweep_files_toml_and_json(tmp_path):
    toml = tmp_path / "grid.toml"
    toml.write_text('datasets = ["mnist"]\ncuts = [1, 3]\nepochs = 2\n')
    assert load_sweep_file(toml) == {"datasets": ["mnist"], "cuts": [1, 3], "epochs": 2}
    bad = tmp_path / "bad.toml"
    bad.write_text("cuts = [1,\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_sweep_file(bad)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"datasets": ["mnist"], "colour": "red"}))
    with pytest.raises(ConfigError, match="unknown key.*colour"):
        load_sweep_file(unknown)


# ---- resuming ------------------------------------------------------------------
def test_pending_skips_completed_points_and_redoes_the_others(tmp_path):
    points = expand(make_sweep({"datasets": "synthetic", "seeds": "1,2,3"}, {"epochs": 1}))
    store = RunStore(tmp_path)
    done_doc = {"schema": 1, "id": "done", "status": "completed", "config": points[0].config.to_dict(), "pid": None}
    killed = {"schema": 1, "id": "killed", "status": "running", "config": points[1].config.to_dict(),
              "pid": 2 ** 22 + 12345, "host": os.uname().nodename}
    store.save(done_doc)
    store.save(killed)
    todo, done = pending(points, store)
    assert done == {points[0].key: "done"}
    assert [p.key for p in todo] == [points[1].key, points[2].key]   # the interrupted one is redone


def test_threads_per_job_never_oversubscribe(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert [threads_per_job(jobs) for jobs in (1, 2, 3, 16)] == [8, 4, 2, 1]


# ---- aggregation ---------------------------------------------------------------
def test_aggregate_groups_seeds_of_one_setting(tmp_path):
    for seed, cda0 in ((1, 80.0), (2, 84.0), (3, 88.0)):
        write_run(tmp_path, f"s{seed}", seed=seed, cda0=cda0, attack="surrogate", alpha=0.09)
    write_run(tmp_path, "other", seed=1, cda0=50.0, attack="surrogate", alpha=0.5)
    write_run(tmp_path, "dead", seed=4, status="failed", attack="surrogate", alpha=0.09)
    docs = [e.doc for e in RunStore(tmp_path).entries()]
    rows = {r["alpha"]: r for r in aggregate(docs)}
    assert rows[0.09]["n"] == 3 and rows[0.09]["seeds"] == [1, 2, 3]            # the failed run is left out
    assert rows[0.09]["cda_mean"] == pytest.approx(84.0 + 15) and rows[0.09]["cda_std"] == pytest.approx(4.0)
    assert rows[0.5]["n"] == 1 and rows[0.5]["cda_std"] == 0.0
    assert mean_std([]) == (None, None)


# ---- the command ---------------------------------------------------------------
def test_sweep_runs_resumes_and_reports(sltui, tmp_path):
    runs = tmp_path / "runs"
    grid = ["--datasets", "synthetic", "--cuts", "1,3", "--attacks", "surrogate", "--alphas", "0.5", "--seeds", "1,2"]
    code, out, _ = sltui("sweep", *grid, *TINY, "--runs-dir", str(runs), "--dry-run")
    assert code == 0 and out.count("to run") == 4 and not list(runs.rglob("run.json"))
    code, out, err = sltui("sweep", *grid, *TINY, "--runs-dir", str(runs), "--jobs", "2")
    assert code == 0, err
    files = sorted(runs.rglob("run.json"))
    assert len(files) == 4 and {read_run_file(f)["status"] for f in files} == {"completed"}
    resolved = read_run_file(files[0])["config_resolved"]    # a clone re-resolves these, keeps --epochs
    assert "patience" in resolved and "lr_milestones" in resolved and "epochs" not in resolved
    sweep_file = next((runs / "sweeps").glob("sweep-*.json"))
    doc = json.loads(sweep_file.read_text())
    assert [p["status"] for p in doc["points"]] == ["completed"] * 4 and doc["status"] == "completed"

    # One run killed mid-way (its process gone, its file still 'running'): only it runs again.
    victim = read_run_file(files[0])
    victim.update(status="running", pid=2 ** 22 + 12345, final=None)
    RunStore(runs).save(victim)
    code, out, err = sltui("sweep", *grid, *TINY, "--runs-dir", str(runs), "--jobs", "2")
    assert code == 0, err
    assert "3 already done, 1 to run" in out
    assert len(list(runs.rglob("run.json"))) == 5
    point = next(p for p in json.loads(sweep_file.read_text())["points"] if victim["id"] in p["runs"])
    assert len(point["runs"]) == 2 and point["status"] == "completed"

    code, out, err = sltui("runs", "aggregate", "--runs-dir", str(runs), "--sweep", doc["id"], "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 2 and all(r["n"] == 2 for r in rows)   # 2 cuts, 2 seeds each

    code, out, err = sltui("report", doc["id"], "--runs-dir", str(runs))
    assert code == 0, err
    pngs = sorted((sweep_file.parent / doc["id"] / "report").glob("*.png"))
    assert [p.name for p in pngs] == ["synthetic-surrogate-asr.png", "synthetic-surrogate-cda.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)
    summary = (sweep_file.parent / doc["id"] / "report" / "summary.md").read_text()
    for row in rows:
        assert f"| {row['cut']} | 1 | surrogate | 0.5 |" in summary and f"{row['cda_mean']:.2f}" in summary


def test_report_panels_follow_cuts_and_alphas(tmp_path):
    docs = []
    for cut in (1, 3):
        for alpha in (0.5, 0.09):
            for k in (1, 3):
                path = write_run(tmp_path, f"r{cut}{alpha}{k}", cut=cut, clients=k, attack="surrogate", alpha=alpha,
                                 model="lenet")
                docs.append(read_run_file(path))
    written = write_report(docs, tmp_path / "report", title="t")
    assert sorted(p.name for p in written) == ["mnist-surrogate-asr.png", "mnist-surrogate-cda.png", "summary.md"]
    from PIL import Image  # matplotlib depends on Pillow

    width, height = Image.open(tmp_path / "report" / "mnist-surrogate-asr.png").size
    assert width > height > 0            # 2 x 2 panels plus the legend on top
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert summary.count("| mnist | lenet |") == 8
    assert "| 98.82 |" in summary or "98.82" in summary    # the authors' MNIST LeNet K=1 cut 1 alpha 0.09 CDA


@pytest.mark.parametrize("args,needle", [
    (["--datasets", "synthetic", "--jobs", "0"], "--jobs"),
    (["--datasets", "nope"], "--datasets"),
    (["--datasets", "synthetic", "--executor", "slurm"], "--executor"),
    (["--file", "/nonexistent/grid.toml"], "sweep file"),
])
def test_sweep_cli_errors_are_one_line(sltui, tmp_path, args, needle):
    line = assert_one_line_error(*sltui("sweep", *args, "--runs-dir", str(tmp_path)))
    assert needle in line


def test_report_of_an_unknown_sweep_is_one_line(sltui, tmp_path):
    assert "no sweep" in assert_one_line_error(*sltui("report", "sweep-nope", "--runs-dir", str(tmp_path)))


@pytest.mark.slow
def test_sweep_on_a_local_ray_instance(sltui, tmp_path):
    pytest.importorskip("ray")
    runs = tmp_path / "runs"
    import ray

    try:
        code, out, err = sltui("sweep", "--datasets", "synthetic", "--seeds", "1,2", *TINY, "--runs-dir", str(runs),
                               "--jobs", "2", "--executor", "ray")
    finally:
        ray.shutdown()  # the next test's sweep must start its own
    assert code == 0, out + err
    files = list(runs.rglob("run.json"))
    assert len(files) == 2 and {read_run_file(f)["status"] for f in files} == {"completed"}


def test_an_unreachable_ray_address_is_one_line_and_writes_no_sweep_file(sltui, tmp_path):
    pytest.importorskip("ray")
    runs = tmp_path / "runs"
    line = assert_one_line_error(*sltui("sweep", "--datasets", "synthetic", *TINY, "--runs-dir", str(runs),
                                        "--executor", "ray", "--ray-address", "10.255.255.1:6379"))
    assert "--ray-address 10.255.255.1:6379" in line and "nothing answers" in line
    assert not list(runs.rglob("sweep-*.json"))


def test_local_and_ray_executors_share_one_schedule():
    """engine.sweeps.executors.schedule: capacity respected, every job ended once, the rest
    dropped (and the running ones cancelled) once stop is set."""
    import threading

    from engine.sweeps.executors import JobResult, schedule

    jobs = [f"job{i}" for i in range(5)]
    stop = threading.Event()
    started, ended, running_counts, cancelled = [], [], [], []
    live: list = []

    def submit(job):
        live.append(job)
        running_counts.append(len(live))
        return job

    def wait_some(handles):
        job = handles[0]
        live.remove(job)
        if len(ended) == 2:
            stop.set()
        return [(job, JobResult(job, "completed"))]

    schedule(jobs, 2, stop, started.append, ended.append, submit, cancelled.extend, wait_some)
    assert max(running_counts) == 2
    assert started == jobs[:4]  # two ended, two more started, then stop: job4 never starts
    assert [r.status for r in ended] == ["completed"] * 4
    assert cancelled  # the running ones were told to stop


def test_two_sweeps_in_the_same_second_never_share_a_run_id(tmp_path, monkeypatch):
    """Issue 31: two sweeps started in the same second draw run ids from the same second and
    setting; a job's run folder is made as it starts, so the second sweep's job gets a fresh
    id instead of finding the first one's run file, and a folder no run file came of is
    removed again."""
    import threading

    from engine.sweeps import executors
    from engine.sweeps.executors import JobResult, make_jobs, schedule

    points = expand(make_sweep({"datasets": "synthetic", "seeds": "1,2"}, {"epochs": 1}))
    drawn = iter(["20261202-020507-synthetic-lenet-c1-k1-none-0b36", "20261202-020507-synthetic-lenet-c1-k1-none-0b36",
                  "20261202-020507-synthetic-lenet-c1-k1-none-77aa"])
    monkeypatch.setattr(executors, "new_run_id", lambda cfg: next(drawn))
    first = make_jobs(points[:1])                        # the first sweep's job: 0b36
    write_run(tmp_path, first[0].run_id, dataset="synthetic")   # ... whose worker has written its run file
    second = [executors.Job(points[1], first[0].run_id)]          # the second sweep drew the same id
    store = RunStore(tmp_path)
    started, ended = [], []

    def submit(job):
        return job.run_id

    def wait_some(handles):
        return [(handles[0], None)]        # ended without a result: as cancelled

    schedule(second, 1, threading.Event(), started.append, ended.append, submit, lambda running: None, wait_some,
             store=store)
    assert [j.run_id for j in started] == ["20261202-020507-synthetic-lenet-c1-k1-none-77aa"]
    assert read_run_file(store.path(first[0].run_id))["config"]["dataset"] == "synthetic"   # untouched
    assert not (tmp_path / started[0].run_id).exists()   # its worker wrote nothing: the folder is gone


# ---- experiment keys ----------------------------------------------------------------
def test_every_config_field_has_a_legacy_value():
    from dataclasses import fields as dc_fields

    from engine.config import RunConfig
    from engine.sweeps.grid import LEGACY_VALUES, NOT_EXPERIMENT
    missing = {f.name for f in dc_fields(RunConfig)} - set(LEGACY_VALUES) - set(NOT_EXPERIMENT)
    assert not missing, f"add the value runs had before these fields existed to LEGACY_VALUES: {missing}"


def test_a_stored_sweep_keeps_finding_its_runs_after_a_default_changes(tmp_path, monkeypatch):
    import json

    from engine.config import RunConfig
    from engine.sweeps.executors import SweepFile, load_sweep_doc, sweep_run_docs
    from engine.sweeps.grid import expand, make_sweep

    sweep = make_sweep({"attacks": "none,hijack", "seeds": "1,2"}, {"dataset": "synthetic"})
    points = expand(sweep)
    record = SweepFile(tmp_path, sweep, points)
    record.save()
    for i, point in enumerate(points):
        config = point.config.to_dict()
        if i == 0:
            del config["scrutinizer_form"]  # a run file written before the field existed
        folder = tmp_path / f"run-{i}"
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps({"schema": 1, "id": folder.name, "status": "completed",
                                                     "config": config, "epochs": []}))
    stored = load_sweep_doc(record.path)
    assert len(sweep_run_docs(tmp_path, stored)) == len(points) == 4
    # The hijack's warm-up default changes (a field every hijack point holds at the old one).
    defaults = list(RunConfig.__init__.__defaults__)
    names = [f for f in RunConfig.__dataclass_fields__][-len(defaults):]
    defaults[names.index("hijack_warmup_epochs")] = 6
    monkeypatch.setattr(RunConfig.__init__, "__defaults__", tuple(defaults))
    assert RunConfig().hijack_warmup_epochs == 6
    assert len(sweep_run_docs(tmp_path, stored)) == 4
    # The same command now plans other hijack points (a new experiment), and the same `none` ones.
    again = {p.key for p in expand(sweep)}
    assert {p.key for p in points if p.config.attack == "none"} <= again
    assert not {p.key for p in points if p.config.attack == "hijack"} & again


def test_sweep_report_shows_the_reproductions_verdicts(tmp_path):
    """`sltui report`'s table and the reproduction's report apply the same rule (docs/protocol.md
    section 13): the authors' MNIST LeNet K=1 cut-1 numbers (results_mnist.csv: alpha 0.09 CDA 98.82,
    ASR 99.59; alpha 0.2 CDA 98.94, ASR 96.67) against two seeds with final CDA 98.5 / 98.6 and ASR
    95 / 40 (both agree: 99.59 <= 95 + 5), and one seed with CDA 90 and ASR 97 (CDA differs: more
    than 2 points away; ASR agrees: within 10)."""
    root = tmp_path / "runs"
    # 90 epochs as the authors (write_run's metrics rise by 5 and 20 points an epoch)
    for i, (seed, cda, asr) in enumerate([(1, 98.5, 95.0), (2, 98.6, 40.0)]):
        write_run(root, f"s{i}", attack="surrogate", alpha=0.09, seed=seed, epochs=90, cda0=cda - 450, asr0=asr - 1800)
    write_run(root, "s9", attack="surrogate", alpha=0.2, seed=1, epochs=90, cda0=90.0 - 450, asr0=97.0 - 1800)
    docs = [read_run_file(p) for p in sorted(root.rglob("run.json"))]
    write_report(docs, tmp_path / "report", title="t")
    table = (tmp_path / "report" / "summary.md").read_text().splitlines()
    row = next(line for line in table if "| 0.09 |" in line)
    assert row.endswith("| 98.82 | 99.59 | agrees | agrees |"), row
    row = next(line for line in table if "| 0.2 |" in line)
    assert "| differs |" in row and row.endswith("| agrees |"), row
