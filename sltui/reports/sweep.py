"""A sweep's figures in the paper's layout, and a Markdown table of its settings.

Per dataset and attack, two PNGs (ASR, CDA): x = number of clients K, one panel per
cut x variant (alpha for the surrogate attack, the trigger kind where it is not the
patch), one line per model with error bars over seeds (sample std), the authors'
values (sltui/reference) as hollow markers joined by dashes in the same colour.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from engine.sweeps.agreement import cells
from engine.sweeps.aggregate import aggregate

from ..format import fmt_mean_std
from ..reference import cell_verdicts, lookup

MODEL_COLOURS = {"lenet": "tab:blue", "stripnet": "tab:orange", "resnet9": "tab:green"}
METRIC_LABELS = {"asr": "ASR (%)", "cda": "CDA (%)"}


def _alpha_of(row: Mapping[str, Any]) -> float | None:
    return row.get("alpha") if row.get("attack") == "surrogate" else None


def _trigger_of(row: Mapping[str, Any]) -> str:
    """The trigger kind of an aggregate row ('patch' for runs from before trigger kinds)."""
    return str(row.get("trigger") or "patch") if row.get("attack") not in (None, "none") else "-"


def _variant(row: Mapping[str, Any]) -> tuple[float | None, str]:
    return _alpha_of(row), _trigger_of(row)


def _variant_title(variant: tuple[float | None, str]) -> str:
    alpha, trigger = variant
    return (f", α = {alpha:g}" if alpha is not None else "") + (f", {trigger}" if trigger not in ("patch", "-") else "")


def write_report(docs: Iterable[Mapping[str, Any]], out: Path, title: str = "sweep") -> list[Path]:
    """Write the figures and `summary.md` under `out`; return their paths ([] without completed runs)."""
    docs = list(docs)
    rows = aggregate(docs)
    if not rows:
        return []
    # The agreement with the authors' number per setting (docs/protocol.md section 13).
    verdicts = {cell.key: tuple(v.verdict for v in cell_verdicts(cell)) for cell in cells(docs)}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for dataset, attack in sorted({(r["dataset"], r["attack"]) for r in rows}):
        subset = [r for r in rows if r["dataset"] == dataset and r["attack"] == attack]
        cuts = sorted({r["cut"] for r in subset})
        variants = sorted({_variant(r) for r in subset}, key=lambda v: (-(v[0] or 0), v[1]))
        for metric in ("asr", "cda"):
            fig, axes = plt.subplots(len(cuts), len(variants), squeeze=False, sharex=True, sharey=True,
                                     figsize=(3.2 * len(variants) + 0.8, 2.6 * len(cuts) + 0.8))
            for i, cut in enumerate(cuts):
                for j, variant in enumerate(variants):
                    _panel(axes[i][j], [r for r in subset if r["cut"] == cut and _variant(r) == variant], metric)
                    axes[i][j].set_title(f"cut {cut}" + _variant_title(variant), fontsize=9)
                    if i == len(cuts) - 1:
                        axes[i][j].set_xlabel("clients K")
                    if j == 0:
                        axes[i][j].set_ylabel(METRIC_LABELS[metric])
            handles, labels = axes[0][0].get_legend_handles_labels()
            for row_axes in axes:
                for ax in row_axes:
                    for h, lab in zip(*ax.get_legend_handles_labels()):
                        if lab not in labels:
                            handles.append(h)
                            labels.append(lab)
            ks = sorted({r["clients"] for r in subset})
            for ax in axes.flat:
                ax.set_xticks(ks)
                ax.set_xlim(min(ks) - 0.7, max(ks) + 0.7)
            top = 1 - 0.75 / fig.get_figheight()
            fig.suptitle(f"{title}: {metric.upper()} on {dataset}, attack {attack}", y=0.995, fontsize=10)
            fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, top + 0.4 / fig.get_figheight()),
                       ncol=min(len(labels), 6), fontsize=8, frameon=False)
            fig.tight_layout(rect=(0, 0, 1, top))
            path = out / f"{dataset}-{attack}-{metric}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    summary = out / "summary.md"
    summary.write_text(markdown_table(rows, title, verdicts))
    written.append(summary)
    return written


def _panel(ax: Any, rows: list[Mapping[str, Any]], metric: str) -> None:
    for model in sorted({r["model"] for r in rows}):
        colour = MODEL_COLOURS.get(model)
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["clients"])
        ks = [r["clients"] for r in mine]
        ax.errorbar(ks, [r[f"{metric}_mean"] for r in mine], yerr=[r[f"{metric}_std"] or 0 for r in mine],
                    marker="o", capsize=3, color=colour, label=f"{model} (ours)")
        paper = [(r["clients"], lookup(r)) for r in mine]
        paper = [(k, getattr(ref, metric)) for k, ref in paper if ref is not None]
        if paper:
            ax.plot([k for k, _ in paper], [v for _, v in paper], linestyle="--", marker="s",
                    markerfacecolor="none", color=colour, label=f"{model} (paper)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)


def spread(row: Mapping[str, Any], metric: str) -> float | None:
    """The std over seeds of an aggregate row's metric, None for a single run (nothing to show)."""
    return row[f"{metric}_std"] if row.get("n", 0) > 1 else None


def markdown_table(rows: list[Mapping[str, Any]], title: str,
                   verdicts: Mapping[str, tuple[str, str]] | None = None) -> str:
    lines = [f"# {title}", "",
             "Mean ± sample std over seeds of the last epoch's metrics (n runs); paper: the authors' single run; "
             "CDA and ASR agree by the reproduction's rule (docs/protocol.md section 13: the authors' number within "
             "our seeds' range widened by 1 CDA or 5 ASR points, 2 or 10 for one seed; - where they published none).", "",
             "| dataset | model | cut | K | attack | alpha | trigger | epochs | n | CDA % | ASR % | paper CDA | paper ASR "
             "| CDA | ASR |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = lookup(r)
        cda_verdict, asr_verdict = (verdicts or {}).get(str(r.get("group")), ("-", "-"))
        alpha = _alpha_of(r)
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['cut']} | {r['clients']} | {r['attack']} | "
            f"{'-' if alpha is None else f'{alpha:g}'} | {_trigger_of(r)} | {r.get('epochs')} | {r['n']} | "
            f"{fmt_mean_std(r['cda_mean'], spread(r, 'cda'))} | {fmt_mean_std(r['asr_mean'], spread(r, 'asr'))} | "
            f"{'-' if ref is None else f'{ref.cda:.2f}'} | {'-' if ref is None else f'{ref.asr:.2f}'} | "
            f"{cda_verdict} | {asr_verdict} |")
    return "\n".join(lines) + "\n"
