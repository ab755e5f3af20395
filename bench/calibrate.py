"""Calibration before evaluation (docs/detectors.md, "Calibration"; SPEC section 11).

Two steps, each repeatable:

    python bench/calibrate.py run --data-root DIR [--seeds 101] [--jobs 2]
        honest runs only (attack none), full length, on the calibration set: MNIST and
        FMNIST, LeNet, cuts 1 and 3, K 1 and 3, each with the watching detectors
        (Scrutinizer, SplitOut) and, separately, SplitGuard (its fake batches change
        training), all with --defense-trace, into examples/calibration/ (no weights).
        Resumable: a setting whose runs are stored is not run again.

    python bench/calibrate.py rule [--runs examples/calibration]
        reads those runs and applies the rule below, which was written down before any
        attack run of the evaluation was looked at; writes calibration.json and
        calibration.md beside the runs.

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
    p_run = sub.add_parser("run", help="the honest calibration runs")
    p_run.add_argument("--data-root", type=Path, required=True)
    p_run.add_argument("--seeds", default=str(CALIBRATION_SEEDS[0]),
                       help="comma list, among " + ",".join(map(str, CALIBRATION_SEEDS)))
    p_run.add_argument("--jobs", type=int, default=2)
    p_run.add_argument("--runs", type=Path, default=runs)
    p_rule = sub.add_parser("rule", help="the rule applied to the stored calibration runs")
    p_rule.add_argument("--runs", type=Path, default=runs)
    args = parser.parse_args(argv)
    if args.step == "run":
        seeds = [int(s) for s in args.seeds.split(",")]
        if not set(seeds) <= set(CALIBRATION_SEEDS):
            parser.error(f"calibration seeds are {CALIBRATION_SEEDS}")
        return run(args)
    from engine.calibration import write_calibration
    for path in write_calibration(args.runs):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
