"""The arena (docs/protocol.md section 11): every attack against every detector over seeds,
as one sweep. Its verdicts and tables are engine/sweeps/verdicts.py's. Pure Python.

Runs per attack and seed: one with all the detectors that only watch (Scrutinizer,
SplitOut), which trains exactly as a run without detectors and so is also the baseline
of the CDA cost (with no such detector asked for, it is a run without any), and one for
each detector that changes training (SplitGuard). Points without an honest client (the
`client` attack with K = 1) are neither planned nor run.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..config import TRAINING_DEFENSES, RunConfig
from ..errors import ConfigError
from .grid import Point, Sweep, expand, make_sweep, parse_list
from .verdicts import has_honest_client, variant_label, variants

# The seeds `sltui arena` runs when none are given: evaluation seeds, disjoint from the
# calibration seeds (engine/sweeps/calibration.py, CALIBRATION_SEEDS).
DEFAULT_SEEDS = "1,2,3,4,5"


def arena_groups(defenses: Iterable[str]) -> list[tuple[str, ...]]:
    """The detector sets to run: the watching ones together (maybe none), then each
    training-changing one alone."""
    defenses = list(dict.fromkeys(defenses))
    watching = tuple(d for d in defenses if d not in TRAINING_DEFENSES)
    return [watching] + [(d,) for d in defenses if d in TRAINING_DEFENSES]


def arena_sweep(attacks: Any, defenses: Iterable[str], seeds: Any, base: dict[str, Any],
                axes: Mapping[str, Any] | None = None) -> tuple[Sweep, list[Point]]:
    """The arena's sweep (its id and record) and its points: attacks x seeds x detector
    sets, times any further sweep axes given (the hijack's knobs, the reaction)."""
    base = {"dataset": RunConfig().dataset, **base}
    groups = arena_groups(defenses)
    extra = {k: v for k, v in (axes or {}).items() if v is not None}
    # Attacks that leave no honest client to run a detector (the client attack with one
    # client) are not planned at all.
    attacks = tuple(a for a in parse_list("attacks", attacks) if has_honest_client({**base, "attack": a}))
    if not attacks:
        raise ConfigError("no arena point has an honest client to run a detector (the client attack with "
                          "--clients 1 has none); add attacks or clients")
    points: dict[str, Point] = {}
    for group in groups:
        axes_of_group = dict(extra)
        if not group and "on_flags" in extra:
            # Runs without a detector (the baseline for SplitGuard's cost) never react: they
            # are planned with `continue` only, and not at all if the arena asks only `stop`.
            flags = [f for f in parse_list("on_flags", extra["on_flags"]) if f != "stop"]
            if not flags:
                continue
            axes_of_group["on_flags"] = ",".join(flags)
        for point in expand(make_sweep({"attacks": attacks, "seeds": seeds, **axes_of_group},
                                       {**base, "defenses": group})):
            points.setdefault(point.key, point)
    grid = {"attacks": tuple(dict.fromkeys(p.config.attack for p in points.values())),
            "seeds": tuple(dict.fromkeys(p.config.seed for p in points.values())),
            "defenses": tuple(tuple(g) for g in groups),
            **{axis: tuple(parse_list(axis, value)) for axis, value in extra.items()}}
    return Sweep(grid=grid, base=base), list(points.values())


def is_arena(sweep_doc: Mapping[str, Any]) -> bool:
    """Whether a sweep file is an arena's: arena_sweep's grid is the only one with a
    `defenses` axis (its detector sets); `sltui sweep`'s axes never include it."""
    grid = sweep_doc.get("grid")
    return isinstance(grid, dict) and "defenses" in grid


def planned_configs(sweep_doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The configs of the sweep's points that have an honest client."""
    return [p["config"] for p in sweep_doc.get("points") or []
            if isinstance(p, dict) and isinstance(p.get("config"), dict) and has_honest_client(p["config"])]


def planned_variants(*sweep_docs: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Per attack, the options its planned points vary (they split its cells), over one
    sweep or several reported together."""
    return variants([config for doc in sweep_docs for config in planned_configs(doc)])


def planned_cells(sweep_doc: Mapping[str, Any]) -> dict[tuple[str, str, str], int]:
    """Per (attack, variant, detector), how many runs the arena plans: one per point whose
    detector set has the detector, none for points without an honest client (older arena
    files may list them). Set against a cell's `runs`, this says which cells are still
    incomplete. Ordered by attack, variant and detector, each in the order the sweep
    first names it."""
    configs = planned_configs(sweep_doc)
    varying = variants(configs)
    cells: dict[tuple[str, str, str], int] = {}
    for config in configs:
        attack = str(config.get("attack"))
        for detector in config.get("defenses") or []:
            key = (attack, variant_label(config, varying.get(attack, ())), str(detector))
            cells[key] = cells.get(key, 0) + 1
    order = [list(dict.fromkeys(k[i] for k in cells)) for i in range(3)]
    return dict(sorted(cells.items(), key=lambda kv: tuple(order[i].index(kv[0][i]) for i in range(3))))


