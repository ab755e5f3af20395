"""A sweep: a grid of settings times seeds -> the RunConfigs to run, each with a stable identity.

Pure and torch-free. The identity of a grid point (its experiment key) is a hash of the
fields of its resolved config that matter for that run: not those that change nothing
computed (device, data root, name, ...), and not the options of an attack, trigger kind or
detector the run does not use. A field missing from an older run file counts at the value
runs had before the field existed (LEGACY_VALUES), never at today's default, so a default
can change without moving any stored run's key. Sweeps find their runs by recomputing keys
from the configs they stored (executors.point_run_docs), so a stored sweep keeps finding
its runs whatever the key function of the version that wrote it.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..config import (ATTACK_FIELDS, ATTACKS, CUTS, DATASETS, DEFENSE_FIELDS, HIJACK_CRITICS, LEGACY_VALUES,
                      MODELS, ON_FLAG, TRIGGER_FIELDS, TRIGGERS, RunConfig, resolve)
from ..errors import ConfigError
from ..files import read_text

# The grid's axes: sweep key -> RunConfig field.
AXES = {
    "datasets": "dataset", "models": "model", "cuts": "cut", "clients": "clients",
    "alphas": "alpha", "attacks": "attack", "triggers": "trigger", "seeds": "seed",
    # The hijack's knobs (the attacker's frontier, docs/protocol.md section 12) and the
    # honest clients' reaction to a flag.
    "hijack_betas": "hijack_beta", "hijack_critics": "hijack_critic", "hijack_warmups": "hijack_warmup_epochs",
    "on_flags": "on_flag",
}
# Axes that vary only the hijack attack: other attacks run once for all their values.
HIJACK_AXES = ("hijack_betas", "hijack_critics", "hijack_warmups")
# Fields that do not change the experiment's numbers: left out of its identity.
NOT_EXPERIMENT = ("name", "device", "data_root", "save_weights", "eval_batch_size", "defense_trace")
# The paper's surrogate-attack grid (docs/protocol.md section 6; the authors' results_{mnist,fmnist,cifar10}.csv hold
# one run for each of these 3 x 3 x 3 x 4 x 5 = 540 settings).
PAPER_GRID: dict[str, tuple] = {
    "datasets": ("mnist", "fmnist", "cifar10"),
    "models": ("lenet", "stripnet", "resnet9"),
    "cuts": (1, 2, 3),
    "clients": (1, 3, 5, 7),
    "alphas": (0.5, 0.2, 0.09, 0.06, 0.04),
    "attacks": ("surrogate",),
    "seeds": (47,),
}

_CHOICES = {"datasets": DATASETS, "models": MODELS, "cuts": CUTS, "attacks": ATTACKS, "triggers": TRIGGERS,
            "hijack_critics": HIJACK_CRITICS, "on_flags": ON_FLAG}
_INTEGER_AXES = ("cuts", "clients", "seeds", "hijack_warmups")
_FLOAT_AXES = ("alphas", "hijack_betas")


@dataclass(frozen=True)
class Sweep:
    """The grid (one tuple of values per axis) and the fields every run shares."""
    grid: dict[str, tuple] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"grid": {k: list(v) for k, v in self.grid.items()}, "base": dict(self.base)}

    def sweep_id(self) -> str:
        """The same grid and shared fields give the same id: a second start resumes the first."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return "sweep-" + hashlib.sha1(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Point:
    key: str           # identity of the experiment (seed included)
    config: RunConfig  # resolved
    given: RunConfig   # as the grid gave it: what a worker runs, so its run file records
                       # which fields were resolved from dataset/model defaults


def parse_list(axis: str, text: str | Iterable[Any]) -> tuple:
    """'1,3' -> (1, 3) for one axis, checked against the allowed values."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    items = [i for i in items if i != ""]
    if not items:
        raise ConfigError(f"--{axis} needs at least one value")
    out = []
    for item in items:
        try:
            value = int(item) if axis in _INTEGER_AXES else float(item) if axis in _FLOAT_AXES else str(item)
        except (TypeError, ValueError):
            raise ConfigError(f"--{axis}: {item!r} is not a number") from None
        if axis in _CHOICES and value not in _CHOICES[axis]:
            allowed = ", ".join(str(c) for c in _CHOICES[axis])
            raise ConfigError(f"--{axis}: unknown value {item!r}; choose from {allowed}")
        out.append(value)
    return tuple(dict.fromkeys(out))  # keep order, drop repeats


def load_sweep_file(path: Path) -> dict[str, Any]:
    """A TOML or JSON file of axes (lists or comma strings) and shared run fields."""
    text = read_text(path, "sweep file")
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"sweep file {path} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"sweep file {path} must hold a table of axis = [values] and run fields")
    known = set(AXES) | {f.name for f in fields(RunConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"sweep file {path}: unknown key(s) {', '.join(unknown)}; "
                          f"axes are {', '.join(AXES)}, other keys must be run config fields")
    return data


def make_sweep(axes: dict[str, Any], base: dict[str, Any], paper: bool = False) -> Sweep:
    """Axes given as lists or comma strings (None = not given); `paper` starts from the paper's grid."""
    grid: dict[str, tuple] = dict(PAPER_GRID) if paper else {}
    for axis, value in axes.items():
        if axis not in AXES:
            raise ConfigError(f"unknown sweep axis {axis!r}; axes are {', '.join(AXES)}")
        if value is not None:
            grid[axis] = parse_list(axis, value)
    overlap = sorted(AXES[a] for a in grid if AXES[a] in base)
    if overlap:
        raise ConfigError(f"{', '.join(overlap)} given both as a sweep axis and as a single run field")
    if "datasets" not in grid and "dataset" not in base:
        raise ConfigError("a sweep needs --datasets (or --paper)")
    return Sweep(grid=grid, base=dict(base))


def experiment_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stored or resolved config that decide what its run computes: every
    field but NOT_EXPERIMENT, less the options of the attacks, trigger kinds and detectors
    the run does not use; a missing field at its LEGACY_VALUES value; the detectors sorted."""
    full = {**LEGACY_VALUES, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}}
    attack, trigger = full.get("attack"), full.get("trigger")
    defenses = sorted(str(d) for d in (full.get("defenses") or []))
    unused = {name for owner, names in ATTACK_FIELDS.items() if owner != attack for name in names}
    unused -= set(ATTACK_FIELDS.get(str(attack), ()))
    unused |= {name for kind, names in TRIGGER_FIELDS.items() if kind != trigger for name in names}
    unused |= {name for detector, names in DEFENSE_FIELDS.items() if detector not in defenses for name in names}
    if full.get("on_flag") != "stop":
        unused.add("local_epochs")
    keep = {k: v for k, v in full.items() if k not in NOT_EXPERIMENT and k not in unused}
    keep["defenses"] = defenses
    return keep


def experiment_key(config: dict[str, Any], drop: Iterable[str] = ()) -> str:
    """A stable hash of what a run computes (experiment_fields), without `drop`."""
    keep = {k: v for k, v in experiment_fields(config).items() if k not in set(drop)}
    return hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def expand(sweep: Sweep) -> list[Point]:
    """Every grid point as a resolved RunConfig; alpha only varies for the surrogate attack."""
    axes = list(sweep.grid)
    points: dict[str, Point] = {}
    for values in itertools.product(*(sweep.grid[a] for a in axes)):
        fields_ = dict(sweep.base)
        fields_.update({AXES[a]: v for a, v in zip(axes, values)})
        if fields_.get("attack", "none") != "surrogate":
            fields_.pop("alpha", None)  # alpha means nothing without the surrogate: one run, not five
        if fields_.get("attack", "none") == "none":
            fields_.pop("trigger", None)  # no attack, no trigger to vary: one clean run
        if fields_.get("attack", "none") != "hijack":
            for axis in HIJACK_AXES:  # the hijack's knobs vary only the hijack
                if axis in sweep.grid:
                    fields_.pop(AXES[axis], None)
        try:
            given = RunConfig.from_dict(fields_)
            cfg = resolve(given)
        except ConfigError as exc:
            raise ConfigError(f"sweep point {fields_}: {exc}") from None
        key = experiment_key(cfg.to_dict())
        points.setdefault(key, Point(key, cfg, given))
    return list(points.values())
