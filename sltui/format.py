"""How sltui writes numbers for people: one place for the command line and the terminal UI,
so a percentage, a duration or a missing value reads the same everywhere.

Pure Python: no Rich, no Textual.
"""
from __future__ import annotations

import math
from typing import Any

MISSING = "-"
# Row keys whose values are percentages (the run list, the comparison, the aggregate rows).
PERCENT_KEYS = frozenset({"cda", "asr", "best_cda", "best_asr", "final_cda", "final_asr",
                          "paper_cda", "paper_asr", "val_acc"})
DURATION_KEYS = frozenset({"seconds"})


def is_number(value: Any) -> bool:
    """A real number that can be shown: not None, not a bool, not NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def fmt_num(value: Any, spec: str = ".2f") -> str:
    """`value` formatted with `spec`, or '-' where there is no number (None, NaN, text)."""
    return format(value, spec) if is_number(value) else MISSING


def fmt_pct(value: Any) -> str:
    """A percentage with two decimals (the paper's precision), without the % sign."""
    return fmt_num(value, ".2f")


def fmt_duration(seconds: Any) -> str:
    """Seconds as `28s`, `4m05s` or `2h03m`: always with a unit, so a column of times
    never reads as bare numbers."""
    if not is_number(seconds):
        return MISSING
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def fmt_mean_std(mean: Any, std: Any = None) -> str:
    """`mean ± std` over seeds, or the mean alone where there is no spread to show
    (std None: a single run)."""
    if not is_number(mean):
        return MISSING
    return f"{mean:.2f} ± {std:.2f}" if is_number(std) else f"{mean:.2f}"


def fmt_cell(key: str, value: Any) -> str:
    """A table cell for the row field `key`: percentages and durations by their rule,
    lists joined with commas, anything else as text, '-' for nothing."""
    if key in PERCENT_KEYS:
        return fmt_pct(value)
    if key in DURATION_KEYS:
        return fmt_duration(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def mean_score(scores: Any) -> float | None:
    """The mean of one epoch's per-client detector scores, skipping clients without one."""
    values = [v for v in scores or [] if is_number(v)]
    return sum(values) / len(values) if values else None


def fmt_flag(flagged_at: Any) -> str:
    """A detector's verdict: `epoch 2 step 31 client 1`, or '-' when it never flagged."""
    if not isinstance(flagged_at, dict):
        return MISSING
    return f"epoch {flagged_at.get('epoch')} step {flagged_at.get('step')} client {flagged_at.get('client')}"


# Short names of the detectors, for one-line cells.
DETECTOR_SHORT = {"splitguard": "SG", "scrutinizer": "Scr", "splitout": "SO"}


def detector_verdicts(doc: Any) -> dict[str, tuple[str, Any]]:
    """{detector: (verdict word, epoch it flagged or None)} for a run file (or its index
    summary), in the order the run ran them. The one place every view asks what each
    detector said: `flagged` with its `defenses[name]["flagged_at"]` epoch, else `quiet`.
    (To be switched to engine.sweeps.verdicts.run_verdicts, whose words also say whether
    a flag was right, once that lands.)"""
    defenses = (doc or {}).get("defenses") if isinstance(doc, dict) else None
    if not isinstance(defenses, dict):
        return {}
    out = {}
    for name, entry in defenses.items():
        flag = entry.get("flagged_at") if isinstance(entry, dict) else None
        out[name] = ("flagged", flag.get("epoch")) if isinstance(flag, dict) else ("quiet", None)
    return out


def fmt_verdicts(doc: Any) -> str:
    """The detectors of a run in a cell: `SG@3` for one that flagged the server in epoch 3,
    `SO-` for one that never did, '-' for a run without detectors."""
    parts = [f"{DETECTOR_SHORT.get(name, name)}@{epoch}" if word != "quiet" else f"{DETECTOR_SHORT.get(name, name)}-"
             for name, (word, epoch) in detector_verdicts(doc).items()]
    return " ".join(parts) or MISSING


def fmt_setting(row: Any) -> str:
    """A run's setting in a few words, as a table row (engine.store.summary_row) has it:
    `mnist lenet c3 K3 hijack`, with alpha where the attack has one (`surrogate α=0.09`)
    and the trigger where it is not the paper's patch (`client blend`)."""
    if not isinstance(row, dict) or row.get("dataset") is None:
        return MISSING
    parts = [str(row.get("dataset")), str(row.get("model")), f"c{row.get('cut')}", f"K{row.get('clients')}",
             str(row.get("attack"))]
    if is_number(row.get("alpha")):
        parts.append(f"α={row['alpha']:g}")
    if row.get("trigger") not in (None, "patch"):
        parts.append(str(row["trigger"]))
    return " ".join(parts)


def fmt_defenses(report: Any) -> str:
    """One epoch's detectors in a line: each one's mean score over clients, and
    `FLAGGED@E` once it has flagged the server (in epoch E)."""
    parts = []
    for name, entry in (report or {}).items():
        text = f"{name} {fmt_num(mean_score(entry.get('scores')))}"
        flag = entry.get("flagged_at")
        if isinstance(flag, dict):
            text += f" FLAGGED@{flag.get('epoch')}"
        parts.append(text)
    return "  ".join(parts)


# The arena matrix's rate columns (shares of runs, shown as whole percentages).
ARENA_RATES = frozenset({"detection_rate", "false_positive_rate"})
ARENA_NUMBERS = frozenset({"cda_cost", "asr", "cda", "mean_detection_epoch"})


def fmt_arena_cell(key: str, value: Any) -> str:
    """A cell of the arena matrix (engine.sweeps.arena.matrix_rows), the same in arena.md
    and the TUI's arena view: rates as whole percentages (`100%`), CDA cost, ASR, CDA and
    the mean detection epoch with two decimals, '-' where there is no value."""
    if key in ARENA_RATES:
        return fmt_num(None if not is_number(value) else 100 * value, ".0f") + ("%" if is_number(value) else "")
    if key in ARENA_NUMBERS:
        return fmt_num(value, ".2f")
    return MISSING if value is None else str(value)
