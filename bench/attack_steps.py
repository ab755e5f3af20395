"""What one training step of each attack costs: the hijack attack's Implant step against the
surrogate attack's step and the honest step (docs/benchmark.md, "Attack steps").

    python bench/attack_steps.py                 # CPU, LeNet, cuts 1-3, one thread
    python bench/attack_steps.py --cuts 3 --rounds 9

Each attack gets a run context built by the engine (default EngineOptions, the synthetic
28x28 dataset: a step's cost does not depend on pixel values), the hijack attack brought to
its Implant stage (Steal and Finetune run once, briefly, first). Then whole epochs of the
protocol's own training loop (engine/training/protocol.py train_epoch) are timed, the
attacks interleaved round by round so that they see the same machine load; reported is the
median time per step and its ratio to the surrogate's. Results go to
bench/results/attack-steps-<device>-<date>.json.
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

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.config import RunConfig, resolve  # noqa: E402
from engine.training.protocol import train_epoch  # noqa: E402
from engine.training.runner import build_context  # noqa: E402

ATTACKS = ("none", "surrogate", "hijack")


def context(attack: str, cut: int, batches: int, batch_size: int):
    cfg = resolve(RunConfig(dataset="synthetic", model="lenet", cut=cut, clients=1, attack=attack, epochs=3,
                            batch_size=batch_size, train_limit=2 * batches * batch_size, eval_limit=100,
                            hijack_warmup_epochs=1, hijack_shadow_epochs=1, device="cpu", save_weights=False))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.attack.prepare(ctx)
    ctx.attack.start_epoch(ctx, 1)  # the hijack attack: Steal and Finetune, then Implant
    if attack == "hijack":
        assert ctx.attack.stage == "implant"
    return ctx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", default="1,2,3")
    parser.add_argument("--batches", type=int, default=40, help="steps per timed epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7, help="timed epochs per attack (after one warm-up)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    results = []
    for cut in (int(c) for c in args.cuts.split(",")):
        contexts = {a: context(a, cut, args.batches, args.batch_size) for a in ATTACKS}
        times: dict[str, list[float]] = {a: [] for a in ATTACKS}
        for r in range(args.rounds + 1):
            for attack, ctx in contexts.items():
                started = time.perf_counter()
                train_epoch(ctx)
                if r:  # round 0 warms up
                    times[attack].append((time.perf_counter() - started) / args.batches * 1000)
        for ctx in contexts.values():
            ctx.close()
        ms = {a: statistics.median(t) for a, t in times.items()}
        row = {"cut": cut, "ms_per_step": ms, "per_round_ms": times,
               "hijack_over_surrogate": ms["hijack"] / ms["surrogate"], "hijack_over_none": ms["hijack"] / ms["none"]}
        results.append(row)
        print(f"cut {cut}: ms/step " + "  ".join(f"{a} {v:.2f}" for a, v in ms.items())
              + f"  hijack/surrogate {row['hijack_over_surrogate']:.2f}", flush=True)
    out = args.out or ROOT / "bench" / "results" / f"attack-steps-cpu-{_dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "what": "median ms per training step (protocol train_epoch, default EngineOptions), LeNet, batch "
                f"{args.batch_size}, {args.batches} steps per epoch, {args.rounds} timed epochs per attack, interleaved",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "results": results}, indent=1))
    print(out)


if __name__ == "__main__":
    main()
