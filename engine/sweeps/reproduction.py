"""The paper on record (docs/protocol.md section 13): what the reproduction runs, as parts.

Each part is one or more ordinary sweep grids over the paper's protocol with its defaults
untouched (90 epochs on the whole training set, the LR schedule, early stopping), so its
runs are ordinary run files that any sweep, report or the TUI reads. The parts together
are one sweep (one id, one sweep file, resumable): a point is done when the runs folder
holds a completed run of the same experiment. Pure Python, torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..errors import ConfigError
from .grid import Point, Sweep, expand, make_sweep

PAPER_ALPHAS = "0.5,0.2,0.09,0.06,0.04"
BOTH = "mnist,fmnist"
CUTS = "1,2,3"


@dataclass(frozen=True)
class Part:
    name: str
    what: str                                        # one line: the figure or table and the setting
    grids: tuple[tuple[dict[str, Any], dict[str, Any]], ...]  # (axes, fields) per grid


PARTS: tuple[Part, ...] = (
    Part("fig34", "Figures 3-4: the surrogate attack, LeNet, K = 1, both datasets x cuts 1-3 x five alphas, "
         "seeds 1-3",
         (({"datasets": BOTH, "cuts": CUTS, "clients": "1", "attacks": "surrogate", "alphas": PAPER_ALPHAS,
            "seeds": "1,2,3"}, {}),)),
    Part("fig7", "Figure 7 (BA): no attack, LeNet, K = 1, both datasets x cuts 1-3, seeds 1-3",
         (({"datasets": BOTH, "cuts": CUTS, "clients": "1", "attacks": "none", "seeds": "1,2,3"}, {}),)),
    Part("fig6", "Figure 6: the autoencoder attack as the paper's text describes it, LeNet, K = 1, both datasets "
         "x cuts 1-3, seeds 1-2, the paper's preparation lengths",
         (({"datasets": BOTH, "cuts": CUTS, "clients": "1", "attacks": "autoencoder", "seeds": "1,2"}, {}),)),
    Part("halved", "side cell: the authors' code halves the surrogate's loss (MNIST, cut 1, alpha 0.09, seeds 1-3)",
         (({"datasets": "mnist", "cuts": "1", "clients": "1", "attacks": "surrogate", "alphas": "0.09",
            "seeds": "1,2,3"}, {"loss_halved": True}),)),
    Part("ae-share", "side cell: the autoencoder with the authors' code's share of 25% per batch (MNIST, cut 1, "
         "seeds 1-3)",
         (({"datasets": "mnist", "cuts": "1", "clients": "1", "attacks": "autoencoder", "seeds": "1,2,3"},
           {"ae_share": 0.25}),)),
    Part("ae-code", "side cells: the autoencoder as the trace of the authors' code runs it (--ae-variant code, 25% "
         "share, 100 epochs without early stopping), LeNet, K = 1, both datasets x cuts 1-3, seed 1",
         (({"datasets": BOTH, "cuts": CUTS, "clients": "1", "attacks": "autoencoder", "seeds": "1"},
           {"ae_variant": "code", "ae_share": 0.25, "epochs": 100, "patience": 0}),)),
    Part("appd", "Appendix D: MNIST with 10 000 training images and FMNIST's first five classes, LeNet, cut 1, "
         "K = 1, alpha 0.09, seeds 1-3",
         (({"datasets": "mnist-10k,fmnist-5", "cuts": "1", "clients": "1", "attacks": "surrogate",
            "alphas": "0.09", "seeds": "1,2,3"}, {}),)),
    Part("table3", "Table 3: the transfer check (10 epochs of last-layer retraining on MNIST and on FMNIST) of "
         "every completed MNIST cut-1 run of fig34 (LeNet; the paper used one StripNet run)", ()),
    Part("clients-seeds", "the client axis's ambiguous cells: seeds 2 and 3 wherever the one run of `clients` lands "
         "within 5 ASR points of the agreement boundary (planned from the runs folder)", ()),
    # Cut 2 last: LeNet's cut 2 only moves a parameter-free max-pool across the cut, so its
    # runs repeat cut 1's numbers seed by seed (measured on every K = 1 pair); they still run.
    Part("clients", "Figures 3-4's client axis: K = 3, 5, 7 x both datasets x cuts 1-3 x five alphas, seed 1 "
         "(as the authors)",
         (({"datasets": BOTH, "cuts": "1,3,2", "clients": "3,5,7", "attacks": "surrogate", "alphas": PAPER_ALPHAS,
            "seeds": "1"}, {}),)),
)
PART_NAMES = tuple(p.name for p in PARTS)
# Ambiguous: the authors' ASR this close to the edge of one run's agreement interval (SPEC 13,
# 10 points either side of it), i.e. 5 to 15 points from our one run.
NEAR_EDGE = 5.0
ONE_SEED_ASR_SLACK = 10.0
# What `sltui reproduce run` does when no part is named: the paper on record at K = 1.
DEFAULT_PARTS = ("fig34", "fig7", "fig6", "halved", "ae-share", "ae-code", "appd", "table3")
# Table 3's transfers: the sources (fig34's MNIST cut-1 runs), the targets, the epochs.
TRANSFER_TARGETS = ("mnist", "fmnist")
TRANSFER_EPOCHS = 10


def transfer_sources(config: dict[str, Any]) -> bool:
    """Whether a run's config is one Table 3 checks: fig34's MNIST cut-1 surrogate runs."""
    return (config.get("dataset") == "mnist" and config.get("cut") == 1 and config.get("clients") == 1
            and config.get("attack") == "surrogate" and not config.get("loss_halved")
            and config.get("model") == "lenet")


def parse_parts(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """'fig34,fig7' -> ('fig34', 'fig7'), checked; None -> DEFAULT_PARTS; 'all' -> every part."""
    if text is None:
        return DEFAULT_PARTS
    names = [s.strip() for s in text.split(",")] if isinstance(text, str) else [str(s) for s in text]
    names = [n for n in names if n]
    if names == ["all"]:
        return PART_NAMES
    unknown = [n for n in names if n not in PART_NAMES]
    if unknown or not names:
        raise ConfigError(f"--parts: unknown part {unknown[0]!r}; parts are {', '.join(PART_NAMES)} or all"
                          if unknown else "--parts needs at least one part")
    return tuple(dict.fromkeys(names))


def part_points(name: str, base: dict[str, Any]) -> list[Point]:
    """The points of one part, with `base` (device, data root: fields that change no number)."""
    part = next(p for p in PARTS if p.name == name)
    points: dict[str, Point] = {}
    for axes, fields_ in part.grids:
        for point in expand(make_sweep({"models": "lenet", **axes}, {**fields_, **base})):
            points.setdefault(point.key, point)
    return list(points.values())


def reproduction_sweep(parts: Iterable[str], base: dict[str, Any],
                       datasets: Iterable[str] | None = None) -> tuple[Sweep, list[Point]]:
    """The parts as one sweep (its id names the parts, the datasets kept and `base`) and
    its points in the parts' order, each experiment once; with `datasets`, only the
    points on those datasets (a machine that holds only some of them)."""
    names = parse_parts(list(parts))
    keep = tuple(datasets) if datasets is not None else None
    points: dict[str, Point] = {}
    for name in names:
        for point in part_points(name, base):
            if keep is None or point.config.dataset in keep:
                points.setdefault(point.key, point)
    grid: dict[str, tuple] = {"parts": names, **({"datasets": keep} if keep is not None else {})}
    return Sweep(grid=grid, base=dict(base)), list(points.values())


def parts_by_key() -> dict[str, str]:
    """Experiment key -> the part that plans it (the first, in PARTS' order): which part a
    run file belongs to, whatever its device or data root."""
    out: dict[str, str] = {}
    for part in PARTS:
        for point in part_points(part.name, {}):
            out.setdefault(point.key, part.name)
    return out


def ambiguous(ours: float, authors: float | None) -> bool:
    """Whether one run's ASR lands within NEAR_EDGE points of the agreement boundary."""
    return authors is not None and abs(abs(authors - ours) - ONE_SEED_ASR_SLACK) <= NEAR_EDGE


def more_seeds_points(configs_and_authors: Iterable[tuple[dict[str, Any], float, float | None]],
                      base: dict[str, Any]) -> list[Point]:
    """The `clients-seeds` part: for each (config of a completed `clients` run with seed 1, its
    ASR, the authors' ASR) that is ambiguous, the same setting with seeds 2 and 3."""
    points: dict[str, Point] = {}
    for config, ours, authors in configs_and_authors:
        if int(config.get("clients", 1)) == 1 or int(config.get("seed", 0)) != 1 or not ambiguous(ours, authors):
            continue
        axes = {"datasets": str(config["dataset"]), "models": str(config["model"]), "cuts": str(config["cut"]),
                "clients": str(config["clients"]), "attacks": "surrogate", "alphas": str(config["alpha"]), "seeds": "2,3"}
        for point in expand(make_sweep(axes, dict(base))):
            points.setdefault(point.key, point)
    return list(points.values())
