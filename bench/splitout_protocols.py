"""SplitOut's two protocols side by side: where the published ~0 false positives come from
and what a deployed client sees (docs/detectors.md, "SplitOut's two protocols").

A deployed client fits its LOF once, before training (`--splitout-fit once`, the paper's
client); the authors' notebook (ege-erdogan/splitout, sg_ad.ipynb) refits it in every epoch
on the first 1% of that epoch's honest gradients and counts false positives per epoch
(`--splitout-fit per-epoch`). Four steps, each repeatable:

    python bench/splitout_protocols.py rerun [--data-root DIR]
        each committed held-out honest run that watched with SplitOut
        (examples/false-accusations, seed 201) again, one at a time, with SplitOut alone and
        traced, so that its decisions under both fits are recorded on the same gradients
        (into examples/splitout-protocols/; resumable). SplitOut only watches: the rerun
        trains as the stored run did, and `measure` checks that its fit-once decisions are
        the stored trace's.

    python bench/splitout_protocols.py authors --code DIR --data-root DIR --out FILE
        honest training in the authors' setting: their network and optimiser, imported from
        DIR (a checkout of ege-erdogan/splitout; run from there, never copied here), MNIST
        as their loader gives it ([0, 1] pixels, batch 64). The first-layer weight
        gradient of every step is judged by scikit-learn's LOF (n_neighbors = n - 1,
        novelty) fitted once on the first 1% of epoch 1's gradients, and refitted on the
        first 1% of each epoch's, every epoch counted with the notebook's windows.

    python bench/splitout_protocols.py measure [--authors FILE ...]
        false accusations per run and per epoch under both fits, from the traces of the
        committed runs and reruns and from the authors'-setting results, with 95% Wilson
        intervals: examples/splitout-protocols/protocols.json.

    python bench/splitout_protocols.py table examples/splitout-protocols/protocols.json docs/detectors.md
        the page's `splitout-protocols` table from that file (bench/doc_tables.py's markers).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HELD_OUT = ROOT / "examples" / "false-accusations"
OUT = ROOT / "examples" / "splitout-protocols"
FITS = ("once", "per-epoch")
# The notebook's reduced data rate and window (sg_ad.ipynb): LOF examples are the first 1%
# of an epoch's gradients, windows of 10 gradients.
SHARE, WINDOW = 0.01, 10
# The authors' networks for MNIST in their models.py.
NETWORKS = {"resnet": "ResNetMNIST", "mnistnet": "MnistNet"}


# ---- rerun ---------------------------------------------------------------------------

def held_out_runs(folder: Path) -> list[dict[str, Any]]:
    """The completed honest runs under `folder` whose detectors include SplitOut, oldest first."""
    from engine.store import RunStore

    docs = [e.doc for e in RunStore(folder).entries() if e.doc is not None and e.status == "completed"]
    return sorted((d for d in docs if (d.get("config") or {}).get("attack") == "none"
                   and "splitout" in ((d.get("config") or {}).get("defenses") or [])), key=lambda d: d["id"])


def rerun(args: argparse.Namespace) -> int:
    from engine.config import stored_config
    from engine.store import RunStore
    from engine.training.runner import run

    store = RunStore(args.out)
    done = {str((e.doc or {}).get("config", {}).get("name")) for e in store.entries() if e.status == "completed"}
    only = set(args.only.split(",")) if args.only else None
    for doc in held_out_runs(args.runs):
        if doc["id"] in done or (only and doc["id"] not in only):
            continue
        cfg = stored_config(doc["config"]).replace(
            defenses=("splitout",), defense_trace=True, save_weights=False, name=doc["id"], device=args.device,
            **({"data_root": str(args.data_root)} if args.data_root else {}))
        print(f"rerun of {doc['id']}", flush=True)
        run(cfg, emit=store.recorder())
    return 0


# ---- the authors' setting -------------------------------------------------------------

def notebook_flags(decisions: list[int], window: int = WINDOW) -> int | None:
    """The notebook's per-epoch verdict on one epoch's decisions (1 = outlier): the first i
    in range(window, len - (window - 1)) whose window [i - window, i) holds more outliers
    than inliers, or None."""
    for i in range(window, len(decisions) - (window - 1)):
        part = decisions[i - window:i]
        if sum(part) > window - sum(part):
            return i
    return None


def authors(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from sklearn.neighbors import LocalOutlierFactor

    from engine.data.datasets import load_idx_dataset

    sys.path.insert(0, str(args.code))
    import models as theirs  # noqa: E402  (their models.py and util.py, from the checkout)
    import util as their_util  # noqa: E402

    device = torch.device(args.device)
    raw = load_idx_dataset(Path(args.data_root), "MNIST", download=False)
    images = (raw.train_x.float() / 255).to(device)  # torchvision's ToTensor, as their loader
    labels = raw.train_y.to(device)
    batch = 64
    steps = math.ceil(len(labels) / batch)
    examples = int(steps * SHARE)  # the notebook's CUT_GRAD
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        torch.manual_seed(seed)
        model = (theirs.ResNetMNIST() if args.model == "resnet" else theirs.MnistNet()).to(device)
        client_opt, server_opt = their_util.get_optims("adam", model, model)
        criterion = torch.nn.CrossEntropyLoss()
        order = torch.Generator().manual_seed(seed)
        once_lof = None
        per_run: dict[str, list[Any]] = {f: [] for f in FITS}
        shares: dict[str, list[float]] = {f: [] for f in FITS}
        for epoch in range(1, args.epochs + 1):
            grads = []
            for idx in torch.randperm(len(labels), generator=order).to(device).split(batch):
                client_opt.zero_grad()
                server_opt.zero_grad()
                loss = criterion(model(images[idx]), labels[idx])
                loss.backward()
                grads.append(list(model.parameters())[0].grad.detach().flatten().double().cpu())
                client_opt.step()
                server_opt.step()
            rows = torch.stack(grads).numpy()
            if once_lof is None:  # the deployed client's examples: the first 1% of honest training
                once_lof = LocalOutlierFactor(n_neighbors=examples - 1, novelty=True).fit(rows[:examples])
            refit = LocalOutlierFactor(n_neighbors=examples - 1, novelty=True).fit(rows[:examples])
            for fit, lof in (("once", once_lof), ("per-epoch", refit)):
                decisions = [int(p == -1) for p in lof.predict(rows)]
                per_run[fit].append(notebook_flags(decisions))
                shares[fit].append(sum(decisions) / len(decisions))
            print(f"seed {seed} epoch {epoch}: flagged at step once {per_run['once'][-1]}, "
                  f"per-epoch {per_run['per-epoch'][-1]}", flush=True)
            # Written after every epoch, so that a run cut short keeps the epochs it finished.
            row = {"setting": f"the authors' {NETWORKS[args.model]} on MNIST, batch 64", "model": args.model, "seed": seed, "epochs": epoch,
                   "steps_per_epoch": steps, "examples": examples, "window": WINDOW,
                   "first_flag_step": per_run, "outlier_share": shares,
                   "flagged_epochs": {f: [e + 1 for e, s in enumerate(per_run[f]) if s is not None] for f in FITS}}
            write_json(args.out, {"kind": "authors-setting", "device": args.device, "runs": [*results, row]})
        results.append(row)
    print(args.out)
    return 0


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


# ---- measure --------------------------------------------------------------------------

def setting_of(config: dict[str, Any]) -> str:
    name = "MNIST" if config.get("dataset") == "mnist" else str(config.get("dataset")).upper()
    return f"{name} cut {config.get('cut')} K={config.get('clients')}"


def traced_fits(doc: dict[str, Any]) -> list[str]:
    """The fits whose decisions the run's SplitOut trace holds (raw features)."""
    from engine.sweeps.calibration import streams
    from engine.defenses.splitout import trace_key

    epochs = [e for stream in streams(doc, "splitout") for e in stream]
    return [f for f in FITS if epochs and all(trace_key("raw", f) in e for e in epochs)]


def first_window_in_epoch1(doc: dict[str, Any], fit: str) -> int | None:
    """The gradient of epoch 1 (any honest client, counted from 1) at which a window of the
    run's size first holds more outliers than inliers (raw features), or None."""
    from engine.sweeps.calibration import streams
    from engine.defenses.splitout import trace_key

    window = int(doc["config"].get("splitout_window") or WINDOW)
    found = []
    for stream in streams(doc, "splitout"):
        bits = [c == "1" for c in str(stream[0].get(trace_key("raw", fit)) or "")] if stream else []
        found += [i for i in range(window, len(bits) + 1) if 2 * sum(bits[i - window:i]) > window][:1]
    return min(found) if found else None


def run_rows(docs: Iterable[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """One row per run and traced fit: the epochs it trained, the epochs flagged (raw
    features, window 10, as the run's config), judged from the trace as live, and where in
    epoch 1 the first flagging window ends."""
    from engine.sweeps.calibration import flag_epochs

    rows = []
    for doc in docs:
        for fit in traced_fits(doc):
            rows.append({"source": source, "run": doc["id"], "of": (doc.get("config") or {}).get("name") or doc["id"],
                         "setting": setting_of(doc.get("config") or {}), "seed": doc["config"].get("seed"),
                         "fit": fit, "epochs": len(doc.get("epochs") or []),
                         "flagged_epochs": flag_epochs(doc, "splitout", {"splitout_fit": fit}),
                         "first_flag_step_epoch1": first_window_in_epoch1(doc, fit)})
    return rows


def authors_rows(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text())
    return [{"source": f"authors' setting ({doc.get('device')})", "run": f"{r['model']}-seed{r['seed']}",
             "of": f"{r['model']}-seed{r['seed']}", "setting": f"the authors' {NETWORKS[r['model']]} on MNIST, batch 64",
             "seed": r["seed"], "fit": fit,
             "epochs": r["epochs"], "flagged_epochs": r["flagged_epochs"][fit],
             "first_flag_step_epoch1": r["first_flag_step"][fit][0]}
            for r in doc["runs"] for fit in FITS]


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs flagged (any epoch) and epochs flagged, k/n with the 95% Wilson interval; epoch 1
    and the later epochs apart."""
    from engine.sweeps.verdicts import wilson

    def rate(k: int, n: int) -> dict[str, Any]:
        low, high = wilson(k, n)
        return {"k": k, "n": n, "low": low, "high": high}

    flagged = [r for r in rows if r["flagged_epochs"]]
    epochs = sum(r["epochs"] for r in rows)
    return {"runs": rate(len(flagged), len(rows)),
            "epochs": rate(sum(len(r["flagged_epochs"]) for r in rows), epochs),
            "epoch1": rate(sum(1 for r in rows if 1 in r["flagged_epochs"]), len(rows)),
            "later_epochs": rate(sum(len([e for e in r["flagged_epochs"] if e > 1]) for r in rows), epochs - len(rows)),
            "first_flag_epochs": sorted(r["flagged_epochs"][0] for r in flagged),
            "epoch1_first_flag_steps": sorted(r["first_flag_step_epoch1"] for r in rows
                                              if r.get("first_flag_step_epoch1") is not None)}


def same_trace(rerun_doc: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Whether the rerun's fit-once decisions (both features) are the stored run's, every
    client, every epoch."""
    from engine.sweeps.calibration import streams

    a, b = streams(rerun_doc, "splitout"), streams(stored, "splitout")
    return len(a) == len(b) and all(
        len(x) == len(y) and all(e.get(k) == f.get(k) for e, f in zip(x, y) for k in ("raw", "direction"))
        for x, y in zip(a, b))


def measure(args: argparse.Namespace) -> int:
    from engine.store import RunStore

    held = held_out_runs(args.runs)
    reruns = [e.doc for e in RunStore(args.reruns).entries() if e.doc is not None and e.status == "completed"] \
        if args.reruns.is_dir() else []
    by_id = {d["id"]: d for d in held}
    rows = run_rows(held, "held-out, stored trace") + run_rows(reruns, "held-out, rerun")
    for path in args.authors:
        rows += authors_rows(path)
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        for key in (row["source"], f"{row['source']} | {row['setting']}"):
            groups.setdefault(key, {}).setdefault(row["fit"], []).append(row)
    out = {"window": WINDOW, "share": SHARE, "rows": rows,
           "reruns_match_stored": {d["config"]["name"]: same_trace(d, by_id[d["config"]["name"]])
                                   for d in reruns if d["config"].get("name") in by_id},
           "summaries": {key: {fit: summary(members) for fit, members in fits.items()} for key, fits in groups.items()}}
    write_json(args.out, out)
    for key, fits in out["summaries"].items():
        print(key, {fit: (f"runs {s['runs']['k']}/{s['runs']['n']}", f"epochs {s['epochs']['k']}/{s['epochs']['n']}")
                    for fit, s in fits.items()})
    print("reruns whose fit-once decisions equal the stored trace:", out["reruns_match_stored"])
    print(args.out)
    return 0


# ---- table ----------------------------------------------------------------------------

def _rate(r: dict[str, Any]) -> str:
    from sltui.format import fmt_rate

    return fmt_rate(r["k"], r["n"], r["low"], r["high"])


def table(results: dict[str, Any]) -> str:
    """For the held-out reruns (all, then each setting) and the authors' setting, for each
    fit: runs flagged (and in which epoch first) and epochs flagged, k/n with intervals."""
    def runs_cell(s: dict[str, Any]) -> str:
        firsts = sorted(set(s["first_flag_epochs"]))
        where = (", all first in epoch 1" if firsts == [1] and s["runs"]["n"] > 1 else
                 ", in epoch 1" if firsts == [1] else f", first in epochs {firsts}" if firsts else "")
        return _rate(s["runs"]) + where

    def order(key: str) -> tuple:
        source, _, setting = key.partition(" | ")
        name, cut, clients = (setting.split(" cut ")[0], *setting.split(" cut ")[1].split(" K=")) \
            if " cut " in setting else (setting, "", "")
        return (not source.startswith("held-out"), bool(setting), clients, name != "MNIST", cut)

    rows = results["rows"]
    lines = ["| honest runs | fitted once: runs flagged | fitted once: epochs flagged "
             "| refitted per epoch: runs flagged | refitted per epoch: epochs flagged |", "|---|---|---|---|---|"]
    for key in sorted(results["summaries"], key=order):
        fits = results["summaries"][key]
        source, _, setting = key.partition(" | ")
        if source.startswith("held-out, stored trace") or not all(f in fits for f in FITS):
            continue
        members = [r for r in rows if r["source"] == source and (not setting or r["setting"] == setting)]
        if source.startswith("held-out"):
            label = setting or f"held-out honest runs, all {len({r['setting'] for r in members})} settings"
        elif not setting:
            continue  # the authors' setting has one row of its own
        else:
            seeds, epochs = sorted({r["seed"] for r in members}), sorted({r["epochs"] for r in members})
            label = (f"{setting} ({source.split('(')[-1].rstrip(')')}; seeds {', '.join(map(str, seeds))}, "
                     f"{'-'.join(map(str, dict.fromkeys([epochs[0], epochs[-1]])))} epochs)")
        lines.append(f"| {label} | " + " | ".join(f"{runs_cell(fits[f])} | {_rate(fits[f]['epochs'])}" for f in FITS)
                     + " |")
    return "\n".join(lines)


def write_table(args: argparse.Namespace) -> int:
    from bench.doc_tables import fill

    results = json.loads(args.results.read_text())
    page = args.page.read_text(encoding="utf-8")
    args.page.write_text(fill(page, "splitout-protocols", table(results), args.results.as_posix()), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("rerun", help="the held-out honest runs again with SplitOut traced under both fits")
    r.add_argument("--runs", type=Path, default=HELD_OUT)
    r.add_argument("--out", type=Path, default=OUT)
    r.add_argument("--data-root", type=Path, default=None, help="where the datasets are (default: the stored runs')")
    r.add_argument("--device", default="cpu")
    r.add_argument("--only", default="", help="comma-separated ids of stored runs (default: all)")
    a = sub.add_parser("authors", help="honest training in the authors' setting, both fits")
    a.add_argument("--code", type=Path, required=True, help="a checkout of ege-erdogan/splitout (models.py, util.py)")
    a.add_argument("--data-root", type=Path, required=True)
    a.add_argument("--model", choices=("resnet", "mnistnet"), default="resnet")
    a.add_argument("--seeds", default="1,2,3")
    a.add_argument("--epochs", type=int, default=10)
    a.add_argument("--device", default="cpu")
    a.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("measure", help="false accusations per run and per epoch under both fits")
    m.add_argument("--runs", type=Path, default=HELD_OUT)
    m.add_argument("--reruns", type=Path, default=OUT)
    m.add_argument("--authors", type=Path, nargs="*", default=[])
    m.add_argument("--out", type=Path, default=OUT / "protocols.json")
    t = sub.add_parser("table", help="rewrite the page's splitout-protocols table from a results file")
    t.add_argument("results", type=Path)
    t.add_argument("page", type=Path)
    args = p.parse_args(argv)
    return {"rerun": rerun, "authors": authors, "measure": measure, "table": write_table}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
