"""The arena (docs/protocol.md section 11): every attack against every detector over seeds,
as one sweep, and its results as one long table and a matrix pivoted from it. Pure Python.

Runs per attack and seed: one with all the detectors that only watch (Scrutinizer,
SplitOut), which trains exactly as a run without detectors and so is also the baseline
of the CDA cost (with no such detector asked for, it is a run without any), and one for
each detector that changes training (SplitGuard). A detector's CDA cost is its run's
final CDA minus the baseline's, same attack and seed (0 for the watching ones).
"""
from __future__ import annotations

import statistics
from typing import Any, Iterable, Mapping

from ..config import TRAINING_DEFENSES, RunConfig
from .grid import Point, Sweep, expand, make_sweep

LONG_COLUMNS = ("attack", "detector", "seed", "flagged", "flag_epoch", "flag_step", "flag_client",
                "cda", "asr", "baseline_cda", "cda_cost", "run")
MATRIX_COLUMNS = ("attack", "detector", "runs", "detection_rate", "false_positive_rate", "mean_detection_epoch",
                  "cda_cost", "asr", "cda")


def arena_groups(defenses: Iterable[str]) -> list[tuple[str, ...]]:
    """The detector sets to run: the watching ones together (maybe none), then each
    training-changing one alone."""
    defenses = list(dict.fromkeys(defenses))
    watching = tuple(d for d in defenses if d not in TRAINING_DEFENSES)
    return [watching] + [(d,) for d in defenses if d in TRAINING_DEFENSES]


def arena_sweep(attacks: Any, defenses: Iterable[str], seeds: Any, base: dict[str, Any]) -> tuple[Sweep, list[Point]]:
    """The arena's sweep (its id and record) and its points: attacks x seeds x detector sets."""
    base = {"dataset": RunConfig().dataset, **base}
    groups = arena_groups(defenses)
    points: dict[str, Point] = {}
    for group in groups:
        for point in expand(make_sweep({"attacks": attacks, "seeds": seeds}, {**base, "defenses": group})):
            points.setdefault(point.key, point)
    grid = {"attacks": tuple(dict.fromkeys(p.config.attack for p in points.values())),
            "seeds": tuple(dict.fromkeys(p.config.seed for p in points.values())),
            "defenses": tuple(tuple(g) for g in groups)}
    return Sweep(grid=grid, base=base), list(points.values())


def is_arena(sweep_doc: Mapping[str, Any]) -> bool:
    """Whether a sweep file is an arena's: arena_sweep's grid is the only one with a
    `defenses` axis (its detector sets); `sltui sweep`'s axes never include it."""
    grid = sweep_doc.get("grid")
    return isinstance(grid, dict) and "defenses" in grid


def planned_cells(sweep_doc: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """Per (attack, detector), how many runs the arena plans: one per point whose detector
    set has the detector, but none for points without an honest client, which the
    tables leave out (long_rows). Set against a matrix row's `runs`, this says which
    cells are still incomplete. Ordered by attack, then detector, each in the order the
    sweep first names it."""
    cells: dict[tuple[str, str], int] = {}
    for point in sweep_doc.get("points") or []:
        config = point.get("config") if isinstance(point, dict) else None
        if not isinstance(config, dict) or not has_honest_client(config):
            continue
        for detector in config.get("defenses") or []:
            key = (str(config.get("attack")), str(detector))
            cells[key] = cells.get(key, 0) + 1
    attacks = list(dict.fromkeys(a for a, _ in cells))
    detectors = list(dict.fromkeys(d for _, d in cells))
    return dict(sorted(cells.items(), key=lambda kv: (attacks.index(kv[0][0]), detectors.index(kv[0][1]))))


def _final(doc: Mapping[str, Any], name: str) -> float | None:
    value = (doc.get("final") or {}).get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def long_rows(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (attack, detector, seed) of the completed runs: the verdict, CDA, ASR,
    and the CDA cost against the baseline run of the same attack and seed. Runs without an
    honest client (the `client` attack with K = 1) are left out."""
    docs = [d for d in docs if d.get("status") == "completed" and isinstance(d.get("config"), dict)]
    baseline: dict[tuple[str, int], float | None] = {}
    for doc in docs:
        cfg = doc["config"]
        if not any(d in TRAINING_DEFENSES for d in cfg.get("defenses") or []):
            baseline[(cfg.get("attack"), cfg.get("seed"))] = _final(doc, "cda")
    rows = []
    for doc in docs:
        cfg = doc["config"]
        if not has_honest_client(cfg):
            continue
        for detector, entry in (doc.get("defenses") or {}).items():
            flag = entry.get("flagged_at") if isinstance(entry, dict) else None
            flag = flag if isinstance(flag, dict) else {}
            cda, base_cda = _final(doc, "cda"), baseline.get((cfg.get("attack"), cfg.get("seed")))
            rows.append({
                "attack": cfg.get("attack"), "detector": detector, "seed": cfg.get("seed"),
                "flagged": bool(flag), "flag_epoch": flag.get("epoch"), "flag_step": flag.get("step"),
                "flag_client": flag.get("client"), "cda": cda, "asr": _final(doc, "asr"),
                "baseline_cda": base_cda,
                "cda_cost": cda - base_cda if cda is not None and base_cda is not None else None,
                "run": doc.get("id"),
            })
    rows.sort(key=lambda r: (str(r["attack"]), str(r["detector"]), r["seed"] if r["seed"] is not None else 0))
    return rows


def has_honest_client(cfg: Mapping[str, Any]) -> bool:
    """False for the `client` attack with one client: the only client is the attacker,
    so no detector runs and the run says nothing about detection."""
    return not (cfg.get("attack") == "client" and int(cfg.get("clients") or 1) <= 1)


def _mean(values: Iterable[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.fmean(numbers) if numbers else None


def matrix_rows(rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The matrix, a pivot of the long table per (attack, detector): the share of runs
    flagged (detection rate; on `none` runs that share is the false-positive rate, which
    every row of the detector repeats), the mean epoch of the first flag over flagged
    runs, and the means of CDA cost, ASR and CDA (percentages, CDA cost in points)."""
    cells: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        cells.setdefault((str(row["attack"]), str(row["detector"])), []).append(row)
    fpr = {detector: _mean(float(r["flagged"]) for r in members)
           for (attack, detector), members in cells.items() if attack == "none"}
    out = []
    for (attack, detector), members in cells.items():
        rate = _mean(float(r["flagged"]) for r in members)
        out.append({
            "attack": attack, "detector": detector, "runs": len(members),
            "detection_rate": None if attack == "none" else rate,
            "false_positive_rate": fpr.get(detector),
            "mean_detection_epoch": _mean(r["flag_epoch"] for r in members if r["flagged"]),
            "cda_cost": _mean(r["cda_cost"] for r in members),
            "asr": _mean(r["asr"] for r in members), "cda": _mean(r["cda"] for r in members),
        })
    return out
