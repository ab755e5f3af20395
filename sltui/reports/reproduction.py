"""The reproduction's report (docs/protocol.md section 13): cells.csv, the paper-layout
figures and docs/reproduction.md, from the run files alone, byte for byte the same when
written again from the same files. The verdicts are engine/sweeps/agreement.py's; the
authors' numbers sltui/reference.py's."""
from __future__ import annotations

import csv
import io
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from engine.sweeps.agreement import (AGREES, NO_AUTHORS, REASONS, Cell, Claim, Verdict, cells,
                                     claim_autoencoder, claim_cda_near_ba, claim_clients, claim_cut, claim_emnist,
                                     claim_fewer_classes, claim_fewer_samples, claim_fmnist_harder, claim_small_alpha,
                                     claim_transfer, client_trends, reason, run_device, Trend)
from engine.sweeps.grid import experiment_key
from engine.sweeps.reproduction import PARTS

from ..reference import TABLE3, cell_verdicts, lookup

CELL_COLUMNS = ("figure", "dataset", "model", "clients", "cut", "attack", "alpha", "side", "n", "seeds",
                "cda_mean", "cda_std", "cda_values", "asr_mean", "asr_std", "asr_min", "asr_max", "asr_values",
                "ba_mean", "cda_minus_ba", "authors_cda", "authors_asr", "cda_verdict", "asr_verdict", "devices",
                "note")
# Figures in the order the report shows them: (key, title).
FIGURES = (("3", "Figure 3: the surrogate attack on MNIST"), ("4", "Figure 4: the surrogate attack on FMNIST"),
           ("6", "Figure 6: the autoencoder attack"), ("7", "Figure 7: baseline accuracy (BA), no attack"),
           ("D", "Appendix D: fewer samples, fewer classes"), ("side", "Side cells: the authors' code against the paper's text"))


@dataclass(frozen=True)
class Row:
    cell: Cell
    figure: str
    side: str
    cda: Verdict
    asr: Verdict
    ba: float | None
    note: str
    reasons: tuple[str, ...] = ()   # the kind of each difference (REASONS), CDA's then ASR's


def side_of(config: Mapping[str, Any]) -> str:
    """How a cell departs from the paper's text towards the authors' code ('' for none)."""
    parts = []
    if config.get("loss_halved"):
        parts.append("halved loss")
    if config.get("attack") == "autoencoder":
        if config.get("ae_variant", "paper") != "paper":
            parts.append(f"ae-variant {config.get('ae_variant')}")
        if config.get("ae_share") != 0.5:
            parts.append(f"share {config.get('ae_share'):g}")
        if config.get("patience") == 0:
            parts.append(f"{config.get('epochs')} epochs, no early stopping")
    return ", ".join(parts)


def figure_of(config: Mapping[str, Any]) -> str:
    if side_of(config):
        return "side"
    attack, dataset = config.get("attack"), config.get("dataset")
    if attack == "none":
        return "7"
    if attack == "autoencoder":
        return "6"
    if dataset in ("mnist-10k", "fmnist-5", "emnist-letters-aj"):
        return "D"
    return "3" if dataset == "mnist" else "4"


def _same_setting(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("dataset", "model", "cut", "clients", "attack", "alpha")
    return all(a.get(k) == b.get(k) for k in keys if not (k == "alpha" and a.get("attack") != "surrogate"))


def build_rows(docs: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Every cell with its verdicts, BA and reason, in the report's order."""
    all_cells = [c for c in cells(docs) if c.config.get("model") == "lenet"]
    ba_cells = [c for c in all_cells if c.config.get("attack") == "none" and not side_of(c.config)]

    def ba(cell: Cell) -> float | None:
        same = [b for b in ba_cells if b.config.get("dataset") == cell.config.get("dataset")
                and b.config.get("cut") == cell.config.get("cut") and b.config.get("clients") == cell.config.get("clients")]
        return same[0].mean("cda") if same else None

    verdicts = {c.key: cell_verdicts(c) for c in all_cells}
    rows = []
    for cell in all_cells:
        cda, asr = verdicts[cell.key]
        notes, reasons = [], []
        for verdict in (cda, asr):
            twin_agrees = [side_of(s.config) for s in all_cells if side_of(s.config) and not side_of(cell.config)
                           and _same_setting(s.config, cell.config)
                           and verdicts[s.key][0 if verdict.metric == "cda" else 1].verdict == AGREES]
            protocol = (f"the side cell with the authors' code's {twin_agrees[0]} agrees" if twin_agrees else None)
            text = reason(cell, verdict, protocol)
            if text:
                notes.append(f"{verdict.metric.upper()} {text}")
                reasons.append(text.split(":", 1)[0])
        same = identical_at_other_cut(cell, all_cells)
        if same is not None:
            notes.append(f"the same numbers, seed by seed, as cut {same}")
        rows.append(Row(cell, figure_of(cell.config), side_of(cell.config), cda, asr,
                        ba(cell) if cell.config.get("attack") != "none" else None, "; ".join(notes), tuple(reasons)))
    order = {key: i for i, (key, _) in enumerate(FIGURES)}
    rows.sort(key=lambda r: (order[r.figure], str(r.cell.config.get("dataset")), int(r.cell.config.get("clients", 1)),
                             int(r.cell.config.get("cut", 1)), -float(r.cell.config.get("alpha") or 0)
                             if r.cell.config.get("attack") == "surrogate" else 0, r.side))
    return rows


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def identical_at_other_cut(cell: Cell, all_cells: Sequence[Cell]) -> int | None:
    """The lowest lower cut whose cell of the same setting has the same seeds and bit for bit
    the same final CDA and ASR (LeNet's cut 2 adds only a max-pool, which has no parameters:
    the same computation, split elsewhere), or None."""
    setting = experiment_key(dict(cell.config), drop=("cut", "seed"))
    for other in sorted(all_cells, key=lambda c: int(c.config.get("cut", 0))):
        if (other.key != cell.key and int(other.config.get("cut", 0)) < int(cell.config.get("cut", 0))
                and experiment_key(dict(other.config), drop=("cut", "seed")) == setting
                and other.seeds == cell.seeds and other.cda == cell.cda and other.asr == cell.asr):
            return int(other.config["cut"])
    return None


def cell_record(row: Row) -> dict[str, str]:
    """One cells.csv row (numbers as fixed-point text, so the file is the same every time)."""
    c = row.cell
    config = c.config
    surrogate = config.get("attack") == "surrogate"
    return {
        "figure": row.figure, "dataset": str(config.get("dataset")), "model": str(config.get("model")),
        "clients": str(config.get("clients")), "cut": str(config.get("cut")), "attack": str(config.get("attack")),
        "alpha": f"{config.get('alpha'):g}" if surrogate else "", "side": row.side, "n": str(c.n),
        "seeds": " ".join(str(s) for s in c.seeds),
        "cda_mean": _num(c.mean("cda")), "cda_std": _num(c.std("cda")), "cda_values": " ".join(f"{v:.2f}" for v in c.cda),
        "asr_mean": _num(c.mean("asr")), "asr_std": _num(c.std("asr")), "asr_min": _num(c.low("asr")),
        "asr_max": _num(c.high("asr")), "asr_values": " ".join(f"{v:.2f}" for v in c.asr),
        "ba_mean": _num(row.ba), "cda_minus_ba": _num(None if row.ba is None else (c.mean("cda") or 0) - row.ba),
        "authors_cda": _num(row.cda.authors), "authors_asr": _num(row.asr.authors),
        "cda_verdict": row.cda.verdict, "asr_verdict": row.asr.verdict,
        "devices": " ".join(sorted(set(c.devices))), "note": row.note,
    }


def cells_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CELL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(cell_record(row))
    return out.getvalue()


# ---------------------------------------------------------------- transfers (Table 3)

def transfer_rows(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per completed transfer run of a reproduction source: the source's setting
    and ASR, the target dataset, CDA and ASR after retraining the last layer."""
    by_id = {str(d.get("id")): d for d in docs}
    out = []
    for doc in by_id.values():
        source = by_id.get(str(doc.get("source_run") or ""))
        if doc.get("status") != "completed" or source is None or not isinstance(doc.get("final"), dict):
            continue
        sc = source.get("config") or {}
        out.append({"source": source.get("id"), "alpha": sc.get("alpha"), "seed": sc.get("seed"),
                    "source_asr": (source.get("final") or {}).get("asr"), "source_cda": (source.get("final") or {}).get("cda"),
                    "dataset": (doc.get("config") or {}).get("dataset"), "cda": doc["final"].get("cda"),
                    "asr": doc["final"].get("asr"), "epochs": (doc.get("config") or {}).get("epochs"),
                    "device": run_device(doc)})
    out.sort(key=lambda r: (str(r["dataset"]), -float(r["alpha"] or 0), int(r["seed"] or 0)))
    return out


# ---------------------------------------------------------------- figures

def _panel(ax: Any, xs: Sequence[int], rows: Sequence[Row], name: str,
           authors: Sequence[tuple[int, float]], ylim: tuple[float, float]) -> None:
    """One panel: our mean with the std over seeds as error bars, the authors' runs dashed and hollow."""
    if rows:
        ax.errorbar(xs, [r.cell.mean(name) for r in rows], yerr=[r.cell.std(name) or 0 for r in rows],
                    marker="o", capsize=3, color="tab:blue", label="sltui (mean ± std over seeds)")
    if authors:
        ax.plot([a[0] for a in authors], [a[1] for a in authors], linestyle="--", marker="s",
                markerfacecolor="none", color="tab:red", label="authors (one run each)")
    ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)


def _authors_curve(config: Mapping[str, Any], name: str, axis: str, values: Sequence[int]) -> list[tuple[int, float]]:
    """The authors' numbers for `config`'s setting at each value of `axis` (clients or cut)."""
    out = []
    for value in values:
        ref = lookup({**config, axis: value})
        if ref is not None:
            out.append((value, float(getattr(ref, name))))
    return out


def _cda_range(rows: Sequence[Row], authors: Iterable[float]) -> tuple[float, float]:
    """CDA panels zoomed on where CDA lies (every value of the figure, ours and the authors')."""
    values = [v for r in rows for v in r.cell.cda] + list(authors)
    return (max(0.0, min(values, default=90.0) - 3), 100.5)


def _save(fig: Any, path: Path, title: str) -> Path:
    handles, labels = [], []
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    height = fig.get_figheight()
    fig.suptitle(title, y=1 - 0.08 / height, fontsize=11)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.4 / height), ncol=2, fontsize=9,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / height))
    fig.savefig(path, dpi=80, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _figures(rows: Sequence[Row], out: Path) -> list[Path]:
    """The paper's layout: Figures 3-4 as ASR and CDA against K, one panel per cut (rows) and
    alpha (columns); Figures 6 and 7 against the cut; ours with error bars over seeds, the
    authors' points (every K or cut they published) dashed and hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    alphas = (0.5, 0.2, 0.09, 0.06, 0.04)
    ks = (1, 3, 5, 7)
    for figure, dataset in (("3", "mnist"), ("4", "fmnist")):
        subset = [r for r in rows if r.figure == figure]
        if not subset:
            continue
        base = {"dataset": dataset, "model": "lenet", "attack": "surrogate"}
        their_cda = [v for cut in (1, 2, 3) for alpha in alphas
                     for _, v in _authors_curve({**base, "cut": cut, "alpha": alpha}, "cda", "clients", ks)]
        ranges = {"asr": (-3.0, 103.0), "cda": _cda_range(subset, their_cda)}
        fig, axes = plt.subplots(6, 5, figsize=(13, 14), sharex=True, squeeze=False)
        for i, cut in enumerate((1, 2, 3)):
            for j, alpha in enumerate(alphas):
                mine = sorted((r for r in subset if r.cell.config.get("cut") == cut and r.cell.config.get("alpha") == alpha),
                              key=lambda r: int(r.cell.config.get("clients", 1)))
                for k, name in enumerate(("asr", "cda")):
                    ax = axes[2 * i + k][j]
                    _panel(ax, [int(r.cell.config.get("clients", 1)) for r in mine], mine, name,
                           _authors_curve({**base, "cut": cut, "alpha": alpha}, name, "clients", ks), ranges[name])
                    ax.set_xticks(ks)
                    ax.set_xlim(0.3, 7.7)
                    ax.set_title(f"{name.upper()}, cut {cut}, α {alpha:g}", fontsize=8)
                    if j == 0:
                        ax.set_ylabel(f"{name.upper()} %", fontsize=8)
                    if 2 * i + k == 5:
                        ax.set_xlabel("clients K", fontsize=8)
        written.append(_save(fig, out / f"figure{figure}-{dataset}.png",
                             f"Figure {figure}: surrogate attack on {dataset.upper()}, LeNet"))
    for figure, attack in (("6", "autoencoder"), ("7", "none")):
        subset = [r for r in rows if r.figure == figure]
        if not subset:
            continue
        panels = (("mnist", "asr"), ("mnist", "cda"), ("fmnist", "asr"), ("fmnist", "cda"))
        curves = {(d, n): _authors_curve({"dataset": d, "model": "lenet", "attack": attack, "clients": 1}, n, "cut",
                                         (1, 2, 3)) for d, n in panels}
        cda_range = _cda_range(subset, [v for (d, n), c in curves.items() if n == "cda" for _, v in c])
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), squeeze=False)
        for j, (dataset, name) in enumerate(panels):
            ax = axes[0][j]
            mine = sorted((r for r in subset if r.cell.config.get("dataset") == dataset),
                          key=lambda r: int(r.cell.config["cut"]))
            _panel(ax, [int(r.cell.config["cut"]) for r in mine], mine, name, curves[(dataset, name)],
                   (-3.0, 103.0) if name == "asr" else cda_range)
            ax.set_xticks((1, 2, 3))
            ax.set_xlim(0.5, 3.5)
            ax.set_title(f"{dataset.upper()} {name.upper()} %", fontsize=9)
            ax.set_xlabel("cut layer", fontsize=8)
        written.append(_save(fig, out / f"figure{figure}.png", dict(FIGURES)[figure] + " (LeNet, K = 1)"))
    return written


# ---------------------------------------------------------------- the document

def _pm(cell: Cell, name: str) -> str:
    mean, std = cell.mean(name), cell.std(name)
    if mean is None:
        return "-"
    return f"{mean:.2f}" if cell.n == 1 else f"{mean:.2f} ± {std:.2f}"


def _table(rows: Sequence[Row], with_k: bool, with_side: bool = False) -> list[str]:
    head = (["side cell"] if with_side else []) + ["dataset", "cut"] + (["K"] if with_k else []) + ["alpha", "n", "CDA % (ours)", "CDA - BA", "CDA authors",
                                                            "CDA", "ASR % (ours)", "ASR per seed", "ASR authors", "ASR",
                                                            "device", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c, config = r.cell, r.cell.config
        alpha = f"{config.get('alpha'):g}" if config.get("attack") == "surrogate" else "-"
        gap = "-" if r.ba is None else f"{(c.mean('cda') or 0) - r.ba:+.2f}"
        cells_ = ([r.side] if with_side else []) + [str(config.get("dataset")), str(config.get("cut"))] + ([str(config.get("clients"))] if with_k else []) + [
            alpha, str(c.n), _pm(c, "cda"), gap, _num(r.cda.authors), r.cda.verdict, _pm(c, "asr"),
            ", ".join(f"{v:.1f}" for v in c.asr), _num(r.asr.authors), r.asr.verdict,
            "+".join(sorted(set(c.devices))), r.note or ""]
        lines.append("| " + " | ".join(cells_) + " |")
    return lines


def _headline(rows: Sequence[Row]) -> list[str]:
    """Per figure: cells, runs, agreements, and the reasons of the differences (SPEC 13's order)."""
    lines = ["| figure | cells run | runs | CDA agrees | ASR agrees | differences: " + ", ".join(REASONS)
             + " | no authors' number |", "|---|---|---|---|---|---|---|"]
    for key, title in FIGURES:
        subset = [r for r in rows if r.figure == key]
        if not subset:
            lines.append(f"| {title} | 0 | 0 | - | - | - | - |")
            continue
        compared = [r for r in subset if r.cda.verdict != NO_AUTHORS]
        cda = sum(1 for r in compared if r.cda.verdict == AGREES)
        asr = sum(1 for r in compared if r.asr.verdict == AGREES)
        reasons = [kind for r in compared for kind in r.reasons]
        counts = ", ".join(str(reasons.count(name)) for name in REASONS)
        lines.append(f"| {title} | {len(subset)} | {sum(r.cell.n for r in subset)} | {cda}/{len(compared)} | "
                     f"{asr}/{len(compared)} | {counts} | {len(subset) - len(compared)} |")
    return lines


def headline_sentence(rows: Sequence[Row]) -> str:
    """The headline in one sentence (the README quotes it): per figure with compared cells,
    in how many the CDA and the ASR agree with the authors' numbers."""
    parts = []
    for key, title in FIGURES:
        compared = [r for r in rows if r.figure == key and r.cda.verdict != NO_AUTHORS]
        if compared and key != "side":
            runs = sum(r.cell.n for r in rows if r.figure == key)
            cda = sum(1 for r in compared if r.cda.verdict == AGREES)
            asr = sum(1 for r in compared if r.asr.verdict == AGREES)
            parts.append(f"{title.split(':')[0]} ({runs} runs): CDA agrees in {cda}/{len(compared)} cells, "
                         f"ASR in {asr}/{len(compared)}")
    return "; ".join(parts) + "." if parts else "no cell compared yet."


def claims_for(rows: Sequence[Row], transfers: Sequence[Mapping[str, Any]]) -> list[Claim]:
    all_cells = [r.cell for r in rows]
    ba = {r.cell.key: r.ba for r in rows}
    return [claim_small_alpha(all_cells), claim_cut(all_cells), claim_fmnist_harder(all_cells),
            claim_cda_near_ba(all_cells, lambda c: ba.get(c.key)), claim_clients(all_cells),
            claim_autoencoder(all_cells),
            claim_transfer([(str(t["dataset"]), float(t["source_asr"] or 0), float(t["asr"] or 0)) for t in transfers]),
            claim_fewer_samples(all_cells), claim_fewer_classes(all_cells), claim_emnist()]


def _client_axis(trends: Sequence[Trend]) -> list[str]:
    """Figures 3-4's client axis: ASR per K for each (dataset, cut, alpha), its slope, and
    whether K = 7 lies beyond what K = 1's seeds span (the yardstick for one run)."""
    ks = sorted({k for t in trends for k in t.asr})
    lines = ["", "## The client axis: ASR against K", "",
             "Per (dataset, cut, alpha): ASR per seed at K = 1, the single run (seed 1, as the authors) at each other "
             "K, the least-squares slope over all runs (ASR points per added client), and whether K = 7 lies outside "
             "K = 1's seeds' range widened by 5 points (SPEC 13's ASR slack): inside it, one run cannot tell K = 7 "
             "from K = 1.", "",
             "| dataset | cut | alpha | " + " | ".join(f"ASR K = {k}" for k in ks) + " | slope / client | K = 7 - K = 1 | beyond K = 1's seeds |",
             "|---|---|---|" + "---|" * len(ks) + "---|---|---|"]
    for t in trends:
        per_k = [", ".join(f"{v:.1f}" for v in t.asr[k]) if k in t.asr else "-" for k in ks]
        lines.append(f"| {t.dataset} | {t.cut} | {t.alpha:g} | " + " | ".join(per_k) + " | "
                     f"{'-' if t.slope is None else f'{t.slope:+.2f}'} | "
                     f"{'-' if t.change is None else f'{t.change:+.1f}'} | "
                     f"{'-' if t.beyond_seeds is None else ('yes' if t.beyond_seeds else 'no')} |")
    with_seven = [t for t in trends if t.change is not None]
    if with_seven:
        falling = sum(1 for t in with_seven if (t.change or 0) < 0)
        beyond = sum(1 for t in with_seven if t.beyond_seeds)
        slopes = [t.slope for t in trends if t.slope is not None]
        pooled = {k: statistics.fmean(statistics.fmean(t.asr[k]) for t in trends if k in t.asr) for k in ks}
        lines += ["", f"Pooled over the {len(with_seven)} settings with K = 7: ASR lower at K = 7 than at K = 1 in "
                  f"{falling}/{len(with_seven)}, beyond K = 1's seed spread in {beyond}/{len(with_seven)}; median slope "
                  f"{statistics.median(slopes):+.2f} points per client; mean ASR "
                  + ", ".join(f"K = {k}: {v:.1f}%" for k, v in pooled.items()) + "."]
    return lines


def _cost(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Runs, hours and runs per hour per device, from each run file's created and updated times."""
    from datetime import datetime

    per: dict[str, list[float]] = {}
    for doc in docs:
        if doc.get("status") != "completed":
            continue
        try:
            start = datetime.fromisoformat(str(doc["created"]))
            end = datetime.fromisoformat(str(doc["updated"]))
        except (KeyError, ValueError):
            continue
        kind = run_device(doc) + (" (transfers)" if doc.get("source_run") else "")
        per.setdefault(kind, []).append((end - start).total_seconds())
    lines = ["| device | runs | hours (one core or one GPU share each) | median minutes per run |", "|---|---|---|---|"]
    for kind in sorted(per):
        seconds = per[kind]
        lines.append(f"| {kind} | {len(seconds)} | {sum(seconds) / 3600:.1f} | {statistics.median(seconds) / 60:.1f} |")
    return lines


GPU_ROWS = (
    ("StripNet and ResNet9 on MNIST and FMNIST (Figures 3-4's other models, K = 1, 3 seeds)",
     "sltui sweep --datasets mnist,fmnist --models stripnet,resnet9 --cuts 1,2,3 --clients 1 --attacks surrogate "
     "--alphas 0.5,0.2,0.09,0.06,0.04 --seeds 1,2,3 --device cuda --jobs 15"),
    ("CIFAR-10 (Figure 5), LeNet, StripNet and ResNet9, K = 1, 3 seeds",
     "sltui sweep --datasets cifar10 --models lenet,stripnet,resnet9 --cuts 1,2,3 --clients 1 --attacks surrogate "
     "--alphas 0.5,0.2,0.09,0.06,0.04 --seeds 1,2,3 --device cuda --jobs 8"),
    ("Table 3 as the paper (StripNet, MNIST, K = 3, alpha 0.04, cut 1), then its transfers",
     "sltui sweep --datasets mnist --models stripnet --cuts 1 --clients 3 --attacks surrogate --alphas 0.04 "
     "--seeds 1,2,3 --device cuda; sltui transfer ID --dataset mnist|fmnist|emnist-letters-aj"),
    ("Appendix D's EMNIST letters A-J (needs the EMNIST files under the data root)",
     "sltui sweep --datasets emnist-letters-aj --models lenet --cuts 1 --clients 1 --attacks surrogate --alphas 0.09 "
     "--seeds 1,2,3"),
)


def document(rows: Sequence[Row], transfers: Sequence[Mapping[str, Any]], docs: Sequence[Mapping[str, Any]],
             figures: Sequence[str], command: str) -> str:
    claims = claims_for(rows, transfers)
    lines = ["# The paper on record: sltui's reproduction", "",
             f"Generated by `{command}` from the run files under `examples/paper/`; every number below comes from "
             "them (or, marked *authors*, from the authors' published per-run results). Do not edit: write it again.",
             "", "Each setting of the paper's LeNet grid is run with several seeds (the authors ran each once) under "
             "the paper's protocol with its defaults untouched (90 epochs on the whole training set, its LR schedule, "
             "early stopping; [protocol.md section 13](protocol.md#13-the-paper-on-record)), and compared with the "
             "authors' number by a rule fixed before the runs: CDA agrees when the authors' CDA lies within our "
             "seeds' [min - 1, max + 1] points, ASR within [min - 5, max + 5]; with one seed within 2 / 10 points. "
             "Values are the last epoch's, as the authors'.", "", "## Headline", "", headline_sentence(rows), ""]
    lines += _headline(rows)
    lines += ["", "## The paper's claims", "", "| claim | verdict | evidence |", "|---|---|---|"]
    for c in claims:
        lines.append(f"| {c.text} | **{c.verdict}** | {c.evidence} |")
    lines += ["", "How each verdict is decided (fixed before the runs):", ""]
    lines += [f"- *{c.text}*: {c.rule}." for c in claims]
    for c in claims:
        if c.details:
            lines += ["", f"{c.text}, per cell:", ""] + [f"- {d}" for d in c.details]
    for key, title in FIGURES:
        subset = [r for r in rows if r.figure == key]
        if not subset:
            continue
        lines += ["", f"## {title}", ""]
        lines += _table(subset, with_k=key in ("3", "4"), with_side=key == "side")
    trends = client_trends([r.cell for r in rows])
    if trends:
        lines += _client_axis(trends)
    if transfers:
        lines += ["", "## Table 3: the transfer check", "",
                  "The last layer of each backdoored MNIST cut-1 run (LeNet, K = 1) retrained on a clean dataset "
                  f"({transfers[0]['epochs']} epochs), then CDA and ASR there. The authors checked one StripNet run "
                  "(MNIST, K = 3, alpha 0.04, cut 1, ASR 100%): their numbers are beside ours, not a verdict (another "
                  "model).", "",
                  "| target | source alpha | runs | source ASR % | CDA % after | ASR % after (per run) | authors (StripNet): CDA, ASR |",
                  "|---|---|---|---|---|---|---|"]
        for dataset in sorted({str(t["dataset"]) for t in transfers}):
            for alpha in sorted({t["alpha"] for t in transfers if t["dataset"] == dataset}, key=lambda a: -float(a)):
                group = [t for t in transfers if t["dataset"] == dataset and t["alpha"] == alpha]
                theirs = TABLE3.get(dataset)
                before = ", ".join(f"{float(t['source_asr']):.1f}" for t in group)
                after = ", ".join(f"{float(t['asr']):.1f}" for t in group)
                cda = statistics.fmean(float(t["cda"]) for t in group)
                authors = "-" if theirs is None else f"{theirs[0]:.2f}, {theirs[1]:.2f}"
                lines.append(f"| {dataset} | {float(alpha):g} | {len(group)} | {before} | {cda:.2f} | {after} | {authors} |")
    if figures:
        lines += ["", "## The figures, in the paper's layout", "",
                  "sltui's mean ± std over seeds (blue, error bars) and the authors' single runs (red, dashed, hollow "
                  "squares)."]
        lines += ["", *[f"![{Path(f).stem}]({f})" for f in figures]]
    lines += ["", "## Cost", "",
              "Wall time of each completed run (its file's created to last update), per device. CPU runs ran two at "
              "a time, one thread each, on a 2-core machine shared with other work; GPU runs ran 15 at a time on one "
              "GPU (the run files name it)."]
    lines += [""] + _cost(docs)
    lines += ["", "## Still to run: the rows that need a GPU", "",
              "Not run here (2 CPU cores); each is an ordinary sweep. On one H200, 15 LeNet runs at a time took 3.6 "
              "minutes each (K = 1, MNIST; bench/results/cuda-h200-2026-12-04.json for the engine's speed).", "",
              "| cells | command |", "|---|---|"]
    lines += [f"| {what} | `{cmd}` |" for what, cmd in GPU_ROWS]
    lines += ["", "## Parts and commands", "", "| part | what |", "|---|---|"]
    lines += [f"| `{p.name}` | {p.what} |" for p in PARTS]
    lines += ["", "`sltui reproduce run --parts PART --runs-dir examples/paper --jobs 2` runs a part (resumable); "
              "`sltui reproduce report --runs-dir examples/paper` writes this page, `examples/paper/report/cells.csv` "
              "and the figures again."]
    return "\n".join(lines) + "\n"


def write_reproduction(docs: Sequence[Mapping[str, Any]], out: Path, doc_path: Path, command: str) -> list[Path]:
    """cells.csv, transfers.csv and the figures under `out`, the document at `doc_path`."""
    rows = build_rows(docs)
    transfers = transfer_rows(docs)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "cells.csv", out / "transfers.csv"]
    written[0].write_text(cells_csv(rows))
    buffer = io.StringIO()
    columns = ("dataset", "source", "alpha", "seed", "source_cda", "source_asr", "epochs", "cda", "asr", "device")
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for t in transfers:
        writer.writerow({k: (f"{t[k]:.2f}" if isinstance(t[k], float) else t[k]) for k in columns})
    written[1].write_text(buffer.getvalue())
    figures = _figures(rows, out / "figures")
    relative = [Path(os.path.relpath(p, doc_path.parent)).as_posix() for p in figures]
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(document(rows, transfers, docs, [str(p) for p in relative], command))
    return written + figures + [doc_path]

