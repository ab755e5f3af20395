"""Command-line flags generated from RunConfig's fields, so every field has a flag and
the two can never drift apart."""
from __future__ import annotations

import inspect
import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from engine.config import user_config
from engine.config import (ATTACK_FIELDS, DEFENSE_FIELDS, FIELD_HELP, TRIGGER_FIELDS, ConfigError, RunConfig,
                           parse_defenses, parse_milestones)
from engine.files import read_json
from typer.core import TyperCommand

from .root import check_data_root, default_data_root


def _option_type(field_type: str) -> Any:
    if "tuple" in field_type:
        return Optional[str]
    if "bool" in field_type:
        return Optional[bool]
    if "int" in field_type:
        return Optional[int]
    if "float" in field_type:
        return Optional[float]
    return Optional[str]


# Other spellings of a field's flag.
ALIASES: dict[str, tuple[str, ...]] = {"defenses": ("--defense",)}


# The help's panels (`sltui run --help`), each short enough to read whole at 80 columns.
PANELS: dict[str, tuple[str, ...]] = {
    "Setting": ("dataset", "model", "cut", "clients", "attack", "epochs", "seed", "name"),
    "Training": ("batch_size", "lr", "weight_decay", "lr_milestones", "lr_gamma", "patience", "rr_granularity"),
    "Trigger": ("trigger", "target", "trigger_size", "trigger_row", "trigger_col", "trigger_seed", "trigger_rng",
                *(name for names in TRIGGER_FIELDS.values() for name in names)),
    "Attacks: shared": ("poison_ratio", "aux_size"),
    "Detectors": ("defenses", "on_flag", "local_epochs",
                  *(name for names in DEFENSE_FIELDS.values() for name in names)),
    "Data, device and output": ("device", "data_root", "train_limit", "eval_limit", "eval_batch_size", "save_weights",
                                "defense_trace"),
}


# On/off fields (`--save-weights/--no-save-weights`) have a panel of their own: beside them,
# a panel's option names would have half the width.
SWITCHES = "Switches (--NAME / --no-NAME)"
PANEL_ORDER = ("Setting", "Training", "Trigger", "Attacks: shared",
               *(f"Attack: {attack}" for attack in ATTACK_FIELDS), "Detectors", "Data, device and output", SWITCHES)
_BOOLS = {f.name for f in fields(RunConfig) if "bool" in str(f.type)}


def panel_of(name: str) -> str:
    """The help panel of config field `name`: SWITCHES for an on/off field, else PANELS,
    else its attack's own (`Attack: hijack`)."""
    if name in _BOOLS:
        return SWITCHES
    for panel, names in PANELS.items():
        if name in names:
            return panel
    owner = next((attack for attack, names in ATTACK_FIELDS.items() if name in names), None)
    return f"Attack: {owner}" if owner else "Other run options"


class HelpCommand(TyperCommand):
    """A command whose help shows no type after a flag (`--headless`, `--help`): a flag takes
    no value, and `<bool>` there reads as if it did."""

    def get_params(self, ctx: Any) -> list:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and getattr(param, "metavar", None) is None:
                param.metavar = ""
        return params


class HelpTyper(typer.Typer):
    """A Typer app whose commands are HelpCommands unless they name their own class."""

    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or HelpCommand, **kwargs)


def config_parameters(exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per RunConfig field but `exclude`, default None (= not given),
    in the help panel of its kind (panel_of)."""
    params = []
    order = {panel: i for i, panel in enumerate(PANEL_ORDER)}
    for f in sorted(fields(RunConfig), key=lambda f: order.get(panel_of(f.name), len(order))):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        decls = [flag, *ALIASES.get(f.name, ())] if "bool" not in str(f.type) else [f"{flag}/--no-{flag[2:]}"]
        option = typer.Option(None, *decls, help=FIELD_HELP[f.name], rich_help_panel=panel_of(f.name),
                              show_default=False, metavar="" if "bool" in str(f.type) else None)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=_option_type(str(f.type))))
    return params


def with_config_flags(func: Callable, exclude: tuple[str, ...] = ()) -> Callable:
    """Give `func(**kwargs)` the config flags (but `exclude`) on top of its own parameters."""
    own = list(inspect.signature(func).parameters.values())
    own = [p for p in own if p.kind != inspect.Parameter.VAR_KEYWORD]
    params = own + config_parameters(exclude=exclude)
    func.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    func.__annotations__ = {p.name: p.annotation for p in params}
    return func


def given_fields(flags: dict[str, Any]) -> dict[str, Any]:
    """The config flags given on the command line, parsed like --config values; the root
    --data-root (sltui/cli/root.py) where the command's own is not given."""
    given = {k: v for k, v in flags.items() if v is not None}
    check_data_root(given.get("data_root"))
    if "data_root" in flags and given.get("data_root") is None and default_data_root(None) is not None:
        given["data_root"] = default_data_root(None)
    if "lr_milestones" in given:
        given["lr_milestones"] = parse_milestones(given["lr_milestones"])
    if "defenses" in given:
        given["defenses"] = parse_defenses(given["defenses"])
    return given


def load_config_file(path: Path) -> dict[str, Any]:
    data = read_json(path, "--config")
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} must hold a JSON object of field: value")
    # A run file can be used as a config: take the part of its "config" the user chose, so
    # that fields resolved from its dataset/model defaults are resolved again for new flags.
    if "config" in data and "schema" in data:
        if not isinstance(data["config"], dict):
            raise ConfigError(f"--config {path} is a run file without a config (its \"config\" is "
                              f"{json.dumps(data['config'])}); give a run file that has one, or a JSON object of fields")
        data = user_config(data)
    return data


def build_config(config_file: Optional[Path], flags: dict[str, Any]) -> RunConfig:
    """Defaults < --config file < flags given on the command line."""
    data = load_config_file(config_file) if config_file else {}
    try:
        base = RunConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"--config {config_file}: {exc}") from None
    return base.replace(**given_fields(flags))
