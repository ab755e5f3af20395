"""Calibration before evaluation (docs/detectors.md, "Calibration"; SPEC section 11).

Two steps, each repeatable:

    python bench/calibrate.py run --data-root DIR [--seeds 101] [--jobs 2]
        honest runs only (attack none), full length, on the calibration set: MNIST and
        FMNIST, LeNet, cuts 1 and 3, K 1 and 3, each with the watching detectors
        (Scrutinizer, SplitOut) and, separately, SplitGuard (its fake batches change
        training), all with --defense-trace, into examples/calibration/ (no weights).
        Resumable: a setting whose runs are stored is not run again.

    python bench/calibrate.py rule [--runs examples/calibration]
        reads those runs and applies the rule (engine/calibration.py), which was written
        down before any attack run of the evaluation was looked at; writes
        calibration.json and calibration.md beside the runs.

    python bench/calibrate.py run --set evaluation --data-root DIR [--seeds 201]
    python bench/calibrate.py false-accusations [--runs examples/false-accusations]
        the same honest runs on evaluation seeds (EVALUATION_SEEDS) into
        examples/false-accusations/, then per detector the share of them flagged by each
        epoch, with the calibrated parameters (calibration.json) and the published ones:
        false-accusations.csv and false-accusations.png beside the runs.

The calibration seeds (CALIBRATION_SEEDS) are never used to evaluate: `sltui arena`'s
seeds and the false-accusation runs take others (docs/detectors.md).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CALIBRATION_SEEDS = (101, 102, 103)
EVALUATION_SEEDS = (201, 202, 203)
PUBLISHED = {"splitguard": {"splitguard_memory": 0, "splitguard_window": 5, "splitguard_threshold": 0.5},
             "scrutinizer": {"scrutinizer_form": "published", "scrutinizer_threshold": 0.5},
             "splitout": {"splitout_features": "raw", "splitout_window": 10}}
SETTINGS = [(dataset, cut, clients) for clients in (1, 3) for dataset in ("mnist", "fmnist") for cut in (1, 3)]


def run(args: argparse.Namespace) -> int:
    """Every setting of the calibration set as one `sltui arena --attacks none` each, the
    short ones (K = 1) first so that results land early."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for dataset, cut, clients in SETTINGS:
        command = [sys.executable, "-m", "sltui", "arena", "--attacks", "none",
                   "--defenses", "splitguard,scrutinizer,splitout", "--seeds", args.seeds,
                   "--dataset", dataset, "--model", "lenet", "--cut", str(cut), "--clients", str(clients),
                   "--defense-trace", "--no-save-weights", "--runs-dir", str(args.runs),
                   "--data-root", str(args.data_root), "--jobs", str(args.jobs)]
        print(" ".join(command[1:]), flush=True)
        code = subprocess.call(command, env=env, cwd=ROOT)
        if code != 0:
            return code
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    runs = ROOT / "examples" / "calibration"
    evaluation = ROOT / "examples" / "false-accusations"
    p_run = sub.add_parser("run", help="the honest runs of the calibration or the evaluation set")
    p_run.add_argument("--set", choices=("calibration", "evaluation"), default="calibration")
    p_run.add_argument("--data-root", type=Path, required=True)
    p_run.add_argument("--seeds", default=None, help="comma list (default: the set's first seed)")
    p_run.add_argument("--jobs", type=int, default=2)
    p_run.add_argument("--runs", type=Path, default=None)
    p_rule = sub.add_parser("rule", help="the rule applied to the stored calibration runs")
    p_rule.add_argument("--runs", type=Path, default=runs)
    p_fa = sub.add_parser("false-accusations", help="honest evaluation runs flagged by each epoch")
    p_fa.add_argument("--runs", type=Path, default=evaluation)
    p_fa.add_argument("--calibration", type=Path, default=runs / "calibration.json")
    args = parser.parse_args(argv)
    if args.step == "run":
        allowed = CALIBRATION_SEEDS if args.set == "calibration" else EVALUATION_SEEDS
        args.seeds = args.seeds or str(allowed[0])
        args.runs = args.runs or (runs if args.set == "calibration" else evaluation)
        if not {int(s) for s in args.seeds.split(",")} <= set(allowed):
            parser.error(f"{args.set} seeds are {allowed}")
        return run(args)
    if args.step == "rule":
        from engine.calibration import write_calibration
        for path in write_calibration(args.runs):
            print(path)
        return 0
    for path in false_accusations(args.runs, args.calibration):
        print(path)
    return 0


def false_accusations(runs_dir: Path, calibration: Path) -> list[Path]:
    """false-accusations.csv and .png: per detector and parameter set (calibrated, published),
    the share of the honest runs under `runs_dir` flagged by each epoch."""
    import csv
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engine.calibration import false_accusations_by_epoch
    from engine.store import RunStore

    docs = [{**e.doc, "status": e.status} for e in RunStore(runs_dir).entries() if e.doc is not None]
    chosen = json.loads(calibration.read_text())["detectors"]
    rows = []
    for detector in ("splitguard", "scrutinizer", "splitout"):
        for label, params in (("calibrated", chosen[detector]["parameters"]), ("published", PUBLISHED[detector])):
            setting = " ".join(f"{k.split('_', 1)[1]}={v}" for k, v in params.items())
            rows += [{**r, "parameters": label, "setting": setting}
                     for r in false_accusations_by_epoch(docs, detector, params)]
    csv_path, png_path = runs_dir / "false-accusations.csv", runs_dir / "false-accusations.png"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["detector", "parameters", "setting", "epoch", "flagged", "runs",
                                                "rate", "ci_low", "ci_high"])
        writer.writeheader()
        writer.writerows(rows)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, detector in zip(axes, ("splitguard", "scrutinizer", "splitout")):
        for label, style in (("calibrated", "-"), ("published", "--")):
            curve = [r for r in rows if r["detector"] == detector and r["parameters"] == label]
            if not curve:
                continue
            epochs = [r["epoch"] for r in curve]
            ax.plot(epochs, [100 * r["rate"] for r in curve], style, label=f"{label}: {curve[0]['setting']}")
            ax.fill_between(epochs, [100 * r["ci_low"] for r in curve], [100 * r["ci_high"] for r in curve], alpha=0.15)
        ax.set_title(detector, fontsize=10)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    axes[0].set_ylabel("honest runs flagged by epoch (%), 95% CI")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return [csv_path, png_path]


if __name__ == "__main__":
    sys.exit(main())
