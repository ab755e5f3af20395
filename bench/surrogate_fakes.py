"""Why the surrogate attack gains ASR when SplitGuard watches: an ablation of the fake batches.

SplitGuard sends a share of the client's batches with shifted labels, (y + k) mod C with k
uniform in 1..C-2, and the client does not apply their update; the server cannot tell them
apart and trains on them. Among those wrong labels is the attack's target class: about one
fake row in eight (MNIST) labels a genuine client feature as the target. This script runs
the surrogate attack against SplitGuard with one change: a fake row whose shifted label
would be the target gets another wrong label instead (the next shift that is neither the
true class nor the target), so the server never sees a genuine feature labelled as the
target (`--variant avoid-target`). A second variant keeps every label of a fake batch true
(`--variant true-labels`): the client still withholds those batches' updates, but the server
trains on right labels only, which separates the client's skipped steps from the server's
training on wrong labels. Everything else (how many fake batches, when, the detector's
scores) is SplitGuard as the engine runs it.

    OMP_NUM_THREADS=1 python bench/surrogate_fakes.py --variant avoid-target --data-root DIR \
        --runs-dir OUT [--seeds 1,2,3] [--epochs 12] [--fake-prob 0.1]

Each run is an ordinary run file, named after its variant (`ablation: ...`) so it is never
mistaken for a run of the detector as published; docs/detectors.md compares them with the
same seeds without SplitGuard and with it unchanged.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.defenses.splitguard import SplitGuard  # noqa: E402

NAMES = {"avoid-target": "ablation: fake labels avoid the target",
         "true-labels": "ablation: fake batches keep their true labels"}


def avoiding(target: int):
    """SplitGuard.fake_labels, then every row labelled `target` moved on to the next shift
    that is neither its true class nor the target."""
    original = SplitGuard.fake_labels

    def fake_labels(self: SplitGuard, labels: torch.Tensor) -> torch.Tensor | None:
        fake = original(self, labels)
        if fake is None:
            return None
        fake = fake.clone()
        hit = fake == target
        while bool(hit.any()):
            fake[hit] = (fake[hit] + 1) % self.num_classes
            hit = (fake == target) | (fake == labels)
        return fake

    return fake_labels


def true_labels():
    """SplitGuard.fake_labels deciding which batches are fake, each sent with its true labels."""
    original = SplitGuard.fake_labels

    def fake_labels(self: SplitGuard, labels: torch.Tensor) -> torch.Tensor | None:
        return None if original(self, labels) is None else labels.clone()

    return fake_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(NAMES), required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--fake-prob", type=float, default=0.1)
    args = parser.parse_args()
    from sltui.cli import main as cli

    target = 0  # the protocol's target class, the run's --target below
    patch = avoiding(target) if args.variant == "avoid-target" else true_labels()
    SplitGuard.fake_labels = patch  # type: ignore[method-assign]
    for seed in args.seeds.split(","):
        sys.argv = ["sltui", "run", "--headless", "--dataset", "mnist", "--model", "lenet", "--cut", "1",
                    "--clients", "1", "--epochs", str(args.epochs), "--attack", "surrogate", "--target", str(target),
                    "--defense", "splitguard", "--splitguard-fake-prob", str(args.fake_prob), "--seed", seed,
                    "--name", NAMES[args.variant], "--data-root", args.data_root, "--no-save-weights", "--runs-dir", args.runs_dir]
        try:
            cli()
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                raise


if __name__ == "__main__":
    main()
