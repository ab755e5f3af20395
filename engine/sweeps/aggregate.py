"""Runs of one setting over several seeds -> mean, std and n of their metrics. Pure Python."""
from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Mapping

from .grid import NOT_EXPERIMENT, experiment_key

# (column prefix, where in the run document, metric)
METRICS = (("cda", "final", "cda"), ("asr", "final", "asr"),
           ("best_cda", "best", "cda"), ("best_asr", "best", "asr"))
# The setting's fields that lead each row (the rest of its config follows the metrics).
HEADLINE = ("dataset", "model", "cut", "clients", "attack", "alpha", "trigger", "epochs")
# Fields that differ between seeds of one setting: not part of a group's description.
PER_RUN = ("seed", *NOT_EXPERIMENT)


def metric(doc: Mapping[str, Any], where: str, name: str) -> float | None:
    """A run's `where` (final or best) metric `name` as a number, None where it has none (NaN too)."""
    value = (doc.get(where) or {}).get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return None
    return float(value)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for a single value; None for none)."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def group_key(config: Mapping[str, Any]) -> str:
    return experiment_key(dict(config), drop=("seed",))


def aggregate(docs: Iterable[Mapping[str, Any]], statuses: tuple[str, ...] = ("completed",)) -> list[dict[str, Any]]:
    """One row per setting (config without the seed) of the runs whose status is in `statuses`:
    the setting's config fields, n, the seeds and run ids, and mean/std of final and best CDA and ASR."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for doc in docs:
        config = doc.get("config")
        if not isinstance(config, dict) or doc.get("status") not in statuses:
            continue
        groups.setdefault(group_key(config), []).append(doc)
    rows = []
    for key, members in groups.items():
        config = {k: v for k, v in members[0]["config"].items() if k not in PER_RUN}
        row: dict[str, Any] = {"group": key, **{k: config.pop(k, None) for k in HEADLINE}, "n": len(members)}
        for column, where, name in METRICS:
            values = [v for v in (metric(d, where, name) for d in members) if v is not None]
            row[f"{column}_mean"], row[f"{column}_std"] = mean_std(values)
        row.update(config)  # the rest of the setting, then who is in the group
        row.update(seeds=sorted(d["config"].get("seed") for d in members), runs=[d.get("id") for d in members])
        rows.append(row)
    rows.sort(key=lambda r: tuple(str(r.get(k)) for k in ("dataset", "attack", "trigger", "model", "cut", "clients", "alpha")))
    return rows
