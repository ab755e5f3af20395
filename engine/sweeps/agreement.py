"""The paper on record: cells of run records, SPEC 13's agreement rule and the paper's claims.

Pure functions over run documents (completed runs) and the authors' numbers, which the caller
looks up and passes in: the reproduction's report, `sltui report`'s tables and the TUI's
compare view call these and nothing else, so they show the same verdict for a cell. The
rules (docs/protocol.md section 13) were fixed before any reproduction run was looked at:

- CDA agrees when the authors' CDA lies within our seeds' [min - 1, max + 1] points; ASR
  when the authors' ASR lies within [min - 5, max + 5]; with one seed, within 2 (CDA) or
  10 (ASR) points of it. Otherwise the cell `differs`, and `reason` says why.
- A claim's verdict (holds, partly, does not hold) follows the thresholds named in CLAIM_RULES.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from .aggregate import group_key, metric

# SPEC 13: how far outside our seeds' range the authors' number may lie and still agree
# (points), with several seeds and with one.
SLACK = {"cda": 1.0, "asr": 5.0}
SLACK_ONE_SEED = {"cda": 2.0, "asr": 10.0}
AGREES, DIFFERS, NO_AUTHORS = "agrees", "differs", "-"
# Why a cell differs, in the order `reason` tries them.
REASONS = ("protocol", "seed-unstable", "unexplained")
# A cell whose seeds' ASR spans at least this many points is seed-unstable: three seeds
# cannot bound it (a `differs` there gets that reason, not "unexplained").
UNSTABLE_ASR_RANGE = 30.0
UNSTABLE_CDA_RANGE = 3.0
# A backdoor works at this ASR (the arena's "live" threshold, docs/protocol.md section 11);
# chance: a stamped image of another class read as the target no more often than a random
# guess among 10 classes.
WORKING_ASR = 50.0
CHANCE_ASR = 10.0
# CDA near BA: within this many points.
NEAR_BA = 2.0


@dataclass(frozen=True)
class Cell:
    """One setting's runs over seeds (final-epoch values, percentages, ordered by seed)."""
    key: str
    config: Mapping[str, Any]          # the setting (the first run's config, its seed aside)
    seeds: tuple[int, ...]
    cda: tuple[float, ...]
    asr: tuple[float, ...]
    run_ids: tuple[str, ...]
    devices: tuple[str, ...]           # the device of each run ("cpu", "cuda")

    @property
    def n(self) -> int:
        return len(self.seeds)

    def values(self, name: str) -> tuple[float, ...]:
        return self.cda if name == "cda" else self.asr

    def mean(self, name: str) -> float | None:
        values = self.values(name)
        return statistics.fmean(values) if values else None

    def std(self, name: str) -> float | None:
        """The sample standard deviation over seeds; None for fewer than two."""
        values = self.values(name)
        return statistics.stdev(values) if len(values) > 1 else None

    def low(self, name: str) -> float | None:
        return min(self.values(name), default=None)

    def high(self, name: str) -> float | None:
        return max(self.values(name), default=None)


@dataclass(frozen=True)
class Verdict:
    metric: str          # cda or asr
    verdict: str         # agrees, differs, or "-" (the authors published no number)
    low: float | None    # the interval the authors' number had to fall in
    high: float | None
    authors: float | None


def run_device(doc: Mapping[str, Any]) -> str:
    """cpu or cuda (the device type a run file names)."""
    device = str((doc.get("env") or {}).get("device") or (doc.get("config") or {}).get("device") or "cpu")
    return device.split(":")[0]


def cells(docs: Iterable[Mapping[str, Any]]) -> list[Cell]:
    """Completed runs with a final CDA and ASR, grouped by setting (config without seed,
    device, data root: engine/sweeps/aggregate.py's group). Several runs of one setting
    and seed: the newest counts."""
    groups: dict[str, dict[int, Mapping[str, Any]]] = {}
    for doc in docs:
        config = doc.get("config")
        if (doc.get("status") != "completed" or not isinstance(config, dict) or doc.get("source_run")
                or metric(doc, "final", "cda") is None or metric(doc, "final", "asr") is None):
            continue
        seed = int(config.get("seed", 0))
        by_seed = groups.setdefault(group_key(config), {})
        if seed not in by_seed or str(doc.get("created", "")) > str(by_seed[seed].get("created", "")):
            by_seed[seed] = doc
    out = []
    for key, by_seed in groups.items():
        ordered = [by_seed[s] for s in sorted(by_seed)]
        config = {k: v for k, v in ordered[0]["config"].items() if k != "seed"}
        out.append(Cell(key, config, tuple(sorted(by_seed)),
                        tuple(float(metric(d, "final", "cda")) for d in ordered),
                        tuple(float(metric(d, "final", "asr")) for d in ordered),
                        tuple(str(d.get("id")) for d in ordered), tuple(run_device(d) for d in ordered)))
    return out


def agreement(values: Sequence[float], authors: float | None, name: str) -> Verdict:
    """SPEC 13's rule for one metric (`name`: cda or asr) of one cell."""
    if authors is None or not values or (isinstance(authors, float) and math.isnan(authors)):
        return Verdict(name, NO_AUTHORS, None, None, authors)
    if len(values) == 1:
        low, high = values[0] - SLACK_ONE_SEED[name], values[0] + SLACK_ONE_SEED[name]
    else:
        low, high = min(values) - SLACK[name], max(values) + SLACK[name]
    return Verdict(name, AGREES if low <= authors <= high else DIFFERS, low, high, authors)


def unstable(cell: Cell, name: str) -> bool:
    """Whether the cell's seeds span so wide a range on `name` that three seeds cannot bound it."""
    if cell.n < 2:
        return False
    spread = (cell.high(name) or 0) - (cell.low(name) or 0)
    return spread >= (UNSTABLE_ASR_RANGE if name == "asr" else UNSTABLE_CDA_RANGE)


def reason(cell: Cell, verdict: Verdict, protocol_note: str | None = None) -> str:
    """Why a `differs` differs, by these rules in this order: a documented protocol
    difference that the caller names for this cell (`protocol_note`, e.g. a side cell with
    the authors' code choice that agrees); a seed-unstable cell; else unexplained, with the
    numbers. Empty for a cell that agrees or has no authors' number."""
    if verdict.verdict != DIFFERS:
        return ""
    ours = f"ours {cell.low(verdict.metric):.1f}-{cell.high(verdict.metric):.1f}" if cell.n > 1 else \
        f"ours {cell.values(verdict.metric)[0]:.1f} (n = 1)"
    numbers = f"{ours}, authors {verdict.authors:.1f}"
    if protocol_note:
        return f"protocol: {protocol_note} ({numbers})"
    if unstable(cell, verdict.metric):
        return f"seed-unstable: {numbers}"
    return f"unexplained: {numbers}"


# ---------------------------------------------------------------- claims

@dataclass(frozen=True)
class Claim:
    name: str
    text: str             # the paper's claim
    rule: str             # how the verdict is decided (fixed before the runs)
    verdict: str          # holds, partly, does not hold, not run
    evidence: str         # the numbers behind it
    details: tuple[str, ...] = field(default_factory=tuple)


HOLDS, PARTLY, FAILS, NOT_RUN = "holds", "partly", "does not hold", "not run"


def _select(all_cells: Iterable[Cell], **fields_: Any) -> list[Cell]:
    def matches(cell: Cell) -> bool:
        for name, wanted in fields_.items():
            value = cell.config.get(name)
            if callable(wanted):
                if not wanted(value):
                    return False
            elif value != wanted:
                return False
        return True
    return [c for c in all_cells if matches(c)]


def _twin(all_cells: Iterable[Cell], cell: Cell, **changes: Any) -> Cell | None:
    """The paper's surrogate cell of `cell`'s setting (dataset, cut, K, alpha) with `changes`."""
    wanted = {k: cell.config.get(k) for k in ("dataset", "cut", "clients", "alpha")} | changes
    found = [c for c in _select(all_cells, **wanted) if paper_surrogate(c)]
    return found[0] if found else None


def _m(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def paper_surrogate(cell: Cell) -> bool:
    """A surrogate cell of Figures 3-4 as the paper's text runs it (not a side cell)."""
    c = cell.config
    return (c.get("attack") == "surrogate" and c.get("dataset") in ("mnist", "fmnist") and not c.get("loss_halved")
            and c.get("trigger", "patch") == "patch")


def claim_small_alpha(all_cells: list[Cell]) -> Claim:
    rule = (f"holds when every seed of MNIST cut 1, K = 1 at alpha 0.09, 0.06 and 0.04 reaches ASR >= {WORKING_ASR:g}%; "
            "partly when their mean does; does not hold otherwise")
    chosen = [c for c in _select(all_cells, dataset="mnist", cut=1, clients=1, alpha=lambda a: a in (0.09, 0.06, 0.04))
              if paper_surrogate(c)]
    text = "The surrogate attack backdoors LeNet at cut 1 on MNIST at small alpha"
    if not chosen:
        return Claim("small-alpha", text, rule, NOT_RUN, "no runs yet")
    values = [v for c in chosen for v in c.asr]
    verdict = HOLDS if min(values) >= WORKING_ASR else PARTLY if statistics.fmean(values) >= WORKING_ASR else FAILS
    details = tuple(f"alpha {c.config.get('alpha'):g}: ASR " + ", ".join(f"{v:.1f}" for v in c.asr)
                    for c in sorted(chosen, key=lambda c: -float(c.config.get("alpha", 0))))
    return Claim("small-alpha", text, rule, verdict,
                 f"ASR {statistics.fmean(values):.1f}% on average, {min(values):.1f}-{max(values):.1f}% over "
                 f"{len(values)} runs", details)


def claim_cut(all_cells: list[Cell]) -> Claim:
    rule = (f"holds when, on each dataset at K = 1, the mean ASR over alphas falls from cut 1 to cut 2 to cut 3 "
            f"and is at most {CHANCE_ASR:g}% at cut 3; partly when cut 3 is the lowest on each dataset; "
            "does not hold otherwise")
    text = "ASR falls as the cut deepens (near chance at cut 3)"
    per: dict[str, list[float | None]] = {}
    for dataset in ("mnist", "fmnist"):
        per[dataset] = [_m(c.mean("asr") for c in _select(all_cells, dataset=dataset, clients=1, cut=cut)
                           if paper_surrogate(c)) for cut in (1, 2, 3)]
    if any(None in means for means in per.values()):
        return Claim("cut", text, rule, NOT_RUN, "not every cut has runs yet")
    falls = all(m[0] >= m[1] >= m[2] and m[2] <= CHANCE_ASR for m in per.values())
    lowest = all(m[2] <= min(m[0], m[1]) for m in per.values())
    verdict = HOLDS if falls else PARTLY if lowest else FAILS
    evidence = "; ".join(f"{d.upper()} " + ", ".join(f"cut {i + 1} {_pct(v)}" for i, v in enumerate(m))
                         for d, m in per.items())
    return Claim("cut", text, rule, verdict, "mean ASR over alphas and seeds, K = 1: " + evidence)


def claim_fmnist_harder(all_cells: list[Cell]) -> Claim:
    rule = ("holds when FMNIST's mean ASR is below MNIST's in every (cut, alpha) cell at K = 1; partly when "
            "below on average; does not hold otherwise")
    text = "FMNIST is harder to backdoor than MNIST"
    pairs = []
    for m in _select(all_cells, dataset="mnist", clients=1):
        twin = _twin(all_cells, m, dataset="fmnist")
        if paper_surrogate(m) and twin is not None:
            pairs.append((m, twin))
    if not pairs:
        return Claim("fmnist-harder", text, rule, NOT_RUN, "no pair of cells yet")
    lower = sum(1 for m, f in pairs if (f.mean("asr") or 0) < (m.mean("asr") or 0))
    mnist, fmnist = _m(m.mean("asr") for m, _ in pairs), _m(f.mean("asr") for _, f in pairs)
    verdict = HOLDS if lower == len(pairs) else PARTLY if (fmnist or 0) < (mnist or 0) else FAILS
    return Claim("fmnist-harder", text, rule, verdict,
                 f"mean ASR MNIST {_pct(mnist)}, FMNIST {_pct(fmnist)}; FMNIST lower in {lower}/{len(pairs)} cells")


def claim_cda_near_ba(all_cells: list[Cell], ba: Callable[[Cell], float | None]) -> Claim:
    rule = (f"holds when the mean CDA is within {NEAR_BA:g} points of BA (same dataset, cut, K) in at least 90% of "
            "the surrogate cells; partly in at least half; does not hold otherwise")
    text = "CDA stays near the baseline accuracy (BA)"
    gaps = [(c, (c.mean("cda") or 0) - b) for c in all_cells if paper_surrogate(c) for b in [ba(c)] if b is not None]
    if not gaps:
        return Claim("cda-near-ba", text, rule, NOT_RUN, "no cell with its BA yet")
    near = sum(1 for _, g in gaps if abs(g) <= NEAR_BA)
    share = near / len(gaps)
    verdict = HOLDS if share >= 0.9 else PARTLY if share >= 0.5 else FAILS
    worst = min(gaps, key=lambda cg: cg[1])
    wc = worst[0].config
    return Claim("cda-near-ba", text, rule, verdict,
                 f"{near}/{len(gaps)} cells within {NEAR_BA:g} points; CDA - BA from {min(g for _, g in gaps):+.1f} "
                 f"({wc.get('dataset')} cut {wc.get('cut')} K {wc.get('clients')} alpha {wc.get('alpha'):g}) to "
                 f"{max(g for _, g in gaps):+.1f} points")


def claim_clients(all_cells: list[Cell]) -> Claim:
    rule = (f"per (dataset, cut, alpha) with a working backdoor at K = 1 (mean ASR >= {CHANCE_ASR:g}%), ASR at K = 7 "
            "below ASR at K = 1; holds when that is so in at least 75% of those cells and the mean ASR falls from "
            "K = 1 to K = 7; partly when only the mean falls; does not hold otherwise")
    text = "More clients lower the ASR"
    rows = []
    for one in _select(all_cells, clients=1):
        seven = _twin(all_cells, one, clients=7)
        if paper_surrogate(one) and (one.mean("asr") or 0) >= CHANCE_ASR and seven is not None:
            rows.append((one, seven))
    if not rows:
        return Claim("clients", text, rule, NOT_RUN, "no K = 7 runs beside a working K = 1 cell yet")
    lower = sum(1 for one, seven in rows if (seven.mean("asr") or 0) < (one.mean("asr") or 0))
    k1, k7 = _m(o.mean("asr") for o, _ in rows), _m(s.mean("asr") for _, s in rows)
    falls = (k7 or 0) < (k1 or 0)
    verdict = HOLDS if lower >= 0.75 * len(rows) and falls else PARTLY if falls else FAILS
    return Claim("clients", text, rule, verdict,
                 f"K = 7 below K = 1 in {lower}/{len(rows)} cells; mean ASR {_pct(k1)} at K = 1, {_pct(k7)} at K = 7")


def claim_autoencoder(all_cells: list[Cell]) -> Claim:
    rule = f"holds when every run of Figure 6 (the paper's text) has ASR <= {CHANCE_ASR:g}%; does not hold otherwise"
    text = "The autoencoder attack plants no backdoor (ASR at or below chance)"
    chosen = [c for c in _select(all_cells, attack="autoencoder", clients=1)
              if c.config.get("ae_share") == 0.5 and c.config.get("ae_variant", "paper") == "paper"]
    if not chosen:
        return Claim("autoencoder", text, rule, NOT_RUN, "no runs yet")
    values = [v for c in chosen for v in c.asr]
    verdict = HOLDS if max(values) <= CHANCE_ASR else FAILS
    return Claim("autoencoder", text, rule, verdict,
                 f"ASR {min(values):.2f}-{max(values):.2f}% over {len(values)} runs")


def claim_transfer(transfers: Sequence[tuple[str, float, float]]) -> Claim:
    """`transfers`: (target dataset, source ASR, ASR after the transfer) per transfer run."""
    rule = (f"over the transfers of sources whose ASR >= {WORKING_ASR:g}%, holds when the mean ASR after the transfer "
            f"is below {WORKING_ASR:g}% on every target dataset; partly when on some; does not hold otherwise")
    text = "The backdoor does not survive the transfer task (Table 3)"
    working = [(d, after) for d, before, after in transfers if before >= WORKING_ASR]
    if not working:
        return Claim("transfer", text, rule, NOT_RUN, "no transfer of a backdoored run yet")
    per = {d: statistics.fmean(a for dd, a in working if dd == d) for d in sorted({d for d, _ in working})}
    below = [d for d, m in per.items() if m < WORKING_ASR]
    verdict = HOLDS if len(below) == len(per) else PARTLY if below else FAILS
    return Claim("transfer", text, rule, verdict,
                 "; ".join(f"{d}: ASR {m:.1f}% after (n = {sum(1 for dd, _ in working if dd == d)})" for d, m in per.items()))


def claim_fewer_samples(all_cells: list[Cell]) -> Claim:
    rule = ("holds when the seeds' ASR ranges of mnist-10k and MNIST (cut 1, K = 1, alpha 0.09) overlap; partly when "
            "their means are within 20 points; does not hold otherwise")
    text = "Appendix D: fewer training samples (MNIST, 10 000) do not lower the ASR"
    small = _select(all_cells, dataset="mnist-10k", cut=1, clients=1, alpha=0.09, attack="surrogate")
    full = [c for c in _select(all_cells, dataset="mnist", cut=1, clients=1, alpha=0.09) if paper_surrogate(c)]
    if not small or not full:
        return Claim("fewer-samples", text, rule, NOT_RUN, "not both cells run yet")
    s, f = small[0], full[0]
    overlap = (s.low("asr") or 0) <= (f.high("asr") or 0) and (f.low("asr") or 0) <= (s.high("asr") or 0)
    close = abs((s.mean("asr") or 0) - (f.mean("asr") or 0)) <= 20
    verdict = HOLDS if overlap else PARTLY if close else FAILS
    return Claim("fewer-samples", text, rule, verdict,
                 f"ASR mnist-10k {', '.join(f'{v:.1f}' for v in s.asr)}; MNIST {', '.join(f'{v:.1f}' for v in f.asr)}")


def claim_fewer_classes(all_cells: list[Cell]) -> Claim:
    rule = (f"holds when fmnist-5 (cut 1, K = 1, alpha 0.09) stays below a working backdoor: mean ASR < {WORKING_ASR:g}%; "
            "does not hold otherwise")
    text = "Appendix D: FMNIST with five classes is still not backdoored (the class count is not why FMNIST resists)"
    small = _select(all_cells, dataset="fmnist-5", cut=1, clients=1, alpha=0.09, attack="surrogate")
    if not small:
        return Claim("fewer-classes", text, rule, NOT_RUN, "no runs yet")
    c = small[0]
    verdict = HOLDS if (c.mean("asr") or 0) < WORKING_ASR else FAILS
    full = [f for f in _select(all_cells, dataset="fmnist", cut=1, clients=1, alpha=0.09) if paper_surrogate(f)]
    beside = f"; FMNIST (10 classes) {', '.join(f'{v:.1f}' for v in full[0].asr)}" if full else ""
    return Claim("fewer-classes", text, rule, verdict, f"ASR fmnist-5 {', '.join(f'{v:.1f}' for v in c.asr)}{beside}")


def claim_emnist() -> Claim:
    return Claim("emnist", "Appendix D: EMNIST letters A-J behave like MNIST",
                 "as fewer-samples, on emnist-letters-aj", NOT_RUN,
                 "needs the EMNIST files, which no machine here holds (the command is in the GPU rows)")


# ---------------------------------------------------------------- the client axis

@dataclass(frozen=True)
class Trend:
    """ASR over the number of clients for one (dataset, cut, alpha) of Figures 3-4."""
    dataset: str
    cut: int
    alpha: float
    asr: Mapping[int, tuple[float, ...]]   # K -> per-seed ASR
    slope: float | None                    # least-squares ASR points per added client, over every run
    change: float | None                   # mean ASR at K = 7 minus mean ASR at K = 1
    beyond_seeds: bool | None              # K = 7's mean outside K = 1's seeds' [min - 5, max + 5]


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    xs = [x for x, _ in points]
    if len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(y for _, y in points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)


def client_trends(all_cells: Iterable[Cell]) -> list[Trend]:
    """Per (dataset, cut, alpha) of the paper's surrogate cells with runs at K = 1 and at
    least one other K: the per-seed ASR per K, the least-squares slope over all runs, and
    whether K = 7 lies outside what K = 1's seeds span (SPEC 13's ASR slack of 5 points):
    the seed spread at K = 1 is the yardstick for what one run at another K can show."""
    groups: dict[tuple[str, int, float], dict[int, Cell]] = {}
    for cell in all_cells:
        if paper_surrogate(cell):
            c = cell.config
            groups.setdefault((str(c.get("dataset")), int(c.get("cut", 1)), float(c.get("alpha", 0))), {})[
                int(c.get("clients", 1))] = cell
    out = []
    for (dataset, cut, alpha), by_k in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][2])):
        if 1 not in by_k or len(by_k) < 2:
            continue
        asr = {k: by_k[k].asr for k in sorted(by_k)}
        slope = _slope([(float(k), v) for k, values in asr.items() for v in values])
        change = beyond = None
        if 7 in by_k:
            change = statistics.fmean(asr[7]) - statistics.fmean(asr[1])
            beyond = not (min(asr[1]) - SLACK["asr"] <= statistics.fmean(asr[7]) <= max(asr[1]) + SLACK["asr"])
        out.append(Trend(dataset, cut, alpha, asr, slope, change, beyond))
    return out
