"""The run filter: `attack=hijack cut>=2 asr>90 tag:paper mnist`, one parser for the
terminal UI's `/` and `sltui runs list --filter`.

A query is terms separated by spaces; a run matches when every term does:
- `FIELD OP VALUE` with OP one of `=`, `!=`, `>=`, `<=`, `>`, `<`: a field of the run's row
  (dataset, model, cut, K, attack, alpha, trigger, seed, epochs, status, cda, asr, best_cda,
  best_asr, time, id, note). Numbers compare as numbers; text compares whole and ignoring
  case with `=`/`!=`. A run without the field (a clean run's alpha) matches only `!=`.
- `tag:NAME`: the run carries that tag.
- `name:TEXT`: the run's name (its config's free label, --name) contains TEXT, ignoring case.
- any other word: it appears somewhere in the row's text (id, status, setting, detectors,
  name, tags, note), ignoring case.
A malformed term raises QueryError with a message that says what is wrong and what would
be right. Pure Python.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# Field names a user may write, and the row key each stands for.
FIELDS = {
    "id": "id", "status": "status", "dataset": "dataset", "model": "model", "cut": "cut",
    "k": "clients", "clients": "clients", "attack": "attack", "alpha": "alpha", "trigger": "trigger",
    "seed": "seed", "epochs": "epochs", "cda": "cda", "asr": "asr", "best_cda": "best_cda",
    "best_asr": "best_asr", "time": "seconds", "seconds": "seconds", "note": "note", "name": "name",
}
# What a plain word is looked for in.
TEXT_KEYS = ("id", "status", "setting", "dataset", "model", "attack", "trigger", "detectors", "name", "tags", "note")
OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "!=": lambda a, b: a != b,
    "=": lambda a, b: a == b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
}
TERM = re.compile(r"^([A-Za-z_]+)(>=|<=|!=|=|>|<)(.*)$")
# `tag:NAME` and `name:TEXT`: (row key, Term op, what a bare prefix lacks).
PREFIX_TERMS = {"tag:": ("tags", "tag", "a name, e.g. tag:paper"),
                "name:": ("name", "contains", "some text, e.g. name:baseline")}


class QueryError(ValueError):
    """A filter that cannot be read; the message is for the user."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class Term:
    key: str           # row key; "" for a plain word, "tags" for tag:NAME, "name" for name:TEXT
    op: str            # one of OPS, "word", "tag" or "contains"
    value: str

    def matches(self, row: Mapping[str, Any]) -> bool:
        if self.op == "word":
            return self.value in row_text(row)
        if self.op == "tag":
            return self.value in [str(t).lower() for t in row.get("tags") or []]
        if self.op == "contains":
            return self.value in str(row.get(self.key) or "").lower()
        have = row.get(self.key)
        if have is None or (isinstance(have, float) and math.isnan(have)):
            return self.op == "!="
        want_num, have_num = _number(self.value), _number(have)
        if want_num is not None and have_num is not None:
            return OPS[self.op](have_num, want_num)
        if self.op in ("=", "!="):
            return OPS[self.op](str(have).lower(), self.value)
        return False


@dataclass(frozen=True)
class Query:
    text: str
    terms: tuple[Term, ...]

    def matches(self, row: Mapping[str, Any]) -> bool:
        return all(t.matches(row) for t in self.terms)


def row_text(row: Mapping[str, Any]) -> str:
    """The text plain words are looked for in, lower case."""
    parts = []
    for key in TEXT_KEYS:
        value = row.get(key)
        if isinstance(value, (list, tuple)):
            parts.extend(map(str, value))
        elif value is not None:
            parts.append(str(value))
    return " ".join(parts).lower()


def parse_query(text: str) -> Query:
    """The Query for `text` ('' matches every run); QueryError for a malformed term."""
    terms = []
    for word in (text or "").split():
        prefix = next((p for p in PREFIX_TERMS if word.lower().startswith(p)), None)
        if prefix is not None:
            key, op, needs = PREFIX_TERMS[prefix]
            value = word[len(prefix):].strip().lower()
            if not value:
                raise QueryError(f"{prefix} needs {needs}")
            terms.append(Term(key, op, value))
            continue
        m = TERM.match(word)
        if m is None:
            if any(op in word for op in ("<", ">", "!")) or word.startswith("="):
                raise QueryError(f"cannot read {word!r}: write FIELD OP VALUE, e.g. cut>=2 or attack=hijack")
            terms.append(Term("", "word", word.lower()))
            continue
        name, op, value = m.group(1).lower(), m.group(2), m.group(3).strip().lower()
        if name not in FIELDS:
            raise QueryError(f"unknown field {name!r} in {word!r}; fields: {', '.join(sorted(set(FIELDS) - {'clients', 'seconds'}))}")
        if value[:1] in ("<", ">", "=", "!"):
            raise QueryError(f"cannot read {word!r}: one operator per term, e.g. {name}>=2")
        if not value:
            raise QueryError(f"{word!r} needs a value after {op!r}, e.g. {name}{op}2")
        if op in (">=", "<=", ">", "<") and _number(value) is None:
            raise QueryError(f"{word!r}: {op} compares numbers, and {value!r} is not one")
        terms.append(Term(FIELDS[name], op, value))
    return Query(text or "", tuple(terms))
