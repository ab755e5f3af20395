"""The detectors' false accusations over time (docs/detectors.md): per detector, with the
calibrated and the published parameters, the share of honest runs flagged by each epoch, as
false-accusations.csv and false-accusations.png beside the runs."""
from __future__ import annotations

import csv
from pathlib import Path

from engine.files import read_json
from engine.store import RunStore
from engine.sweeps.calibration import PUBLISHED, false_accusations_by_epoch


def write_false_accusations(runs_dir: Path, calibration: Path) -> list[Path]:
    """false-accusations.csv and .png: per detector and parameter set (calibrated, published),
    the share of the honest runs under `runs_dir` flagged by each epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = [{**e.doc, "status": e.status} for e in RunStore(runs_dir).entries() if e.doc is not None]
    chosen = read_json(calibration, "--calibration")["detectors"]
    rows = []
    for detector in ("splitguard", "scrutinizer", "splitout"):
        for label, params in (("calibrated", chosen[detector]["parameters"]), ("published", PUBLISHED[detector])):
            setting = " ".join(f"{k.split('_', 1)[1]}={v}" for k, v in params.items())
            rows += [{**r, "parameters": label, "setting": setting}
                     for r in false_accusations_by_epoch(docs, detector, params)]
    csv_path, png_path = runs_dir / "false-accusations.csv", runs_dir / "false-accusations.png"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["detector", "parameters", "setting", "epoch", "flagged", "runs",
                                                "rate", "ci_low", "ci_high"])
        writer.writeheader()
        writer.writerows(rows)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, detector in zip(axes, ("splitguard", "scrutinizer", "splitout")):
        for label, style in (("calibrated", "-"), ("published", "--")):
            curve = [r for r in rows if r["detector"] == detector and r["parameters"] == label]
            if not curve:
                continue
            epochs = [r["epoch"] for r in curve]
            ax.plot(epochs, [100 * r["rate"] for r in curve], style, label=f"{label}: {curve[0]['setting']}")
            ax.fill_between(epochs, [100 * r["ci_low"] for r in curve], [100 * r["ci_high"] for r in curve], alpha=0.15)
        ax.set_title(detector, fontsize=10)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    axes[0].set_ylabel("honest runs flagged by epoch (%), 95% CI")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return [csv_path, png_path]
