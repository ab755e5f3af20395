"""Command-line flags generated from RunConfig's fields, so every field has a flag and
the two can never drift apart."""
from __future__ import annotations

import inspect
import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from engine.clone import user_config
from engine.config import FIELD_HELP, ConfigError, RunConfig, parse_defenses, parse_milestones
from engine.files import read_json

from .root import default_data_root


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


def config_parameters(panel: str = "Run config", exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per RunConfig field but `exclude`, default None (= not given)."""
    params = []
    for f in fields(RunConfig):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        decls = [flag, *ALIASES.get(f.name, ())] if "bool" not in str(f.type) else [f"{flag}/--no-{flag[2:]}"]
        option = typer.Option(None, *decls, help=FIELD_HELP[f.name], rich_help_panel=panel, show_default=False)
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
