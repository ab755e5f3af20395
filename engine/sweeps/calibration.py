"""Calibration before evaluation: the rule that turns honest runs into detector parameters
(docs/detectors.md, "Calibration"; SPEC section 11). Pure Python over run documents.

The rule, fixed before any evaluation attack run was looked at:

* Only honest runs count (attack `none`); every honest client of a run is one *stream*,
  and a detector flags a run when it flags any of its streams.
* Each detector has candidate settings in a fixed order, from the most responsive to the
  least, an order that follows from the detector's definition, not from any run:
  - SplitGuard: memory 5, 10, 20, 50, 100, then 0 (every batch, as published); window 5
    and threshold 0.5 stay at the published values. A stream's statistic: its lowest mean
    score over 5 consecutive scored fake batches.
  - Gradients Scrutinizer: per form (published, windowed), threshold 0.5 (published), 0.4,
    0.3, 0.2, 0.15, 0.1. A stream's statistic: its lowest checkpoint score.
  - SplitOut: per features (raw as published, direction), window 5, 10, 20, 50 gradients.
    A stream's statistic: its highest share of outliers in any window of that size.
* A candidate *passes* when it flags no calibration stream with a margin of MARGIN: every
  stream's statistic stays at least MARGIN on the honest side of the line (scores at or
  above threshold + MARGIN; outlier shares at or below 0.5 - MARGIN).
* Each detector takes its first passing candidate: SplitGuard the most responsive memory;
  SplitOut the smallest window, raw features before direction at equal windows; Scrutinizer
  per form the highest passing threshold, then the form with the higher threshold (a
  label-blind server sits at the score's floor, about 0.03, in both forms, so the higher
  honest line leaves more room to catch a server that keeps part of the label signal),
  the published form at a tie.
* Where no candidate passes, the detector keeps its published setting and the output says
  that it flags calibration runs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import RunConfig, honest_clients
from ..defenses.splitout import trace_key

MARGIN = 0.05
# The calibration set's seeds, never used to evaluate, and the seeds of the honest
# evaluation runs (false accusations over time): `sltui calibrate run --set ...`.
CALIBRATION_SEEDS = (101, 102, 103)
EVALUATION_SEEDS = (201, 202, 203)
# The calibration set: (dataset, cut, clients), LeNet, the short ones (K = 1) first.
SETTINGS = tuple((dataset, cut, clients) for clients in (1, 3) for dataset in ("mnist", "fmnist") for cut in (1, 3))
# Each detector's published parameters, beside the calibrated ones in the false-accusation curves.
PUBLISHED = {"splitguard": {"splitguard_memory": 0, "splitguard_window": 5, "splitguard_threshold": 0.5},
             "scrutinizer": {"scrutinizer_form": "published", "scrutinizer_threshold": 0.5},
             "splitout": {"splitout_features": "raw", "splitout_window": 10}}
SPLITGUARD_MEMORIES = (5, 10, 20, 50, 100, 0)
SPLITGUARD_WINDOW = 5
SPLITGUARD_THRESHOLD = 0.5
SCRUTINIZER_FORMS = ("published", "windowed")
SCRUTINIZER_THRESHOLDS = (0.5, 0.4, 0.3, 0.2, 0.15, 0.1)
SPLITOUT_FEATURES = ("raw", "direction")
SPLITOUT_WINDOWS = (5, 10, 20, 50)


def streams(doc: Mapping[str, Any], detector: str) -> list[list[Any]]:
    """Per honest client of a run, its per-epoch traces of `detector` (empty when the run
    has no trace of it)."""
    entry = (doc.get("defenses") or {}).get(detector)
    trace = entry.get("trace") if isinstance(entry, dict) else None
    if not isinstance(trace, list):
        return []
    config = doc.get("config") or {}
    return [[epoch[k] for epoch in trace if isinstance(epoch, list) and k < len(epoch) and epoch[k] is not None]
            for k in honest_clients(config)]


def lowest_rolling_mean(values: Iterable[Any], window: int) -> float | None:
    """The lowest mean of `window` consecutive numbers (None entries skipped, as the
    detector skips unscored batches); None when there are fewer than `window`."""
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    if len(numbers) < window:
        return None
    return min(sum(numbers[i:i + window]) / window for i in range(len(numbers) - window + 1))


def highest_window_share(decisions: str, window: int) -> float | None:
    """The highest share of outliers ("1") in any `window` consecutive decisions."""
    if len(decisions) < window:
        return None
    bits = [c == "1" for c in decisions]
    count = sum(bits[:window])
    best = count
    for i in range(window, len(bits)):
        count += bits[i] - bits[i - window]
        best = max(best, count)
    return best / window


def splitguard_statistics(docs: Iterable[Mapping[str, Any]]) -> dict[int, list[float | None]]:
    """Per memory, every stream's lowest 5-batch mean score."""
    out: dict[int, list[float | None]] = {m: [] for m in SPLITGUARD_MEMORIES}
    for doc in docs:
        for stream in streams(doc, "splitguard"):
            for memory in SPLITGUARD_MEMORIES:
                values = [v for epoch in stream for v in (epoch.get(str(memory)) or [])]
                out[memory].append(lowest_rolling_mean(values, SPLITGUARD_WINDOW))
    return out


def scrutinizer_statistics(docs: Iterable[Mapping[str, Any]]) -> dict[str, list[float | None]]:
    """Per form, every stream's lowest checkpoint score."""
    out: dict[str, list[float | None]] = {f: [] for f in SCRUTINIZER_FORMS}
    for doc in docs:
        for stream in streams(doc, "scrutinizer"):
            for form in SCRUTINIZER_FORMS:
                values = [float(v) for epoch in stream for v in (epoch.get(form) or [])]
                out[form].append(min(values) if values else None)
    return out


def splitout_statistics(docs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], list[float | None]]:
    """Per (features, window), every stream's highest outlier share in a window."""
    out: dict[tuple[str, int], list[float | None]] = {(f, w): [] for f in SPLITOUT_FEATURES for w in SPLITOUT_WINDOWS}
    for doc in docs:
        for stream in streams(doc, "splitout"):
            for features in SPLITOUT_FEATURES:
                decisions = "".join(str(epoch.get(features) or "") for epoch in stream)
                for window in SPLITOUT_WINDOWS:
                    out[(features, window)].append(highest_window_share(decisions, window))
    return out


def first_flag_epoch(doc: Mapping[str, Any], detector: str, params: Mapping[str, Any]) -> int | None:
    """The epoch of the first flag `detector` would have raised in this run with the
    parameters `params` (RunConfig fields; those not given at the run's own), judged
    afterwards from the run's trace as the detector judges live; None if never."""
    epochs = flag_epochs(doc, detector, params)
    return epochs[0] if epochs else None


def flag_epochs(doc: Mapping[str, Any], detector: str, params: Mapping[str, Any]) -> list[int]:
    """Every epoch in which `detector` would have flagged at some step of this run (any
    honest client) with the parameters `params`, judged from the run's trace as the
    detector judges live: the run's `flagged_epochs` under those parameters."""
    config = {**RunConfig().to_dict(), **(doc.get("config") or {}), **params}
    epochs: set[int] = set()
    for stream in streams(doc, detector):
        epochs.update(_stream_flag_epochs(stream, detector, config))
    return sorted(epochs)


def _stream_flag_epochs(stream: list[Any], detector: str, config: Mapping[str, Any]) -> set[int]:
    flagged: set[int] = set()
    if detector == "splitguard":
        window, threshold, key = config["splitguard_window"], config["splitguard_threshold"], str(config["splitguard_memory"])
        history: list[float] = []
        for epoch, trace in enumerate(stream, start=1):
            for value in trace.get(key) or []:
                if value is None:
                    continue
                history.append(float(value))
                if len(history) >= window and sum(history[-window:]) / window < threshold:
                    flagged.add(epoch)
    elif detector == "scrutinizer":
        form, threshold = config["scrutinizer_form"], config["scrutinizer_threshold"]
        for epoch, trace in enumerate(stream, start=1):
            if any(float(v) < threshold for v in trace.get(form) or []):
                flagged.add(epoch)
    elif detector == "splitout":
        # Fitted per epoch, the window starts afresh with each epoch (engine/defenses/splitout.py).
        fit = config.get("splitout_fit", "once")
        key, window = trace_key(config["splitout_features"], fit), config["splitout_window"]
        recent: list[int] = []
        for epoch, trace in enumerate(stream, start=1):
            if fit == "per-epoch":
                recent = []
            for c in str(trace.get(key) or ""):
                recent = (recent + [c == "1"])[-window:]
                if len(recent) == window and 2 * sum(recent) > window:
                    flagged.add(epoch)
    return flagged


def false_accusations_by_epoch(docs: Iterable[Mapping[str, Any]], detector: str,
                               params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per epoch e of the longest honest run, the share of honest runs (attack `none`, with
    a trace of `detector`) flagged by epoch e with `params`: k/n with its 95% Wilson
    interval. A run shorter than e counts as flagged or not as it ended."""
    from .verdicts import wilson
    honest = [d for d in docs if d.get("status") == "completed" and (d.get("config") or {}).get("attack") == "none"
              and streams(d, detector)]
    firsts = [first_flag_epoch(d, detector, params) for d in honest]
    longest = max((len(d.get("epochs") or []) for d in honest), default=0)
    out = []
    for epoch in range(1, longest + 1):
        k = sum(1 for f in firsts if f is not None and f <= epoch)
        low, high = wilson(k, len(honest))
        out.append({"detector": detector, "epoch": epoch, "flagged": k, "runs": len(honest),
                    "rate": k / len(honest) if honest else None, "ci_low": low, "ci_high": high})
    return out


def _passes_scores(values: list[float | None], threshold: float) -> bool:
    known = [v for v in values if v is not None]
    return bool(known) and min(known) >= threshold + MARGIN


def _passes_shares(values: list[float | None]) -> bool:
    known = [v for v in values if v is not None]
    return bool(known) and max(known) <= 0.5 - MARGIN


def _low(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _high(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def calibrate(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The rule applied to the honest runs among `docs`: per detector the candidates with
    their statistics and whether they pass, the chosen parameters (RunConfig fields) and
    whether they came from a passing candidate."""
    honest = [d for d in docs if d.get("status") == "completed" and (d.get("config") or {}).get("attack") == "none"]
    published = RunConfig()
    out: dict[str, Any] = {"margin": MARGIN, "runs": sorted(str(d.get("id")) for d in honest),
                           "seeds": sorted({(d.get("config") or {}).get("seed") for d in honest}), "detectors": {}}

    stats = splitguard_statistics(honest)
    candidates = [{"splitguard_memory": m, "streams": sum(v is not None for v in stats[m]), "lowest": _low(stats[m]),
                   "passes": _passes_scores(stats[m], SPLITGUARD_THRESHOLD)} for m in SPLITGUARD_MEMORIES]
    chosen = next((c for c in candidates if c["passes"]), None)
    out["detectors"]["splitguard"] = {
        "candidates": candidates, "passed": chosen is not None,
        "parameters": {"splitguard_memory": chosen["splitguard_memory"] if chosen else 0,
                       "splitguard_window": SPLITGUARD_WINDOW, "splitguard_threshold": SPLITGUARD_THRESHOLD}}

    stats_s = scrutinizer_statistics(honest)
    candidates, per_form = [], {}
    for form in SCRUTINIZER_FORMS:
        for threshold in SCRUTINIZER_THRESHOLDS:
            passes = _passes_scores(stats_s[form], threshold)
            candidates.append({"scrutinizer_form": form, "scrutinizer_threshold": threshold,
                               "streams": sum(v is not None for v in stats_s[form]),
                               "lowest": _low(stats_s[form]), "passes": passes})
            if passes and form not in per_form:
                per_form[form] = threshold
    form = max(per_form, key=lambda f: (per_form[f], f == "published")) if per_form else None
    out["detectors"]["scrutinizer"] = {
        "candidates": candidates, "passed": form is not None,
        "parameters": {"scrutinizer_form": form or "published",
                       "scrutinizer_threshold": per_form[form] if form else SCRUTINIZER_THRESHOLDS[0]}}

    stats_o = splitout_statistics(honest)
    candidates = [{"splitout_features": f, "splitout_window": w, "streams": sum(v is not None for v in stats_o[(f, w)]),
                   "highest": _high(stats_o[(f, w)]), "passes": _passes_shares(stats_o[(f, w)])}
                  for f in SPLITOUT_FEATURES for w in SPLITOUT_WINDOWS]
    passing = [c for c in candidates if c["passes"]]
    chosen = min(passing, key=lambda c: (c["splitout_window"], SPLITOUT_FEATURES.index(c["splitout_features"]))) \
        if passing else None
    out["detectors"]["splitout"] = {
        "candidates": candidates, "passed": chosen is not None,
        "parameters": {"splitout_features": chosen["splitout_features"] if chosen else "raw",
                       "splitout_window": chosen["splitout_window"] if chosen else published.splitout_window}}
    return out


def markdown(result: Mapping[str, Any]) -> str:
    lines = ["# Detector calibration (sltui calibrate rule)", "",
             f"{len(result['runs'])} honest runs, seeds {', '.join(map(str, result['seeds']))}; margin {result['margin']}. "
             "The rule is in engine/sweeps/calibration.py and docs/detectors.md, \"Calibration\".", ""]
    for name, entry in result["detectors"].items():
        params = ", ".join(f"`{k}` {v}" for k, v in entry["parameters"].items())
        lines += [f"## {name}", "", f"Chosen: {params}" + ("" if entry["passed"] else
                  " (no candidate passes: the published setting, which flags calibration runs)"), ""]
        columns = [k for k in entry["candidates"][0] if k != "passes"] + ["passes"]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for c in entry["candidates"]:
            lines.append("| " + " | ".join("" if c[k] is None else f"{c[k]:.4f}" if isinstance(c[k], float)
                                           and k in ("lowest", "highest") else str(c[k]) for k in columns) + " |")
        lines.append("")
    return "\n".join(lines)


def write_calibration(runs: Path) -> list[Path]:
    """calibration.json and calibration.md under `runs`, from its run files."""
    from ..store import RunStore
    docs = [{**e.doc, "status": e.status} for e in RunStore(runs).entries() if e.doc is not None]
    result = calibrate(docs)
    json_path, md_path = runs / "calibration.json", runs / "calibration.md"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path.write_text(markdown(result))
    return [json_path, md_path]
