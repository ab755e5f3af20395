"""A stored run's config as the user chose it: the base of a clone or of `--config run.json`.

A run file's ``config`` holds the concrete values the run used, including those that
:func:`engine.config.resolve` filled from the dataset/model defaults (epochs, patience,
LR milestones, trigger column, autoencoder epochs). Cloning an MNIST LeNet run as CIFAR-10
ResNet9 must not keep MNIST's 90 epochs, so a clone keeps only the user's fields and leaves
the others unset, to be resolved again for the new dataset and model.

Which fields were resolved is read from the run file's ``config_resolved`` list. Run files
written before that list existed are read by inference: a default-dependent field counts
as resolved when its value equals the default for that run's dataset, model and trigger
size. A user who typed the default value explicitly then gets the new dataset's default
too, which is what a clone to another dataset almost always wants; on the same dataset
the value is the same either way.
"""
from __future__ import annotations

from typing import Any, Mapping

from .config import DEPENDENT_FIELDS, LEGACY_VALUES, ConfigError, RunConfig, spec_defaults, stored_config


def resolved_in(doc: Mapping[str, Any]) -> list[str]:
    """The config fields of run document `doc` that were resolved from defaults."""
    recorded = doc.get("config_resolved")
    if isinstance(recorded, list):
        return [name for name in recorded if name in DEPENDENT_FIELDS]
    config = doc.get("config") or {}
    try:
        defaults = spec_defaults(stored_config(dict(config)))
    except (ConfigError, TypeError):
        return []  # an unreadable config: keep it whole, its reader reports the problem
    return [name for name, value in defaults.items() if _same(config.get(name), value)]


def user_config(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`doc`'s config without the fields resolved from defaults (see the module docstring).
    A field the file does not hold, whose value before it existed (LEGACY_VALUES) is not
    today's default, is given that older value: a clone of an older run keeps its trigger
    pattern, say. An unreadable config is kept whole (its reader reports the problem)."""
    resolved = set(resolved_in(doc))
    config = dict(doc.get("config") or {})
    try:
        stored_config(config)
    except (ConfigError, TypeError):
        return config
    today = RunConfig().to_dict()
    legacy = {k: v for k, v in LEGACY_VALUES.items()
              if k not in config and k not in resolved and v is not None and today.get(k, v) != v}
    return {**legacy, **{k: v for k, v in config.items() if k not in resolved}}


def _same(stored: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        return isinstance(stored, (list, tuple)) and tuple(stored) == default
    return stored == default and type(stored) is type(default)
