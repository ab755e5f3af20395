"""How sltui writes numbers and text for people: one place for the command line and the
terminal UI, so a percentage, a duration, a missing value or a run's name reads the same
everywhere.

Pure Python, but for `literal`, which builds a Rich Text (Rich is imported when it is called).
"""
from __future__ import annotations

import json
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


def fmt_reaction(reaction: Any) -> str:
    """The honest clients' reaction to a flag (a run file's `reaction`) in a line: where
    split learning stopped and what each client's local model reached."""
    if not isinstance(reaction, dict):
        return MISSING
    local = reaction.get("local") or []
    mean = reaction.get("mean") or {}
    epochs = local[0].get("epochs") if local else "?"
    each = "; ".join(f"client {m.get('client')} CDA {fmt_pct(m.get('cda'))}% ASR {fmt_pct(m.get('asr'))}%"
                     for m in local)
    return (f"stopped split learning at epoch {reaction.get('epoch')}; local models ({epochs} epochs): "
            f"mean CDA {fmt_pct(mean.get('cda'))}% ASR {fmt_pct(mean.get('asr'))}% ({each})")


# Short names of the detectors, for one-line cells.
DETECTOR_SHORT = {"splitguard": "SG", "scrutinizer": "Scr", "splitout": "SO"}


def detector_verdicts(doc: Any) -> dict[str, tuple[str, Any]]:
    """{detector: (verdict, epoch of its first flag or None)} for a run file (or its index
    summary), in the order the run ran them: the verdicts of engine.sweeps.verdicts
    (detected, false_accusation, missed, quiet: docs/protocol.md section 11). The one place
    every view asks what each detector said."""
    from engine.sweeps.verdicts import run_verdicts

    if not isinstance(doc, dict):
        return {}
    return {name: (v.verdict, v.flag_epoch) for name, v in run_verdicts(doc).items()}


# How a verdict reads in a one-line cell, after the detector's short name.
VERDICT_MARKS = {"detected": "@{epoch}", "false_accusation": "@{epoch}!", "missed": " missed", "quiet": "-"}


def fmt_verdicts(doc: Any) -> str:
    """The detectors of a run in a cell: `SG@3` detected a malicious server in epoch 3,
    `Scr@1!` accused an honest one in epoch 1 (a false accusation), `SO missed` never
    flagged a malicious server, `SG-` never flagged an honest one; '-' without detectors."""
    parts = [DETECTOR_SHORT.get(name, name) + VERDICT_MARKS[word].format(epoch=epoch)
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


def fmt_rate(k: Any, n: Any, low: Any, high: Any) -> str:
    """A rate as `k/n (low-high%)`, its 95% interval in whole percentages; '-' for n = 0."""
    if not is_number(n) or not n:
        return MISSING
    interval = f" ({100 * low:.0f}-{100 * high:.0f}%)" if is_number(low) and is_number(high) else ""
    return f"{k}/{n}{interval}"


def fmt_mean_n(mean: Any, std: Any, n: Any, spec: str = ".1f", sign: bool = False) -> str:
    """A mean over runs as `mean ± std (n)`; '-' without values."""
    if not is_number(mean):
        return MISSING
    spec = ("+" if sign else "") + spec
    return f"{format(mean, spec)} ± {format(std if is_number(std) else 0.0, spec.lstrip('+'))} ({n})"


def arena_cells(cell: dict) -> dict[str, str]:
    """A row of engine.sweeps.verdicts.cell_rows as text, the same in arena.md and the TUI:
    detection (`honest` where the server never attacks) and false accusations as k/n with
    their interval, per run and per epoch of an honest server; caught before live (strictly
    before the first epoch with ASR >= 50%) as k/n and caught as it went live (in that
    epoch) as k; latency, CDA cost, ASR and CDA as mean ± std (n)."""
    from engine.sweeps.verdicts import HONEST_SERVER_ATTACKS

    return {
        "detection": "honest" if cell.get("attack") in HONEST_SERVER_ATTACKS else
        fmt_rate(cell.get("detected"), cell.get("malicious_runs"), cell.get("detection_ci_low"),
                 cell.get("detection_ci_high")),
        "false_accusation": fmt_rate(cell.get("false_accusations"), cell.get("runs"),
                                     cell.get("false_accusation_ci_low"), cell.get("false_accusation_ci_high")),
        "latency": fmt_mean_n(cell.get("latency_epochs"), cell.get("latency_std"), cell.get("latency_n")),
        "false_accusation_epochs": fmt_rate(cell.get("accused_epochs"), cell.get("honest_epochs"),
                                            cell.get("accused_epoch_ci_low"), cell.get("accused_epoch_ci_high")),
        "before_live": (f"{cell.get('caught_before_live')}/{cell.get('caught_before_live_of')}"
                        if cell.get("caught_before_live_of") else MISSING),
        "as_live": str(cell.get("caught_as_live") or 0) if cell.get("caught_before_live_of") else MISSING,
        "cost": fmt_mean_n(cell.get("cost_cda"), cell.get("cost_cda_std"), cell.get("cost_cda_n"), ".2f", sign=True),
        "asr": fmt_mean_n(cell.get("asr"), cell.get("asr_std"), cell.get("runs")),
        "cda": fmt_mean_n(cell.get("cda"), cell.get("cda_std"), cell.get("runs")),
        "asr_reacting": fmt_mean_n(cell.get("asr_reacting"), cell.get("asr_reacting_std"), cell.get("asr_reacting_n")),
    }


def fmt_attack_setting(row: Any, attack: bool = True) -> str:
    """An arena cell's attack in a few characters: the hijack's knobs that its arena varied
    (`hijack β0.25 plain w6`; without the attack's name with attack=False), else the attack
    and its variant as verdicts name it. `row` is a cell or frontier row (engine.sweeps.verdicts)."""
    name, variant = str(row.get("attack")), str(row.get("variant") or "")
    # A cell that has no run yet carries its knobs only in its variant's text.
    named = dict(part.split("=", 1) for part in variant.split() if "=" in part)

    def knob(key: str) -> Any:
        value = row.get(key)
        return named.get(key) if value in (None, "") else value

    parts = []
    if name == "hijack" and variant:
        if "hijack_beta=" in variant:
            beta = knob("hijack_beta")
            try:
                parts.append(f"β{float(beta):g}")
            except (TypeError, ValueError):
                parts.append(f"β{beta}")
        if "hijack_critic=" in variant:
            parts.append(str(knob("hijack_critic")))
        if "hijack_warmup_epochs=" in variant:
            parts.append(f"w{knob('hijack_warmup_epochs')}")
        rest = [p for p in variant.split() if not p.startswith(("hijack_beta=", "hijack_critic=", "hijack_warmup_epochs="))]
        parts += rest
    elif variant:
        parts.append(variant)
    if attack or not parts:
        parts.insert(0, name)
    return " ".join(parts)


def frontier_lines(frontier: list[dict]) -> tuple[list[str], list[str]]:
    """The attacker's frontier in sentences, the same in arena.md and the TUI: (per setting
    and detector, the working attack setting it detected least, with its rate and
    interval, ASR and CDA gap; whether a working setting evades every detector run, and
    which detectors had flagged its runs before the attack began). From
    engine.sweeps.verdicts.frontier_rows."""
    from engine.sweeps.verdicts import stealthiest

    found = stealthiest(frontier)
    per_detector = [
        f"{f['dataset']} c{f['cut']} K{f['clients']}, {f['detector']}: {fmt_attack_setting(f)}"
        f", detected {fmt_rate(f['detected'], f['malicious_runs'], f['detection_ci_low'], f['detection_ci_high'])}"
        f", ASR {f['asr']:.1f}%, CDA {f['cda_gap']:+.2f} points against clean"
        for f in found["per_detector"]]
    if not per_detector:
        return [], ["No attack setting works here."]
    evading = []
    for e in found["evades_all"]:
        early = "; ".join(f"{d} flagged {k} of its runs before the attack started (false accusations)"
                          for d, k in e["flagged_before"].items())
        evading.append(f"Never flagged while malicious by any detector run ({', '.join(e['detectors'])}): "
                       + fmt_attack_setting(e)
                       + " on {} {} c{} K{}".format(*e["setting"]) + " (0 detections in each; see the intervals)"
                       + (f". But {early}: a client that stops at a flag would have stopped before it." if early
                          else "."))
    if not evading:
        evading.append("No working setting evades every detector run.")
    return per_detector, evading


def printable(text: Any) -> str:
    """`text` safe to print on a terminal: control and invisible characters (escape
    sequences, carriage returns, bells, line breaks, right-to-left marks and overrides)
    shown as Python escapes (`\\x1b`, `\\u202e`), so a run's name or a file's id can never
    move the cursor, recolour the screen or reorder what follows it; other text unchanged."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def clip(text: str, width: int | None) -> str:
    """`text` cut to `width` characters, its last one an ellipsis where it was longer."""
    if width is None or len(text) <= width:
        return text
    return text[:max(0, width - 1)] + "…" if width > 0 else ""


def literal(value: Any, style: str = "", justify: Any = None, width: int | None = None,
            lines: bool = False) -> Any:
    """Any text that came from a run folder (a run's id, name, tags or note, a config value,
    an error message that quotes one) as a Rich `Text` that shows it exactly as it is: never
    parsed as markup, so `[/red]` or `[link=https://...]x[/link]` are characters and neither
    a style, a link nor a crash; control characters escaped (printable); cut to `width`
    characters with an ellipsis where given. `style` and `justify` are sltui's own, for the
    whole text. With `lines`, line breaks stay line breaks (a cell sltui wrapped itself,
    whose parts were made printable before). The one way every table, label, header and
    notice of the terminal UI and every line of the command line that holds such text
    draws it."""
    from rich.text import Text

    text = "" if value is None else str(value)
    if lines and "\n" in text:
        return Text("\n", style=style, justify=justify).join(
            literal(line, style, justify, width) for line in text.split("\n"))
    return Text(clip(printable(text), width), style=style, justify=justify)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(data: Any, indent: int | None = 1) -> str:
    """`data` as standard JSON, as sltui prints it: NaN and infinities (a metric that does
    not exist, such as a transfer run's validation accuracy) become null."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False)
