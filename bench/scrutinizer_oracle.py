"""Gradients Scrutinizer against the authors' own scoring code, on the same gradient streams
(docs/detectors.md, "Gradients Scrutinizer against the authors' code").

    python bench/scrutinizer_oracle.py --code DIR --data-root DIR [--dataset mnist] [--cut 1]
        [--attack none] [--seed 201] [--epochs 9] [--out FILE]

One sltui run (LeNet, one client, Scrutinizer in its published form, traced) is trained;
at every step the per-sample gradients the client receives are also reduced the way the
authors' SL.py reduces them: the similarity 0.5 + 0.5 cos over every ordered pair of
different samples, split by label, mean and population standard deviation (np.std). Those
per-step statistics go, as the authors' file layout [different mean, same mean,
different std, same std], into their `util.detection_score` (imported from DIR, a checkout
of CGCL-codes/GradientsScrutinizer's GradientsScrutinizer/ folder, and run from there;
never copied here), which scores the first 4000 steps at every 50th step:
sigmoid(5 (m_gap m_err m_iou - 0.7)) with lambda 7 and lambda_g 0.6. It returns two
score curves that differ only in the IoU: the branch it applies to its honest run takes
the overlap as min(max) - min(min) (a slip), the branch it applies to FSHA as
min(max) - max(min).

The comparison, checkpoint by checkpoint, with sltui's own scores from the run's trace:
- their two branches against sltui's published form (largest difference, verdicts at 0.5);
- sltui's scoring function (engine/defenses/scrutinizer.py, step_score) on the authors'
  statistics with the authors' indexing (gap and IoU at step i, 0-based, the fits over
  steps 0..i-1), which must equal their correct branch: the formula is the same;
- each difference on its own: the standard deviation (population, as the authors and
  sltui's default, against sample, sltui's runs before `--scrutinizer-std`) and the
  indexing (sltui scores the 50th step with the fits over steps 1..50, as the spec says;
  the authors' code scores the 51st with the fits over the first 50);
- sltui's own scores against sltui's scoring of the authors' statistics with the run's
  standard deviation and sltui's indexing: what is left is float32 rounding (sltui keeps
  a step's statistics in float32).
Writes FILE (JSON) and prints the summary.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STEP = 50          # the authors' checkpoint spacing
HORIZON = 4000     # detection_score keeps the first 4000 steps
THRESHOLD = 0.5


def authors_statistics(grads, labels):
    """(different mean, same mean, different std, same std) of 0.5 + 0.5 cos over ordered
    pairs k != l of one step's per-sample gradients, population std, as SL.py computes them
    (a pair with an all-zero gradient counts as similarity 0, as their get_cos_sim; sltui's
    normalised rows give it 0.5); then the two pair counts and the number of all-zero rows."""
    import numpy as np

    g = grads.detach().flatten(1).double().cpu().numpy()
    y = labels.detach().cpu().numpy()
    norms = np.linalg.norm(g, axis=1)
    denominator = np.outer(norms, norms)
    sim = np.where(denominator != 0, 0.5 + 0.5 * (g @ g.T) / np.where(denominator != 0, denominator, 1.0), 0.0)
    off = ~np.eye(len(y), dtype=bool)
    same = (y[:, None] == y[None, :]) & off
    different = (y[:, None] != y[None, :]) & off
    return (sim[different].mean(), sim[same].mean(), sim[different].std(), sim[same].std(),
            int(different.sum()), int(same.sum()), int((norms == 0).sum()))


def record_run(args: argparse.Namespace) -> tuple[list[tuple[float, ...]], list[float], list[float], str]:
    """Train the run; return the authors' statistics per scored step, sltui's published
    and windowed scores per checkpoint (from its trace) and the run's standard deviation."""
    from engine.config import RunConfig
    from engine.defenses import scrutinizer as module
    from engine.events import DefenseScores
    from engine.training.runner import run

    stats: list[tuple[float, ...]] = []
    original = module.Scrutinizer.observe

    def observe(self, obs):  # the same steps sltui scores: not fake, with pairs of both kinds
        if not obs.fake and module.pair_statistics(obs.cut_grad, obs.labels) is not None:
            stats.append(authors_statistics(obs.cut_grad, obs.labels))
        return original(self, obs)

    published: list[float] = []
    windowed: list[float] = []

    def emit(event):
        if isinstance(event, DefenseScores):
            (trace,) = event.defenses["scrutinizer"]["trace"]
            published.extend(trace["published"])
            windowed.extend(trace["windowed"])

    cfg = RunConfig(dataset=args.dataset, model="lenet", cut=args.cut, clients=1, attack=args.attack, seed=args.seed,
                    epochs=args.epochs, defenses=("scrutinizer",), scrutinizer_form="published", defense_trace=True,
                    save_weights=False, device="cpu", data_root=str(args.data_root))
    module.Scrutinizer.observe = observe
    try:
        run(cfg, emit=emit)
    finally:
        module.Scrutinizer.observe = original
    return stats, published, windowed, cfg.scrutinizer_std


def their_scores(code: Path, stats) -> tuple[Any, Any]:
    """Their detection_score on the statistics, in a scratch folder (it saves its plots
    there): (the branch with the correct IoU, the branch with the slip)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    sys.path.insert(0, str(code))
    import util as theirs  # noqa: E402  (GradientsScrutinizer/util.py from the checkout)

    layout = np.array(stats)[:, :4].T  # rows: different mean, same mean, different std, same std
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            np.save("stream", layout)
            correct, slipped = theirs.detection_score("stream", "stream")
        finally:
            os.chdir(here)
    return correct, slipped


def rescored(stats, std: str, indexing: str) -> list[float]:
    """sltui's scoring (its _score and fit_rmse) over the authors' statistics at every
    checkpoint: `std` "population" (as recorded) or "sample" (times sqrt(n / (n - 1)) with
    the step's pair counts, as sltui's pair_statistics), `indexing` "authors" (gap and IoU
    at 0-based step i, fits over 0..i-1) or "sltui" (step i - 1, fits over 0..i-1)."""
    import numpy as np

    from engine.defenses.scrutinizer import _score, fit_rmse

    arr = np.array(stats, dtype=np.float64)  # columns: d_mean, s_mean, d_std, s_std, d_pairs, s_pairs
    history = np.stack([arr[:, 1], arr[:, 3], arr[:, 0], arr[:, 2]], axis=1)  # sltui's (mean_s, std_s, mean_d, std_d)
    if std == "sample":
        history[:, 1] *= np.sqrt(arr[:, 5] / (arr[:, 5] - 1))
        history[:, 3] *= np.sqrt(arr[:, 4] / (arr[:, 4] - 1))
    out = []
    for i in range(STEP, min(len(history), HORIZON), STEP):
        fits = history[:i]
        err = (fit_rmse(fits[:, 0]) + fit_rmse(fits[:, 2])) / 2
        at = history[i] if indexing == "authors" else history[i - 1]
        out.append(_score(*(float(v) for v in at), err=err).ds)
    return out


def compare(a: list[float], b: list[float]) -> dict[str, Any]:
    """Checkpoint by checkpoint: the largest difference (the step of that checkpoint and
    both scores there) and how many verdicts at 0.5 differ."""
    n = min(len(a), len(b))
    diffs = [abs(x - y) for x, y in zip(a[:n], b[:n])]
    worst = max(range(n), key=diffs.__getitem__) if diffs else None
    return {"checkpoints": n, "max_abs_diff": diffs[worst] if diffs else None,
            "at_step": (worst + 1) * STEP if diffs else None,
            "scores_there": [a[worst], b[worst]] if diffs else None,
            "verdicts_differ": sum((x < THRESHOLD) != (y < THRESHOLD) for x, y in zip(a[:n], b[:n]))}


def flagged(scores: list[float]) -> dict[str, Any]:
    below = [j for j, s in enumerate(scores, start=1) if s < THRESHOLD]
    return {"checkpoints": len(scores), "below_threshold": len(below),
            "first_below_step": below[0] * STEP if below else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--code", type=Path, required=True, help="CGCL-codes/GradientsScrutinizer's GradientsScrutinizer/ folder")
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--cut", type=int, default=1)
    p.add_argument("--attack", default="none")
    p.add_argument("--seed", type=int, default=201)
    p.add_argument("--epochs", type=int, default=21, help="enough steps for the authors' 4000 (196 a K=1 epoch)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    stats, published, windowed, std = record_run(args)
    correct, slipped = their_scores(args.code, stats)
    correct, slipped = [float(v) for v in correct], [float(v) for v in slipped]
    # sltui's checkpoint j scores its 50j-th step: the same steps as the authors' checkpoint 50j.
    ours = published[:len(correct)]
    variants = {f"{std} std, {indexing} indexing": rescored(stats, std, indexing)
                for std in ("population", "sample") for indexing in ("authors", "sltui")}
    result = {
        "run": {"dataset": args.dataset, "cut": args.cut, "attack": args.attack, "seed": args.seed,
                "epochs": args.epochs, "steps": len(stats), "scrutinizer_std": std,
                "steps_with_zero_gradient_rows": sum(1 for row in stats if row[6]),
                "first_step_with_zero_gradient_rows": next((i + 1 for i, row in enumerate(stats) if row[6]), None)},
        "theirs_correct_iou": flagged(correct), "theirs_slipped_iou": flagged(slipped), "sltui_published": flagged(ours),
        "sltui_published_whole_run": flagged(published),
        "sltui_vs_theirs_correct": compare(ours, correct), "sltui_vs_theirs_slipped": compare(ours, slipped),
        "variants_vs_theirs_correct": {k: compare(v, correct) for k, v in variants.items()},
        "sltui_vs_its_own_scoring": compare(ours, variants[f"{std} std, sltui indexing"]),
        "scores": {"theirs_correct_iou": correct, "theirs_slipped_iou": slipped, "sltui_published": ours},
    }
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "scores"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
