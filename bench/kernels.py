"""Microbenchmark of the engine's CPU building blocks against the stock ops they replace.

    python bench/kernels.py                  # writes bench/results/kernels-cpu-<date>.json

One intra-op thread (what each of the engine's two CPU streams has), LeNet's shapes:
the 2x2 max-pool forward+backward on the server's input (256x6x24x24), the first conv
with its ReLU forward (128x1x28x28 -> 6x24x24), and one Adam step over LeNet's server
parameters. Each is timed as the median of `--reps` rounds of `--inner` calls, the
variants interleaved round by round so that they see the same machine; glibc's malloc
is tuned as the engine tunes it (EngineOptions.malloc_tuning) for every variant.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/kernels.py` from a fresh clone
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def time_variants(variants: dict[str, Callable[[], object]], reps: int, inner: int) -> dict[str, float]:
    """Median milliseconds per call of each variant, rounds interleaved."""
    for fn in variants.values():  # warm-up (and numba's compilation)
        for _ in range(3):
            fn()
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            started = time.perf_counter()
            for _ in range(inner):
                fn()
            rounds[name].append((time.perf_counter() - started) / inner * 1e3)
    return {name: statistics.median(ms) for name, ms in rounds.items()}


def pool_variants() -> dict[str, Callable[[], object]]:
    from engine.speed.fastops import CompiledMaxPool2x2, MaxPool2x2

    x = torch.relu(torch.randn(256, 6, 24, 24, generator=torch.Generator().manual_seed(0)))
    grad = torch.randn(256, 6, 12, 12, generator=torch.Generator().manual_seed(1))

    def fwd_bwd(pool):
        def run():
            leaf = x.detach().requires_grad_()
            torch.autograd.grad(pool(leaf), leaf, grad)
        return run

    return {"stock F.max_pool2d": fwd_bwd(lambda t: F.max_pool2d(t, 2)),
            "tensor ops (MaxPool2x2)": fwd_bwd(MaxPool2x2.apply),
            "compiled (kernels.py)": fwd_bwd(CompiledMaxPool2x2.apply)}


def conv_variants() -> dict[str, Callable[[], object]]:
    from engine.speed import kernels

    g = torch.Generator().manual_seed(2)
    x = torch.rand(128, 1, 28, 28, generator=g)
    w, b = torch.randn(6, 1, 5, 5, generator=g) * 0.2, torch.randn(6, generator=g) * 0.1
    return {"stock conv2d + relu": lambda: torch.relu(F.conv2d(x, w, b)),
            "compiled (kernels.py)": lambda: kernels.conv_relu_forward(x, w, b)}


def adam_variants() -> dict[str, Callable[[], object]]:
    from engine.models import build_split
    from engine.speed.adam import LeanAdam

    def server_with(make_opt):
        torch.manual_seed(0)
        _, server = build_split("lenet", 1, (1, 28, 28), 10)
        params = list(server.parameters())
        for p in params:
            p.grad = torch.randn_like(p)
        return make_opt(params).step

    return {"torch Adam(fused=True)": server_with(lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4, fused=True)),
            "LeanAdam (adam.py)": server_with(lambda p: LeanAdam(p, lr=1e-3, weight_decay=1e-4))}


def main(argv: list[str] | None = None) -> int:
    from bench.run import _device_name, _git_commit
    from engine.speed import kernels

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--inner", type=int, default=20)
    p.add_argument("--out", default=None, help="default bench/results/kernels-cpu-<date>.json")
    args = p.parse_args(argv)
    if not kernels.AVAILABLE:
        print("error: numba is not importable here; the compiled kernels cannot be measured", file=sys.stderr)
        return 2
    from engine.speed.options import tune_malloc

    tune_malloc()  # as the engine does by default (EngineOptions.malloc_tuning)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measured = {
            "max-pool 2x2 forward+backward, 256x6x24x24": time_variants(pool_variants(), args.reps, args.inner),
            "conv 1->6 5x5 + ReLU forward, 128x1x28x28": time_variants(conv_variants(), args.reps, args.inner),
            "Adam step, LeNet server (cut 1) parameters": time_variants(adam_variants(), args.reps, args.inner * 10),
        }
    finally:
        torch.set_num_threads(before)
    print(f"one intra-op thread; {_device_name('cpu')}; torch {torch.__version__}; median ms per call")
    for op, variants in measured.items():
        print(op)
        base = next(iter(variants.values()))
        for name, ms in variants.items():
            print(f"  {name:28s} {ms:8.3f} ms  {base / ms:5.2f}x")
    doc = {"created": _dt.datetime.now().isoformat(timespec="seconds"),
           "command": "python bench/kernels.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "device": "cpu", "device_name": _device_name("cpu"), "engine_commit": _git_commit(),
           "torch": torch.__version__, "threads": 1, "load": os.getloadavg(), "reps": args.reps,
           "inner": args.inner, "median_ms_per_call": measured}
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"kernels-cpu-{_dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
