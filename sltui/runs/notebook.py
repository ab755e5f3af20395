"""Runs as pandas DataFrames, for notebooks and scripts:

    import sltui
    runs = sltui.load_runs("runs")                  # one row per run
    epochs = sltui.load_epochs("runs", filter="attack=hijack cut>=2")   # one row per run x epoch

Both read through the run index (sltui.runs.index), take the browser's filter language
(sltui.runs.query) and import neither Textual nor torch (pandas only when called).
"""
from __future__ import annotations

import os
from typing import Any

from engine.store import RunNotFound, RunUnreadable

from ..format import detector_verdicts
from .query import parse_query
from .index import RunIndex, run_row

# load_runs' columns, in order (detector columns follow: verdict_<name>, flag_epoch_<name>).
RUN_COLUMNS = ("id", "status", "created", "dataset", "model", "cut", "clients", "attack", "alpha", "trigger",
               "seed", "setting", "epochs", "final_cda", "final_asr", "best_cda", "best_asr", "seconds",
               "detectors", "tags", "note")
# The setting columns every row of load_epochs repeats.
SETTING_COLUMNS = ("dataset", "model", "cut", "clients", "attack", "alpha", "trigger", "seed")


def _rows(runs_dir: str | os.PathLike[str], filter: str) -> list[tuple[Any, dict[str, Any]]]:
    query = parse_query(filter)
    index = RunIndex(runs_dir)
    try:
        pairs = [(e, run_row(e)) for e in index.scan() if e.doc is not None]
    finally:
        index.close()
    return [(e, r) for e, r in pairs if query.matches(r)]


def load_runs(runs_dir: str | os.PathLike[str] = "runs", filter: str = ""):
    """A DataFrame with one row per readable run under `runs_dir` matching `filter`:
    RUN_COLUMNS (final and best CDA/ASR in percent, the setting, tags as a list), then per
    detector any run used, `verdict_<name>` and `flag_epoch_<name>`."""
    import pandas as pd

    records = []
    detectors: list[str] = []
    for entry, row in _rows(runs_dir, filter):
        record = {k: row.get(k) for k in RUN_COLUMNS if k not in ("final_cda", "final_asr")}
        record.update(final_cda=row.get("cda"), final_asr=row.get("asr"))
        for name, (word, epoch) in detector_verdicts(entry.doc).items():
            if name not in detectors:
                detectors.append(name)
            record[f"verdict_{name}"], record[f"flag_epoch_{name}"] = word, epoch
        records.append(record)
    columns = [*RUN_COLUMNS, *(f"{kind}_{name}" for name in detectors for kind in ("verdict", "flag_epoch"))]
    return pd.DataFrame.from_records(records, columns=columns)


def load_epochs(runs_dir: str | os.PathLike[str] = "runs", filter: str = ""):
    """A DataFrame with one row per epoch of each readable run matching `filter`: the run's
    id, status and SETTING_COLUMNS, then that epoch's metrics as the run file has them
    (epoch, train_loss, val_loss, val_acc, cda, asr, lr, seconds, ...). Reads the run files
    themselves (the index has no epochs)."""
    import pandas as pd

    from engine.store import RunStore

    records = []
    for entry, row in _rows(runs_dir, filter):
        try:
            doc = RunStore(runs_dir).load(entry.run_id)
        except (RunNotFound, RunUnreadable):
            continue      # removed or spoilt since it was indexed
        head = {"id": entry.run_id, "status": row.get("status"), **{k: row.get(k) for k in SETTING_COLUMNS}}
        records.extend({**head, **epoch} for epoch in doc.get("epochs") or [])
    return pd.DataFrame.from_records(records)
