"""What the client-side detectors add to a training step (docs/benchmark.md, "Detectors").

    python bench/defenses.py                 # writes bench/results/defenses-cpu-<date>.json
    python bench/defenses.py --cut 2         # ... defenses-cpu-<date>-cut2.json

LeNet cut at layer 1 (or --cut), one client, batch 128, on MNIST-shaped synthetic images (the
timing does not depend on the pixels), one intra-op thread, the engine's default speed
options. For each variant (no detector, each detector alone, all three) a context is
built and prepared (SplitOut's simulated epoch happens there, before training, and is
not counted), then whole training epochs are timed, the variants interleaved round by
round so that they see the same machine; the result is the median milliseconds per
step and each variant's overhead over no detector. SplitGuard's fake batches skip the
client's update, so its steps are a little cheaper where it fakes one.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/defenses.py` from a fresh clone
    sys.path.insert(0, str(ROOT))

VARIANTS: dict[str, tuple[str, ...]] = {
    "none": (), "splitguard": ("splitguard",), "scrutinizer": ("scrutinizer",), "splitout": ("splitout",),
    "all three": ("splitguard", "scrutinizer", "splitout"),
}


def measure(rounds: int, train_limit: int, threads: int, cut: int = 1) -> dict:
    import torch

    from engine.config import RunConfig, resolve
    from engine.speed.options import EngineOptions
    from engine.training.protocol import train_epoch
    from engine.training.runner import build_context, client_defenses

    torch.set_num_threads(threads)
    contexts, steps = {}, {}
    for name, defenses in VARIANTS.items():
        cfg = resolve(RunConfig(dataset="synthetic", model="lenet", cut=cut, clients=1, batch_size=128,
                                train_limit=train_limit, eval_limit=128, device="cpu", defenses=defenses))
        ctx = build_context(cfg, lambda e: None, None, options=EngineOptions(threads=threads))
        ctx.defenses = client_defenses(ctx)
        contexts[name] = ctx
        steps[name] = -(-len(ctx.data.shares[1]) // cfg.batch_size)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(rounds + 1):
        for name, ctx in contexts.items():
            if ctx.defenses is not None:
                ctx.defenses.start_epoch(r + 1)
            started = time.perf_counter()
            train_epoch(ctx)
            elapsed = time.perf_counter() - started
            if ctx.defenses is not None:
                ctx.defenses.end_epoch()
            if r:  # round 0 warms up
                times[name].append(elapsed / steps[name] * 1e3)
    base = statistics.median(times["none"])
    return {name: {"ms_per_step": statistics.median(ms), "overhead_pct": 100 * (statistics.median(ms) / base - 1),
                   "rounds_ms": ms, "steps_per_epoch": steps[name]} for name, ms in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--train-limit", type=int, default=4000, help="images in the pool (the client gets its share)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cut", type=int, default=1, choices=(1, 2, 3))
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    results = measure(args.rounds, args.train_limit, args.threads, args.cut)
    doc = {"bench": "defenses", "date": _dt.date.today().isoformat(), "device": "cpu",
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
           "setting": f"lenet cut {args.cut}, K=1, batch 128, synthetic 28x28", "rounds": args.rounds, "results": results}
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"defenses-cpu-{doc['date']}{'' if args.cut == 1 else f'-cut{args.cut}'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    for name, res in results.items():
        print(f"{name:12} {res['ms_per_step']:7.2f} ms/step  {res['overhead_pct']:+6.1f}%")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
