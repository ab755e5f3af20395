"""Who is guilty, when: the arena's verdicts and statistics (docs/protocol.md section 11).
Pure functions over run documents; the CLI's report, the heatmap, the TUI's arena view and
the runs browser all call them, and none derives a verdict of its own.

* A run's server is malicious from its attack's start epoch (the run file's
  `attack_start_epoch`: 1 for the surrogate and the autoencoder, the first epoch after the
  hijack's warm-up), honest before it and throughout `none` and `client` runs.
* One run and one detector give one verdict: `detected` (first flag while the server is
  malicious), `false_accusation` (first flag while it is honest), `missed` (malicious,
  never flagged) or `quiet` (honest, never flagged).
* Counting keeps one run per (point, seed), the newest; a cell is a setting, an attack (with
  its options) and a detector. Rates are k/n with a 95% Wilson interval, means come with
  their standard deviation and n.
* False accusations are counted per run (the verdict) and per epoch: of the epochs a run
  trained while its server was honest, those in which the detector flagged at some step
  (the unit SplitOut's authors count false positives in; epochs of one run are not
  independent, so that interval is narrower than the evidence). A cell counts epochs only
  when every run's file says which epochs were flagged.
* Caught before live: a detection whose first flag came in an epoch strictly before the
  first epoch with ASR >= LIVE_ASR; a first flag in that same epoch is counted apart, as
  caught as it went live (the flag and the working backdoor arrive in one epoch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..config import ATTACK_FIELDS, ATTACKS, TRAINING_DEFENSES, attack_start_epoch, honest_clients
from .aggregate import mean_std, metric
from .grid import experiment_key

VERDICTS = ("detected", "false_accusation", "missed", "quiet")
# Attacks whose server never turns malicious (`none`; `client`, where a client attacks):
# their rows hold false accusations only.
HONEST_SERVER_ATTACKS = tuple(a for a in ATTACKS if attack_start_epoch({"attack": a}) is None)
SETTING = ("dataset", "model", "cut", "clients")
# Runs whose ASR reached this (percent) carry a working backdoor: a flag after it protects nobody.
LIVE_ASR = 50.0
Z95 = 1.959963984540054

RUN_COLUMNS = ("run_id", "dataset", "model", "cut", "clients", "attack", "variant", "detector", "seed", "server",
               "attack_start_epoch", "flag_epoch", "flag_step", "verdict", "honest_epochs", "accused_epochs",
               "live_epoch", "caught_before_live", "caught_as_live", "asr", "cda", "baseline_cda", "cost_cda", "reacting_run", "asr_reacting", "cda_reacting", "epochs")
CELL_COLUMNS = ("dataset", "model", "cut", "clients", "attack", "variant", "detector", "runs", "malicious_runs",
                "detected", "false_accusations", "detection_rate", "detection_ci_low", "detection_ci_high",
                "false_accusation_rate", "false_accusation_ci_low", "false_accusation_ci_high",
                "honest_epochs", "accused_epochs", "epoch_counted_runs", "accused_epoch_rate",
                "accused_epoch_ci_low", "accused_epoch_ci_high",
                "latency_epochs", "latency_std", "latency_n", "caught_before_live", "caught_as_live",
                "caught_before_live_of",
                "cost_cda", "cost_cda_std", "cost_cda_n", "asr", "asr_std", "cda", "cda_std",
                "asr_reacting", "asr_reacting_std", "asr_reacting_n", "cda_reacting", "cda_reacting_std", "epochs")
FRONTIER_COLUMNS = ("dataset", "model", "cut", "clients", "attack", "variant", "hijack_beta", "hijack_critic",
                    "hijack_warmup_epochs", "detector", "runs", "malicious_runs", "detected", "false_accusations", "detection_rate",
                    "detection_ci_low", "detection_ci_high", "asr", "asr_std", "cda", "cda_std", "clean_cda",
                    "cda_gap", "qualifies")
# The frontier's bar for an attack that works (docs/protocol.md section 12): ASR at least
# this, and CDA no more than CDA_SLACK points under the clean run's.
WORKING_ASR, CDA_SLACK = 90.0, 3.0
HIJACK_KNOBS = ("hijack_beta", "hijack_critic", "hijack_warmup_epochs")


@dataclass(frozen=True)
class Verdict:
    detector: str
    verdict: str                 # one of VERDICTS
    server: str                  # honest | malicious, as the run ended
    attack_start_epoch: int | None
    flag_epoch: int | None
    flag_step: int | None
    flag_client: int | None
    honest_epochs: int = 0           # epochs the run trained while its server was honest
    accused_epochs: int | None = None  # of those, the ones with a flag; None: the run file does not say


def wilson(k: int, n: int) -> tuple[float | None, float | None]:
    """The 95% Wilson score interval of k successes in n trials, as fractions; (None, None)
    for n = 0."""
    if n <= 0:
        return None, None
    if k == 0 or k == n:  # closed form at the ends, free of rounding: 0 and 1 are inside exactly
        edge = n / (n + Z95 ** 2)
        return (0.0, 1.0 - edge) if k == 0 else (edge, 1.0)
    p = k / n
    denominator = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_std_n(values: Iterable[Any]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (0 for one value) and n of the numbers among `values`
    (aggregate.mean_std over them)."""
    numbers = [float(v) for v in values
               if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)]
    return (*mean_std(numbers), len(numbers))


def start_epoch(doc: Mapping[str, Any]) -> int | None:
    """The run's attack start epoch: as recorded, else (older run files) from its config."""
    if "attack_start_epoch" in doc:
        value = doc.get("attack_start_epoch")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
    config = doc.get("config")
    return attack_start_epoch(config) if isinstance(config, dict) else None


def epochs_run(doc: Mapping[str, Any]) -> int:
    """How many epochs the run trained: its `epochs` list, or (a summary without it, such
    as the run index keeps) its `epochs_run`."""
    epochs = doc.get("epochs")
    if isinstance(epochs, list):
        return len(epochs)
    count = doc.get("epochs_run")
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def honest_epochs(doc: Mapping[str, Any], start: int | None) -> int:
    """How many epochs the run trained while its server was honest: all of them without a
    server-side attack (`start` None), the epochs before `start` otherwise."""
    trained = epochs_run(doc)
    return trained if start is None else max(0, min(trained, start - 1))


def accused_epochs(entry: Mapping[str, Any], flag: Mapping[str, Any] | None, start: int | None) -> int | None:
    """Of the epochs before `start` (all, for None), how many the detector flagged at some
    step: from its `flagged_epochs`; a run file without them says so only when the detector
    never flagged, or first flagged from `start` on (0), else None."""
    epochs = entry.get("flagged_epochs")
    if isinstance(epochs, list):
        return sum(1 for e in epochs if isinstance(e, int) and (start is None or e < start))
    first = flag.get("epoch") if flag else None
    if flag is None or (start is not None and isinstance(first, int) and first >= start):
        return 0
    return None


def run_verdicts(doc: Mapping[str, Any]) -> dict[str, Verdict]:
    """Per detector the run recorded, its verdict (docs/protocol.md section 11) and its
    false accusations per epoch."""
    start = start_epoch(doc)
    reached = start is not None and epochs_run(doc) >= start  # trained through the attack's first epoch
    honest = honest_epochs(doc, start)
    out: dict[str, Verdict] = {}
    defenses = doc.get("defenses")
    for name, entry in (defenses.items() if isinstance(defenses, dict) else ()):
        flag = entry.get("flagged_at") if isinstance(entry, dict) else None
        flag = flag if isinstance(flag, dict) else None
        epoch = flag.get("epoch") if flag else None
        # A flag in the start epoch of a run still in it: the server had turned by then.
        malicious = reached or (start is not None and isinstance(epoch, int) and epoch >= start)
        if flag is not None and isinstance(epoch, int):
            verdict = "detected" if start is not None and epoch >= start else "false_accusation"
        else:
            verdict = "missed" if malicious else "quiet"
        out[str(name)] = Verdict(str(name), verdict, "malicious" if malicious else "honest", start,
                                 epoch if flag else None, flag.get("step") if flag else None,
                                 flag.get("client") if flag else None, honest,
                                 accused_epochs(entry, flag, start) if isinstance(entry, dict) else None)
    return out


def has_honest_client(config: Mapping[str, Any]) -> bool:
    """Whether any client runs the detectors (not so for the `client` attack with K = 1)."""
    return bool(honest_clients(dict(config)))


def _metric(doc: Mapping[str, Any], name: str) -> float | None:
    return metric(doc, "final", name)


def asr_curve(doc: Mapping[str, Any]) -> list[tuple[int, float]]:
    """(epoch, ASR) of every epoch with a number for its ASR: from the run's `epochs`, or
    (a summary without them, such as the run index keeps) from its `asr_curve`."""
    epochs = doc.get("epochs")
    if isinstance(epochs, list):
        pairs = [(r.get("epoch"), r.get("asr")) for r in epochs if isinstance(r, dict)]
    else:
        pairs = [tuple(p) for p in doc.get("asr_curve") or [] if isinstance(p, (list, tuple)) and len(p) == 2]
    return [(int(e), float(a)) for e, a in pairs
            if isinstance(e, int) and isinstance(a, (int, float)) and not math.isnan(a)]


def live_epoch(doc: Mapping[str, Any]) -> int | None:
    """The first epoch whose ASR reached LIVE_ASR, or None."""
    return next((epoch for epoch, asr in asr_curve(doc) if asr >= LIVE_ASR), None)


def reacts(config: Mapping[str, Any]) -> bool:
    """Whether the run's honest clients stop at a flag (--on-flag stop)."""
    return config.get("on_flag") == "stop"


def reacting_outcome(doc: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(ASR, CDA) the honest clients deploy in a reacting run: their local models' means
    where they stopped, the joint model's final values where no detector flagged."""
    reaction = doc.get("reaction")
    if isinstance(reaction, dict) and isinstance(reaction.get("mean"), dict):
        mean = reaction["mean"]
        return mean.get("asr"), mean.get("cda")
    return _metric(doc, "asr"), _metric(doc, "cda")


def newest_per_point(docs: Iterable[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], int]:
    """The completed runs that count, one per (point, seed): where several share an
    experiment key (seed included), the newest (by `created`, then id). Runs without an
    honest client are dropped. Returns (runs, how many completed runs were left out)."""
    newest: dict[str, Mapping[str, Any]] = {}
    left_out = 0
    for doc in docs:
        config = doc.get("config")
        if doc.get("status") != "completed" or not isinstance(config, dict) or doc.get("source_run"):
            continue
        if not has_honest_client(config):
            continue
        key = experiment_key(config)
        old = newest.get(key)
        if old is not None:
            left_out += 1
            if (str(old.get("created") or ""), str(old.get("id"))) >= (str(doc.get("created") or ""), str(doc.get("id"))):
                continue
        newest[key] = doc
    return list(newest.values()), left_out


def untrained_key(config: Mapping[str, Any]) -> str:
    """The key of the run's experiment without any detector. The detectors that only watch
    change no step, so a run with them trains exactly as this one; a run with SplitGuard
    finds here the run its CDA cost is measured against."""
    return experiment_key({**config, "defenses": []})


def variants(configs: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Per attack, its options that take more than one value among the runs' `configs` of
    one setting (SETTING): the cells of that attack are split by them (e.g. the hijack's
    beta in a frontier arena). An option that differs only between settings (the hijack's
    warm-up, resolved per dataset) splits nothing: each setting has its own cells."""
    values: dict[str, dict[str, dict[tuple, set]]] = {}
    for config in configs:
        attack, setting = str(config.get("attack")), tuple(config.get(k) for k in SETTING)
        for name in ATTACK_FIELDS.get(attack, ()):
            values.setdefault(attack, {}).setdefault(name, {}).setdefault(setting, set()).add(repr(config.get(name)))
    return {attack: tuple(n for n, by_setting in fields.items() if any(len(seen) > 1 for seen in by_setting.values()))
            for attack, fields in values.items()}


def variant_label(config: Mapping[str, Any], varying: tuple[str, ...]) -> str:
    return " ".join(f"{name}={config.get(name)}" for name in varying)


def run_rows(docs: Iterable[Mapping[str, Any]],
             varying: Mapping[str, tuple[str, ...]] | None = None) -> tuple[list[dict[str, Any]], int]:
    """runs.csv: one row per counted run and detector (RUN_COLUMNS), and how many completed
    runs were left out as older reruns of a point. `varying` (default: from the runs) names
    per attack the options that split its cells, e.g. from a sweep's planned points."""
    counted, left_out = newest_per_point(docs)
    # Reacting runs (--on-flag stop) train as their continuing twins up to the flag: their
    # verdicts are the twins', so they only add what the clients deploy after reacting.
    reacting = {experiment_key({**d["config"], "on_flag": "continue"}): d for d in counted if reacts(d["config"])}
    counted = [d for d in counted if not reacts(d["config"])]
    baselines: dict[str, Mapping[str, Any]] = {}
    for doc in counted:
        if not any(d in TRAINING_DEFENSES for d in doc["config"].get("defenses") or []):
            baselines.setdefault(untrained_key(doc["config"]), doc)
    varying = variants(d["config"] for d in counted) if varying is None else varying
    rows = []
    for doc in counted:
        cfg = doc["config"]
        base_doc = baselines.get(untrained_key(cfg))
        cda, base_cda = _metric(doc, "cda"), _metric(base_doc, "cda") if base_doc is not None else None
        live = live_epoch(doc)
        twin = reacting.get(experiment_key(cfg))
        asr_reacting, cda_reacting = reacting_outcome(twin) if twin is not None else (None, None)
        for detector, v in run_verdicts(doc).items():
            rows.append({
                "run_id": doc.get("id"), **{k: cfg.get(k) for k in SETTING}, "attack": cfg.get("attack"),
                "variant": variant_label(cfg, varying.get(str(cfg.get("attack")), ())),
                "detector": detector, "seed": cfg.get("seed"), "server": v.server,
                "attack_start_epoch": v.attack_start_epoch, "flag_epoch": v.flag_epoch, "flag_step": v.flag_step,
                "verdict": v.verdict, "honest_epochs": v.honest_epochs, "accused_epochs": v.accused_epochs,
                "live_epoch": live,
                "caught_before_live": (live is None or v.flag_epoch < live) if v.verdict == "detected" else None,
                "caught_as_live": (live is not None and v.flag_epoch == live) if v.verdict == "detected" else None,
                "asr": _metric(doc, "asr"), "cda": cda, "baseline_cda": base_cda,
                "cost_cda": cda - base_cda if cda is not None and base_cda is not None else None,
                "reacting_run": twin.get("id") if twin is not None else None,
                "asr_reacting": asr_reacting, "cda_reacting": cda_reacting,
                "epochs": epochs_run(doc),
                **{k: cfg.get(k) if cfg.get("attack") == "hijack" else None for k in HIJACK_KNOBS},
            })
    rows.sort(key=lambda r: tuple(str(r[k]) for k in (*SETTING, "attack", "variant", "detector"))
              + (r["seed"] if isinstance(r["seed"], int) else 0,))
    return rows, left_out


def cell_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """cells.csv: one row per (setting, attack and variant, detector) of runs.csv's rows
    (CELL_COLUMNS), rates as fractions with their Wilson interval, means with std and n.
    A cell's detection rate counts only runs whose server turned malicious; its
    false-accusation rate counts every run, and is a separate column."""
    cells: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = tuple(row[k] for k in (*SETTING, "attack", "variant", "detector"))
        cells.setdefault(key, []).append(row)
    out = []
    for key, members in cells.items():
        malicious = [r for r in members if r["server"] == "malicious"]
        detected = [r for r in malicious if r["verdict"] == "detected"]
        accused = [r for r in members if r["verdict"] == "false_accusation"]
        d_low, d_high = wilson(len(detected), len(malicious))
        f_low, f_high = wilson(len(accused), len(members))
        # Per epoch: only where every run's file says which epochs were flagged (an older
        # file says so only for a run never flagged; counting those alone would bias it to 0).
        counted = [r for r in members if r.get("accused_epochs") is not None]
        complete = len(counted) == len(members)
        epochs_honest = sum(r["honest_epochs"] for r in counted) if complete else None
        epochs_accused = sum(r["accused_epochs"] for r in counted) if complete else None
        e_low, e_high = wilson(epochs_accused, epochs_honest) if complete else (None, None)
        latency = mean_std_n(r["flag_epoch"] - r["attack_start_epoch"] for r in detected)
        cost, asr, cda, asr_r, cda_r = (mean_std_n(r[c] for r in members)
                                        for c in ("cost_cda", "asr", "cda", "asr_reacting", "cda_reacting"))
        out.append({
            **dict(zip((*SETTING, "attack", "variant", "detector"), key)), "runs": len(members),
            "malicious_runs": len(malicious), "detected": len(detected), "false_accusations": len(accused),
            "detection_rate": len(detected) / len(malicious) if malicious else None,
            "detection_ci_low": d_low, "detection_ci_high": d_high,
            "false_accusation_rate": len(accused) / len(members), "false_accusation_ci_low": f_low,
            "false_accusation_ci_high": f_high,
            "honest_epochs": epochs_honest, "accused_epochs": epochs_accused, "epoch_counted_runs": len(counted),
            "accused_epoch_rate": epochs_accused / epochs_honest if complete and epochs_honest else None,
            "accused_epoch_ci_low": e_low, "accused_epoch_ci_high": e_high,
            "latency_epochs": latency[0], "latency_std": latency[1], "latency_n": latency[2],
            "caught_before_live": sum(1 for r in detected if r["caught_before_live"]),
            "caught_as_live": sum(1 for r in detected if r.get("caught_as_live")),
            "caught_before_live_of": len(detected),
            "cost_cda": cost[0], "cost_cda_std": cost[1], "cost_cda_n": cost[2],
            "asr": asr[0], "asr_std": asr[1], "cda": cda[0], "cda_std": cda[1],
            "asr_reacting": asr_r[0], "asr_reacting_std": asr_r[1], "asr_reacting_n": asr_r[2],
            "cda_reacting": cda_r[0], "cda_reacting_std": cda_r[1],
            "epochs": max(r["epochs"] for r in members),
            **{k: members[0].get(k) for k in HIJACK_KNOBS},
        })
    return out


def frontier_rows(cells: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """frontier.csv: per malicious cell (setting, attack with its variant, detector), the
    detection rate with its interval against mean ASR and the CDA gap to the clean (`none`)
    runs of the same setting and detector; `qualifies` where the attack works (ASR >=
    WORKING_ASR, CDA within CDA_SLACK points of clean). The hijack's knobs are columns of
    their own, read from the runs."""
    cells = list(cells)
    clean = {(*(c[k] for k in SETTING), c["detector"]): c["cda"] for c in cells if c["attack"] == "none"}
    out = []
    for cell in cells:
        if cell["attack"] in HONEST_SERVER_ATTACKS:
            continue
        clean_cda = clean.get((*(cell[k] for k in SETTING), cell["detector"]))
        gap = cell["cda"] - clean_cda if cell["cda"] is not None and clean_cda is not None else None
        out.append({
            **{k: cell[k] for k in (*SETTING, "attack", "variant", "detector", "runs", "malicious_runs", "detected",
                                    "false_accusations", "detection_rate", "detection_ci_low", "detection_ci_high", "asr", "asr_std",
                                    "cda", "cda_std")},
            **{k: cell.get(k) for k in HIJACK_KNOBS},
            "clean_cda": clean_cda, "cda_gap": gap,
            "qualifies": bool(cell["asr"] is not None and cell["asr"] >= WORKING_ASR
                              and gap is not None and gap >= -CDA_SLACK),
        })
    return out


def stealthiest(frontier: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per (setting, detector), the qualifying attack setting with the lowest detection
    rate (then the lower upper bound, then the higher ASR), and the attack settings that
    qualify against every detector their setting ran and that none of them ever flagged
    (an attack setting that fails to work against one detector does not evade it)."""
    frontier = list(frontier)
    ran = {tuple(f[k] for k in SETTING): set() for f in frontier}
    for f in frontier:
        ran[tuple(f[k] for k in SETTING)].add(f["detector"])
    frontier = [f for f in frontier if f["qualifies"] and f["detection_rate"] is not None]
    best: dict[tuple, Mapping[str, Any]] = {}
    for f in frontier:
        key = (*(f[k] for k in SETTING), f["detector"])
        rank = (f["detection_rate"], f["detection_ci_high"], -(f["asr"] or 0))
        if key not in best or rank < (best[key]["detection_rate"], best[key]["detection_ci_high"],
                                      -(best[key]["asr"] or 0)):
            best[key] = f
    by_setting: dict[tuple, list[Mapping[str, Any]]] = {}
    for f in frontier:
        by_setting.setdefault((*(f[k] for k in SETTING), f["attack"], f["variant"]), []).append(f)
    evading = [{"setting": key[:4], "attack": key[4], "variant": key[5],
                "detectors": sorted(f["detector"] for f in members),
                "flagged_before": {f["detector"]: f["false_accusations"] for f in members if f["false_accusations"]}}
               for key, members in by_setting.items()
               if all(f["detected"] == 0 for f in members) and {f["detector"] for f in members} == ran[key[:4]]]
    return {"per_detector": list(best.values()), "evades_all": evading}
