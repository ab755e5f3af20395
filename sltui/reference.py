"""The paper authors' own per-run results for a setting (shipped CSVs in sltui/reference/).

One row per (architecture, dataset, clients K, cut, alpha for the surrogate attack):
TEST_ACCURACY is the CDA, BD_TEST_ACCURACY the ASR, both last-epoch percentages.
Pure Python: no Textual, no pandas, no torch (engine.config is plain Python too).
"""
from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from engine.config import default_epochs

REFERENCE_DIR = Path(__file__).with_name("reference")
# Our dataset names -> the authors'. The Appendix D variants and synthetic data have none.
DATASET_NAMES = {"mnist": "mnist", "fmnist": "fmnist", "cifar10": "cifar10", "cifar10-jpeg": "cifar10"}


@dataclass(frozen=True)
class Reference:
    cda: float
    asr: float
    source: str    # the CSV file the numbers come from
    epochs: int    # how long the authors trained (90 epochs, 140 for CIFAR-10): a shorter run
                   # is not expected to reach these numbers


def csv_for(attack: str, dataset: str) -> str | None:
    if attack == "none":
        return "results_clean_training.csv"
    if attack == "autoencoder":
        return "results_autoencoder.csv"
    if attack == "surrogate":
        return f"results_{dataset}.csv"
    return None


@functools.lru_cache(maxsize=None)
def _rows(filename: str) -> tuple[dict[str, str], ...]:
    path = REFERENCE_DIR / filename
    try:
        with path.open(newline="") as fh:
            return tuple(csv.DictReader(fh))
    except OSError:
        return ()


def _same_number(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def lookup(config: Mapping[str, Any]) -> Reference | None:
    """The authors' CDA and ASR for the setting of `config` (a RunConfig dict), or None."""
    dataset = DATASET_NAMES.get(str(config.get("dataset")))
    attack = str(config.get("attack"))
    filename = csv_for(attack, dataset) if dataset else None
    if filename is None or config.get("trigger", "patch") not in (None, "patch"):  # the authors used the patch
        return None
    for row in _rows(filename):
        if (row.get("NETWORK_ARCH") == config.get("model") and row.get("DATASET") == dataset
                and _same_number(row.get("NUMBER_OF_CLIENTS"), config.get("clients"))
                and _same_number(row.get("CUT_LAYER"), config.get("cut"))
                and (attack != "surrogate" or _same_number(row.get("ALPHA"), config.get("alpha")))):
            try:
                return Reference(float(row["TEST_ACCURACY"]), float(row["BD_TEST_ACCURACY"]), filename,
                                 default_epochs(dataset))
            except (KeyError, TypeError, ValueError):
                return None
    return None


# Table 3 of the paper (Appendix E): the authors' one transfer check, on a StripNet backdoored
# on MNIST (K = 3, alpha 0.04, cut 1, ASR 100%), its last layer retrained on each dataset:
# (CDA, ASR) there, as printed in the paper.
TABLE3: dict[str, tuple[float, float]] = {"mnist": (99.45, 57.41), "emnist-letters-aj": (95.77, 0.25),
                                          "fmnist": (87.02, 3.2)}


def like_for_like(config: Mapping[str, Any], ref: Reference) -> bool:
    """Whether runs of `config` can be set against the authors' numbers: the whole data
    (no train or eval limit) and at least as many epochs as the authors trained."""
    epochs = config.get("epochs")
    return not config.get("train_limit") and not config.get("eval_limit") and (epochs is None or epochs >= ref.epochs)


def cell_verdicts(cell: Any) -> tuple[Any, Any]:
    """The agreement verdicts (CDA, ASR) of one reproduction cell (engine.sweeps.agreement.Cell)
    against the authors' number for its setting (docs/protocol.md section 13): what the
    reproduction's report, `sltui report` and the TUI's compare view all show. A cell that
    is not like for like (shorter, or on part of the data) gets no verdict ("-"), its
    Verdict still holding the authors' number."""
    from engine.sweeps.agreement import NO_AUTHORS, Verdict, agreement

    ref = lookup(dict(cell.config))
    if ref is not None and not like_for_like(cell.config, ref):
        return Verdict("cda", NO_AUTHORS, None, None, ref.cda), Verdict("asr", NO_AUTHORS, None, None, ref.asr)
    return (agreement(cell.cda, None if ref is None else ref.cda, "cda"),
            agreement(cell.asr, None if ref is None else ref.asr, "asr"))
