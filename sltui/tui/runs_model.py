"""Tables over run files: the browser's rows, sort and filter, the comparison, CSV export.

Pure Python (no Textual): the screens only render what these functions return.
"""
from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from engine.store import RunEntry
from engine.sweeps.aggregate import PER_RUN, aggregate
from engine.sweeps.agreement import cells
from engine.sweeps.grid import NOT_EXPERIMENT, experiment_fields

from .form_model import SPECS, visible
from ..format import DETECTOR_SHORT, clip, fmt_cell, fmt_mean_std, fmt_setting, mean_score, printable
from ..runs.query import parse_query
from ..runs.index import RunIndex, run_row, short_run_ids  # noqa: F401 - RunIndex: the screens' index
from ..reference import cell_verdicts, lookup
from ..tables import Column, fit_columns, fit_columns_wrapping, natural_widths


# The browser's columns in display order (sltui.tables.Column: key, header, priority, align).
# The id, status and setting (dataset, model, cut, K, attack: sltui.format.fmt_setting)
# always show; at narrow widths the rest go, least important first: the metrics stay
# longest, then the run's name (only where some run has one), the detectors' verdicts, the
# time, the seed, the tags (the status line shows the name, tags and note of the run under
# the cursor at any width).
BROWSER_COLUMNS: tuple[Column, ...] = (
    Column("id", "id"),
    Column("status", "status"),
    Column("setting", "setting"),
    Column("cda", "CDA", 1, "right"),
    Column("asr", "ASR", 1, "right"),
    Column("name", "name", 2),
    Column("detectors", "verdicts", 2),
    Column("seconds", "time", 3, "right"),
    Column("seed", "seed", 4, "right"),
    Column("tags", "tags", 5),
)
# What the browser sorts by (`s` cycles them in this order; a click on a header sorts by
# its column) and how the status line names each.
SORT_KEYS = {"id": "id", "status": "status", "dataset": "dataset", "model": "model", "cut": "cut",
             "clients": "K", "attack": "attack", "alpha": "alpha", "seed": "seed", "cda": "CDA", "asr": "ASR",
             "best_cda": "best CDA", "best_asr": "best ASR", "seconds": "time", "setting": "setting",
             "detectors": "detectors"}
# How the status line names the grouped view's sort keys (GROUP_SORT_KEYS) that SORT_KEYS lacks.
GROUP_SORT_LABELS = {"n": "n", "epochs": "epochs", "seeds": "seeds"}
# A DataTable cell has one space of padding each side, where a CLI table has a two-space gap.
CELL_PADDING = 2
# `<date>-<time>-<setting>-<4 hex>`, as engine.store.new_run_id writes them.
GENERATED_ID = re.compile(r"^\d{4}(\d{4})-(\d{6})-.+-([0-9a-f]{4})$")


def short_ids(ids: Iterable[str]) -> dict[str, str]:
    """A shorter label for each run id, for tables too narrow for whole ids. A generated id
    keeps what tells it apart, its month, day, time and random suffix (`1124-133627…8eac`):
    the setting in between has columns of its own. Any other id stays whole, and so does
    every id whose label another id would share: two runs never look the same."""
    ids = list(dict.fromkeys(ids))
    labels = {}
    for run_id in ids:
        m = GENERATED_ID.match(run_id)
        labels[run_id] = f"{m.group(1)}-{m.group(2)}…{m.group(3)}" if m else run_id
    counts = Counter(labels.values())
    return {run_id: label if counts[label] == 1 else run_id for run_id, label in labels.items()}


def table_columns(columns: Sequence[Column], cells: Sequence[Mapping[str, str]], width: int,
                  widths: Mapping[str, int] | None = None) -> list[Column]:
    """The columns of a Textual DataTable `width` cells wide to show (sltui.tables.fit_columns,
    with the DataTable's cell padding instead of the CLI's gap; `widths`: the cells' natural
    widths where already measured)."""
    return fit_columns(columns, cells, width - CELL_PADDING, widths=widths)


def table_columns_wrapping(columns: Sequence[Column], cells: Sequence[Mapping[str, str]], width: int,
                           wrap_key: str, min_width: int = 0) -> tuple[list[Column], list[dict[str, str]]]:
    """table_columns, with the `wrap_key` column's words wrapped onto several lines rather
    than pushing the other columns off a DataTable `width` cells wide (sltui.tables.fit_columns_wrapping)."""
    return fit_columns_wrapping(columns, cells, width - CELL_PADDING, wrap_key, min_width)


def browser_columns(best: bool = False) -> tuple[Column, ...]:
    """BROWSER_COLUMNS, with the metric columns headed `best CDA` / `best ASR` when the
    browser shows the best-validation epoch's metrics (best_metrics)."""
    if not best:
        return BROWSER_COLUMNS
    names = {"cda": "best CDA", "asr": "best ASR"}
    return tuple(Column(c.key, names[c.key], c.priority, c.align) if c.key in names else c for c in BROWSER_COLUMNS)


def best_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row whose `cda` and `asr` are those of the best-validation epoch: what the browser
    shows, sorts and filters by while its metrics toggle (m) is on best."""
    return {**row, "cda": row.get("best_cda"), "asr": row.get("best_asr")}


# Cells of free text (a run's name, its tags) are cut to this many characters with an
# ellipsis: one long name must not push every other column off the screen.
FREE_TEXT = ("name", "tags")
FREE_TEXT_WIDTH = 24


def browser_layout(rows: Sequence[Mapping[str, Any]], width: int, columns: Sequence[Column] = BROWSER_COLUMNS,
                   short: Mapping[str, str] | None = None) -> tuple[list[Column], list[dict[str, str]]]:
    """(columns, cells) of the browser for a table `width` cells wide: whole ids when every
    column fits with them, else each run's short id (`short`: sltui.runs.index.short_run_ids
    over every run of the folder, so that `sltui runs show` takes it; by default over
    `rows`) and columns left out by priority."""
    if not any(row.get("name") for row in rows):
        columns = [c for c in columns if c.key != "name"]
    cells = [{c.key: clip(printable(fmt_cell(c.key, row.get(c.key))), FREE_TEXT_WIDTH) if c.key in FREE_TEXT else
              fmt_cell(c.key, row.get(c.key)) for c in columns} for row in rows]
    widths = natural_widths(columns, cells)       # measured once: only the ids change below
    if len(table_columns(columns, cells, width, widths)) < len(columns) and any(c.key == "id" for c in columns):
        labels = dict(short) if short is not None else {}
        missing = [cell["id"] for cell in cells if cell["id"] not in labels]
        if missing:
            labels.update(short_run_ids(missing if short is not None else [cell["id"] for cell in cells]))
        cells = [{**cell, "id": labels[cell["id"]]} for cell in cells]
        widths["id"] = natural_widths([c for c in columns if c.key == "id"], cells)["id"]
    return table_columns(columns, cells, width, widths), cells


# The browser's columns with seeds grouped (g): one row per setting. The setting wraps onto
# more lines where the fields that tell the groups apart make it long.
GROUP_COLUMNS: tuple[Column, ...] = (
    Column("setting", "setting"),
    Column("n", "n", 0, "right"),
    Column("cda_pm", "CDA", 0, "right"),
    Column("asr_pm", "ASR", 0, "right"),
    Column("epochs", "epochs", 2, "right"),
    Column("seeds", "seeds", 3),
)
# The width a group's setting keeps before the epochs and seeds give way to it.
GROUP_SETTING_MIN = 36
# What the grouped view sorts by (`s` cycles them), and its order before any is chosen.
GROUP_SORT_KEYS = ("setting", "n", "cda", "asr", "epochs", "seeds")
# Fields a group's setting names anyway (fmt_setting), and the seed that groups leave out.
# (The epochs have a column, which narrow screens leave out: where they differ, the setting
# names them too.)
SETTING_NAMED = ("dataset", "model", "cut", "clients", "attack", "alpha", "trigger", "seed")


def group_differences(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The fields, in the form's order, whose values differ between the groups whose
    experiment fields (engine.sweeps.grid.experiment_fields, which leave out the options
    of attacks, triggers and detectors a run does not use) are `configs`, among the groups
    that use them; leaving out those the setting names anyway (SETTING_NAMED)."""
    order = {spec.name: i for i, spec in enumerate(SPECS)}
    names = sorted({k for c in configs for k in c if k not in SETTING_NAMED}, key=lambda k: (order.get(k, len(order)), k))
    return [n for n in names if len({repr(c[n]) for c in configs if n in c}) > 1]


def group_rows(docs: Iterable[Mapping[str, Any]], best: bool = False) -> list[dict[str, Any]]:
    """One row per setting of the completed runs among `docs` (run files or their index
    summaries, with their effective status): engine.sweeps.aggregate's groups, the numbers
    `sltui runs aggregate` prints. `id` is the group's key, `runs` its run ids, `cda`/`asr`
    the means (final, or best-validation with `best`) and `cda_pm`/`asr_pm` mean ± std.
    `setting` names the setting (fmt_setting) and then every other field whose value
    differs between these groups (group_differences: `hijack_beta=0.25 on_flag=stop`), so no
    two rows read alike."""
    docs = list(docs)
    which = "best_" if best else ""
    configs = {d.get("id"): d.get("config") for d in docs if isinstance(d.get("config"), dict)}
    groups = aggregate(docs)
    fields_of = [experiment_fields(configs.get(g["runs"][0]) or {}) for g in groups]
    differ = group_differences(fields_of)
    rows = []
    for group, fields_ in zip(groups, fields_of):
        attack = group.get("attack")
        setting = {**group, "alpha": group.get("alpha") if attack == "surrogate" else None,
                   "trigger": group.get("trigger", "patch") if attack not in (None, "none") else None}
        label = " ".join([fmt_setting(setting), *(_label_part(f, fields_[f]) for f in differ if f in fields_)])
        spread = group["n"] > 1
        rows.append({
            "id": group["group"], "status": "group", "setting": label, "n": group["n"],
            "epochs": group.get("epochs"), "seeds": ",".join(map(str, group["seeds"])), "runs": list(group["runs"]),
            "cda": group[f"{which}cda_mean"], "asr": group[f"{which}asr_mean"],
            "cda_pm": fmt_mean_std(group[f"{which}cda_mean"], group[f"{which}cda_std"] if spread else None),
            "asr_pm": fmt_mean_std(group[f"{which}asr_mean"], group[f"{which}asr_std"] if spread else None),
        })
    return rows


def group_layout(rows: Sequence[Mapping[str, Any]], width: int) -> tuple[list[Column], list[dict[str, str]]]:
    """(columns, cells) of the grouped view for a table `width` cells wide: the setting
    wrapped at spaces where whole settings would push n, CDA and ASR off the screen."""
    cells = [{c.key: printable(fmt_cell(c.key, row.get(c.key))) for c in GROUP_COLUMNS} for row in rows]
    return table_columns_wrapping(GROUP_COLUMNS, cells, width, "setting", GROUP_SETTING_MIN)


def browser_row(entry: RunEntry) -> dict[str, Any]:
    """A browser row: the run's row (sltui.runs.index.run_row: summary, setting in words,
    detectors' verdicts, tags, note)."""
    return run_row(entry)


def matches(row: Mapping[str, Any], query: str) -> bool:
    """Whether a browser row matches the filter `query` (sltui.runs.query); a malformed query
    raises sltui.runs.query.QueryError."""
    return parse_query(query).matches(row)


def sort_key(key: str):
    """None and unreadable values last; numbers by value, text case-insensitively."""
    def k(row: Mapping[str, Any]):
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (1, 0, "")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, value, "")
        return (0, 0, str(value).lower())
    return k


def sort_rows(rows: Iterable[dict[str, Any]], key: str, reverse: bool = False) -> list[dict[str, Any]]:
    rows = list(rows)
    present = [r for r in rows if sort_key(key)(r)[0] == 0]
    missing = [r for r in rows if sort_key(key)(r)[0] == 1]
    return sorted(present, key=sort_key(key), reverse=reverse) + missing


# ---- compare ------------------------------------------------------------------
METRIC_COLUMNS = ("final_cda", "final_asr", "best_cda", "best_asr")
PAPER_COLUMNS = ("paper_cda", "paper_asr")
COLUMN_LABELS = {
    "final_cda": "CDA", "final_asr": "ASR", "best_cda": "best CDA", "best_asr": "best ASR",
    "paper_cda": "paper CDA", "paper_asr": "paper ASR", "clients": "K",
}
PAPER_MARK = "*"


def differing_fields(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Config fields whose values are not all the same, in field order."""
    if len(configs) < 2:
        return []
    names: list[str] = []
    for cfg in configs:
        names.extend(k for k in cfg if k not in names)
    return [n for n in names if len({repr(c.get(n)) for c in configs}) > 1]


def _metric(doc: Mapping[str, Any], which: str, name: str) -> Any:
    part = doc.get(which) or {}
    if not part and which == "final" and doc.get("epochs"):
        part = doc["epochs"][-1]
    return part.get(name)


def compare_rows(docs: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows): id, status, the differing config fields, final/best metrics, paper values."""
    configs = [d.get("config") or {} for d in docs]
    diff = differing_fields(configs)
    columns = ["id", "status", *diff, *METRIC_COLUMNS, *PAPER_COLUMNS]
    rows = []
    for doc, cfg in zip(docs, configs):
        ref = lookup(cfg)
        row: dict[str, Any] = {"id": doc.get("id"), "status": doc.get("status")}
        row.update({k: cfg.get(k) for k in diff})
        row.update(final_cda=_metric(doc, "final", "cda"), final_asr=_metric(doc, "final", "asr"),
                   best_cda=_metric(doc, "best", "cda"), best_asr=_metric(doc, "best", "asr"),
                   paper_cda=ref.cda if ref else None, paper_asr=ref.asr if ref else None,
                   run_epochs=cfg.get("epochs"), paper_epochs=ref.epochs if ref else None)
        rows.append(row)
    return columns, rows


def paper_differs(row: Mapping[str, Any]) -> bool:
    """Whether a compare row has paper values from a run of another length than its own
    (the paper trained 90 epochs, 140 on CIFAR-10): then they are not like for like."""
    return row.get("paper_epochs") is not None and row.get("run_epochs") != row.get("paper_epochs")


def paper_footnote(rows: Sequence[Mapping[str, Any]]) -> str:
    """The line that explains PAPER_MARK, '' where no row is marked."""
    pairs = dict.fromkeys((r.get("paper_epochs"), r.get("run_epochs")) for r in rows if paper_differs(r))
    if not pairs:
        return ""
    parts = [f"{paper} epochs, the run {run}" for paper, run in pairs]
    return f"{PAPER_MARK} not like for like: the paper trained " + "; ".join(parts)


# Short names in run and group labels, so a legend line fits a chart at 80 columns and a
# group's setting a few lines of the browser.
LABEL_NAMES = {"clients": "K", "alpha": "α", "defenses": "det", "hijack_beta": "β", "hijack_critic": "critic",
               "hijack_warmup_epochs": "warmup", "hijack_shadow_epochs": "shadow", "train_limit": "train",
               "eval_limit": "eval"}
# Fields whose empty value means every image.
ALL_WHEN_EMPTY = ("train_limit", "eval_limit")


def _label_part(name: str, value: Any) -> str:
    if name == "defenses" and isinstance(value, (list, tuple)):
        value = [DETECTOR_SHORT.get(str(d), d) for d in value]
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    if value is None or text == "":
        text = "all" if name in ALL_WHEN_EMPTY else "-"
    return text if name == "attack" else f"{LABEL_NAMES.get(name, name)}={text}"


def run_labels(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """A label per run that says how it differs from the others: its values of the config
    fields that differ between them (`cut=1 seed=2`; the attack by its name, K for clients,
    α for alpha), leaving out fields its attack does not use and where it ran (device,
    data root: engine.sweeps.grid.NOT_EXPERIMENT but the name). Runs that share every such
    value get their short id after it, so no two labels are the same."""
    configs = [d.get("config") or {} for d in docs]
    # Where a run ran (device, data root, ...) is no part of what it is; its name is.
    diff = [f for f in differing_fields(configs) if f not in NOT_EXPERIMENT or f == "name"]
    labels = [" ".join(_label_part(k, cfg.get(k)) for k in diff
                       if visible(k, str(cfg.get("attack")), str(cfg.get("trigger", "patch")), cfg.get("defenses")))
              for cfg in configs]
    ids = [str(d.get("id", "?")) for d in docs]
    short = short_ids(ids)
    counts = Counter(labels)
    labels = [label if label and counts[label] == 1 else f"{label} {short[run_id]}".strip()
              for label, run_id in zip(labels, ids)]
    counts = Counter(labels)   # the same id selected twice, or two short ids alike: whole ids
    return [label if counts[label] == 1 else f"{label} {run_id}".strip() for label, run_id in zip(labels, ids)]


def seed_summary(docs: Sequence[Mapping[str, Any]], best: bool = False) -> list[str]:
    """One line per setting that several of the completed `docs` share apart from the seed:
    mean ± sample std of their final CDA and ASR, or with `best` those of the
    best-validation epoch (engine.sweeps.aggregate)."""
    rows = [r for r in aggregate(docs) if r["n"] > 1]
    if not rows:
        return []
    diff = [f for f in differing_fields([d.get("config") or {} for d in docs]) if f not in PER_RUN]
    which, what = ("best_", "best-val ") if best else ("", "")

    def pm(row: Mapping[str, Any], name: str) -> str:
        return fmt_mean_std(row[f"{which}{name}_mean"], row[f"{which}{name}_std"])
    def shown(row: Mapping[str, Any]) -> list[str]:   # only the fields the row's attack uses
        return [f for f in diff if visible(f, str(row.get("attack")), str(row.get("trigger") or "patch"), row.get("defenses"))]
    return [f"{', '.join(f'{f} {fmt_cell(f, r.get(f))}' for f in shown(r)) or 'same setting'} over seeds "
            f"{', '.join(map(str, r['seeds']))}: {what}CDA {pm(r, 'cda')}  {what}ASR {pm(r, 'asr')}" for r in rows]


def agreement_lines(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per setting in view that the authors published: does it agree with their
    number, by the reproduction's rule (docs/protocol.md section 13, last-epoch values)? The
    same verdict as docs/reproduction.md and `sltui report` (sltui.reference.cell_verdicts)."""
    lines = []
    for cell in cells(docs):
        cda, asr = cell_verdicts(cell)
        if cda.authors is None:
            continue
        setting = {**cell.config, "alpha": cell.config.get("alpha") if cell.config.get("attack") == "surrogate" else None}
        verdict = (f"CDA {cda.verdict}, ASR {asr.verdict}" if cda.verdict != "-" else
                   "no verdict, not like for like (fewer epochs or part of the data)")
        lines.append(f"{fmt_setting(setting)} (n {cell.n}) against the authors' "
                     f"CDA {cda.authors:.2f} ASR {asr.authors:.2f}: {verdict}")
    return lines


def series(doc: Mapping[str, Any], metric: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one per-epoch metric, skipping missing or NaN values."""
    xs, ys = [], []
    for e in doc.get("epochs") or []:
        value = e.get(metric)
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            xs.append(e.get("epoch", len(xs) + 1))
            ys.append(float(value))
    return xs, ys


def defense_series(doc: Mapping[str, Any], name: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of detector `name`'s score, the mean over the clients that had
    one, skipping epochs where none had."""
    entry = (doc.get("defenses") or {}).get(name) or {}
    xs, ys = [], []
    for epoch, scores in enumerate(entry.get("scores") or [], start=1):
        value = mean_score(scores)
        if value is not None:
            xs.append(epoch)
            ys.append(value)
    return xs, ys


def write_csv(path: str | os.PathLike[str], columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path
