"""The new-run form as data: which widget each RunConfig field gets, text <-> value,
and validation with the CLI's one-line messages attached to the field they name.

Pure Python (no Textual), so it is unit-tested on its own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from engine.config import user_config
from engine.files import existing_folder
from engine.config import (ON_FLAG, ATTACK_FIELDS, DEFENSE_FIELDS, SCRUTINIZER_FORMS, TRIGGER_FIELDS, AE_GRADS, AE_VARIANTS, ATTACKS, CUTS, DATASETS, DEVICES, FIELD_HELP, HIJACK_CRITICS, HIJACK_FINETUNE, HIJACK_TASK_HEADS, MODELS,
                           RR_GRANULARITIES, SPLITOUT_FEATURES, TRIGGERS, ConfigError, RunConfig,
                           parse_defenses, parse_milestones, validate)

CHOICES: dict[str, tuple] = {
    "dataset": DATASETS, "model": MODELS, "cut": CUTS, "attack": ATTACKS, "trigger": TRIGGERS,
    "rr_granularity": RR_GRANULARITIES, "ae_grad": AE_GRADS, "ae_variant": AE_VARIANTS, "device": DEVICES,
    "splitout_features": SPLITOUT_FEATURES, "hijack_critic": HIJACK_CRITICS, "hijack_finetune": HIJACK_FINETUNE,
    "hijack_task_head": HIJACK_TASK_HEADS, "scrutinizer_form": SCRUTINIZER_FORMS, "on_flag": ON_FLAG,
}
ATTACK_ONLY: dict[str, tuple[str, ...]] = {}
for _attack, _names in ATTACK_FIELDS.items():
    for _name in _names:
        ATTACK_ONLY[_name] = ATTACK_ONLY.get(_name, ()) + (_attack,)
TRIGGER_ONLY = {name: kind for kind, names in TRIGGER_FIELDS.items() for name in names}
DEFENSE_ONLY = {name: defense for defense, names in DEFENSE_FIELDS.items() for name in names}
# Fields whose empty text means "the paper's default for this dataset/model".
OPTIONAL = {f.name for f in fields(RunConfig) if "None" in str(f.type)}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str            # select, bool, int, float, str, milestones, names
    help: str
    attacks: tuple[str, ...] | None  # shown only for these attacks, or always (None)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


def _kind(name: str, type_text: str) -> str:
    if name in CHOICES:
        return "select"
    if "tuple[str" in type_text:
        return "names"
    if "tuple" in type_text:
        return "milestones"
    for kind in ("bool", "int", "float"):
        if kind in type_text:
            return kind
    return "str"


def _form_order() -> list[str]:
    """RunConfig's field order, with the attacks' own fields right under `attack` and the
    trigger kinds' right under `trigger`."""
    names = [f.name for f in fields(RunConfig) if f.name not in ATTACK_ONLY and f.name not in TRIGGER_ONLY]
    for owner, owned in (("attack", ATTACK_ONLY), ("trigger", TRIGGER_ONLY)):
        at = names.index(owner) + 1
        names[at:at] = [f.name for f in fields(RunConfig) if f.name in owned]
    return names


_TYPES = {f.name: str(f.type) for f in fields(RunConfig)}
SPECS: tuple[FieldSpec, ...] = tuple(
    FieldSpec(name, _kind(name, _TYPES[name]), FIELD_HELP[name], ATTACK_ONLY.get(name))
    for name in _form_order()
)
SPEC_BY_NAME = {s.name: s for s in SPECS}


def visible(name: str, attack: str, trigger: str = "patch", defenses: Any = ()) -> bool:
    """Whether the form shows field `name` for this attack, trigger kind and defenses."""
    if name in DEFENSE_ONLY:
        return DEFENSE_ONLY[name] in (defenses or ())
    owners = ATTACK_ONLY.get(name)
    kind = TRIGGER_ONLY.get(name)
    return (owners is None or attack in owners) and (kind is None or kind == trigger)


def defenses_named(text: Any) -> tuple[str, ...]:
    """The detectors a defenses field's text names, leniently (while it is being typed)."""
    try:
        return parse_defenses(str(text or "")) or ()
    except ConfigError:
        return ()


def to_text(cfg: RunConfig) -> dict[str, Any]:
    """Widget values for a config: strings for inputs, raw values for selects and switches."""
    out: dict[str, Any] = {}
    for spec in SPECS:
        value = getattr(cfg, spec.name)
        if spec.kind in ("select", "bool"):
            out[spec.name] = value
        elif value is None:
            out[spec.name] = ""
        elif spec.kind == "milestones":
            out[spec.name] = ",".join(map(str, value)) if value else "none"
        elif spec.kind == "names":
            out[spec.name] = ",".join(value)
        else:
            out[spec.name] = str(value)
    return out


def parse(name: str, raw: Any) -> Any:
    """One widget value -> the field's value; ConfigError with the flag's name if it can't be."""
    spec = SPEC_BY_NAME[name]
    if spec.kind in ("select", "bool"):
        return raw
    text = str(raw).strip()
    if text == "" and name in OPTIONAL:
        return None
    if spec.kind == "milestones":
        return parse_milestones(text)
    if spec.kind == "names":
        return parse_defenses(text)
    if spec.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{spec.flag} must be a whole number (got {text!r})") from None
    if spec.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{spec.flag} must be a number (got {text!r})") from None
    return str(raw)


_FLAG = re.compile(r"--([a-z0-9-]+)")


def field_of_error(message: str) -> str | None:
    """The field a ConfigError message names (its first --flag), if it is a form field."""
    for match in _FLAG.finditer(message):
        name = match.group(1).replace("-", "_")
        if name in SPEC_BY_NAME:
            return name
    if "trigger" in message:
        return "trigger_size"
    return None


def build(values: dict[str, Any]) -> tuple[RunConfig | None, dict[str, str]]:
    """Widget values -> (config, {}) or (None, {field or "": message}).

    Parse errors are reported per field; then the whole config is validated with the
    engine's own rules (the messages the CLI prints), attached to the field they name.
    Fields of other attacks keep their values but are not shown."""
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, raw in values.items():
        try:
            parsed[name] = parse(name, raw)
        except ConfigError as exc:
            errors[name] = str(exc)
    if parsed.get("data_root"):
        try:   # a mistyped folder would become a new one that a download fills (as --data-root)
            existing_folder(parsed["data_root"], "--data-root")
        except ConfigError as exc:
            errors["data_root"] = str(exc)
    if errors:
        return None, errors
    try:
        cfg = validate(RunConfig(**parsed))
    except ConfigError as exc:
        return None, {field_of_error(str(exc)) or "": str(exc)}
    except TypeError as exc:  # a field left out entirely
        return None, {"": str(exc)}
    return cfg, {}


def config_from_run(doc: dict[str, Any]) -> RunConfig | None:
    """The config a clone of run document `doc` starts from: only the user's fields, the
    ones resolved from dataset/model defaults left empty so the form resolves them again
    for whatever dataset and model the user picks (engine.config)."""
    return config_from_dict(user_config(doc or {}))


def config_from_dict(data: dict[str, Any]) -> RunConfig | None:
    """A stored run's config back into a RunConfig for the form (unknown fields dropped)."""
    known = {k: v for k, v in (data or {}).items() if k in SPEC_BY_NAME}
    try:
        return RunConfig.from_dict(known)
    except (ConfigError, TypeError):
        return None
