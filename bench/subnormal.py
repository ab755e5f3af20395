"""Subnormal floats on the CPU: whole runs, late-training steps and single ops, flush on and off.

    python bench/subnormal.py run [--epochs 90] [--epochs-off 40]   # two runs side by side
    python bench/subnormal.py replay RUN_DIR                          # steps from a run's final weights
    python bench/subnormal.py ops                                     # which ops slow down

`run` trains LeNet MNIST cut 3, K=1, surrogate alpha 0.09, seed 2 (the setting where the
slowdown was found) twice at the same time, one intra-op thread each, so both see the
same machine load: once with EngineOptions.flush_subnormals on (the default) and once
off. It stores every epoch's wall seconds and CPU seconds (the process's, one thread:
not inflated when other work shares the cores) and reports, for each, the median of
epochs 2-5 and every later epoch's ratio to it. The "on" run keeps its weights for `replay`.
`replay` loads a finished run's final weights and times training steps at the run's last
learning rate with the flush on and off (interleaved rounds, one thread), and counts the
subnormal values in the gradients and Adam's second moments.
`ops` times single forward+backward ops and an Adam step with operands in the normal
range and in the subnormal range (StripNet's ELU and BatchNorm included).
Results go to bench/results/subnormal-<mode>-cpu-<date>.json; docs/benchmark.md explains them.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one intra-op thread: no workers to reach

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/subnormal.py` from a fresh clone
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine.config import RunConfig, lr_multiplier, resolve  # noqa: E402
from engine.speed.flush import set_flush, subnormals_survive  # noqa: E402
from engine.speed.options import EngineOptions  # noqa: E402

SETTING = dict(dataset="mnist", model="lenet", cut=3, clients=1, attack="surrogate", alpha=0.09, seed=2, device="cpu")
TINY = torch.finfo(torch.float32).tiny  # smallest normal float32, about 1.18e-38


def _out_path(mode: str, given: str | None) -> Path:
    if given:
        return Path(given)
    return ROOT / "bench" / "results" / f"subnormal-{mode}-cpu-{_dt.date.today().isoformat()}.json"


def _header() -> dict:
    from bench.run import _device_name, _git_commit

    return {"created": _dt.datetime.now().isoformat(timespec="seconds"), "command": "python " + " ".join(sys.argv),
            "device_name": _device_name("cpu"), "cpus": os.cpu_count(), "torch": torch.__version__,
            "engine_commit": _git_commit(), "platform": platform.platform(), "load_start": os.getloadavg()}


def _write(doc: dict, out: Path) -> None:
    doc["load_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


# ------------------------------------------------------------------ run: two whole runs
def one_run(flush: bool, epochs: int, data_root: str | None, runs_dir: str) -> int:
    """A worker process: the setting for `epochs` epochs into `runs_dir` (its run file)."""
    from engine.training.runner import run
    from engine.store import RunStore

    from engine.events import EpochMetrics, RunStarted

    cfg = RunConfig(**SETTING, epochs=epochs, data_root=data_root, save_weights=flush,
                    name=f"subnormal bench, flush {'on' if flush else 'off'}")
    record = RunStore(runs_dir).recorder()
    cpu_seconds: list[float] = []
    last = [0.0]
    run_dir: list[Path] = []

    def emit(event) -> None:
        # CPU seconds of this one-thread process per epoch: unlike wall time, not
        # inflated by other work sharing the cores.
        now = time.process_time()
        if isinstance(event, RunStarted):
            run_dir.append(Path(runs_dir) / event.run_id)
        if isinstance(event, EpochMetrics):
            cpu_seconds.append(now - last[0])
        if isinstance(event, (RunStarted, EpochMetrics)):
            last[0] = time.process_time()
        record(event)
        if run_dir and isinstance(event, EpochMetrics):
            (run_dir[0] / "cpu_seconds.json").write_text(json.dumps(cpu_seconds))

    result = run(cfg, emit, options=EngineOptions(flush_subnormals=flush))
    return 0 if result.status == "completed" else 1


def summarise(seconds: list[float]) -> dict:
    """Median of epochs 2-5 and each epoch's ratio to it."""
    base = statistics.median(seconds[1:5])
    ratios = [s / base for s in seconds]
    later = ratios[5:]
    return {"median_epochs_2_5_s": base, "ratios": ratios, "max_ratio_after_5": max(later) if later else None,
            "epochs_over_1_3x": [i + 1 for i, r in enumerate(ratios) if i >= 5 and r > 1.3],
            "total_s": sum(seconds)}


def mode_run(args) -> int:
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="sltui-subnormal-")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {flush: subprocess.Popen([sys.executable, __file__, "one", "--flush", "on" if flush else "off",
                                      "--epochs", str(args.epochs if flush else (args.epochs_off or args.epochs)),
                                      "--runs-dir", runs_dir] + (["--data-root", args.data_root] if args.data_root else []),
                                     env=env)
             for flush in (True, False)}
    codes = {flush: p.wait() for flush, p in procs.items()}
    doc = {**_header(), "setting": SETTING, "runs_dir": runs_dir, "threads_per_run": 1, "runs": {}}
    for run_file in sorted(Path(runs_dir).glob("*/run.json")):
        record = json.loads(run_file.read_text())
        flush = record["env"]["engine_options"]["flush_subnormals"]
        seconds = [e["seconds"] for e in record["epochs"]]
        cpu_seconds = json.loads((run_file.parent / "cpu_seconds.json").read_text())
        doc["runs"]["on" if flush else "off"] = {
            "run_id": record["id"], "status": record["status"], "epochs": len(seconds),
            "cda": [e["cda"] for e in record["epochs"]], "asr": [e["asr"] for e in record["epochs"]],
            "wall": {"seconds": seconds, **summarise(seconds)},
            "cpu": {"seconds": cpu_seconds, **summarise(cpu_seconds)}}
    for name, r in doc["runs"].items():
        for clock in ("wall", "cpu"):
            c = r[clock]
            print(f"flush {name} ({clock}): {r['epochs']} epochs, {c['total_s']:.0f} s, median epochs 2-5 "
                  f"{c['median_epochs_2_5_s']:.2f} s, slowest later epoch {c['max_ratio_after_5']:.2f}x")
        print(f"flush {name}: final CDA {r['cda'][-1]:.2f} ASR {r['asr'][-1]:.2f}")
    _write(doc, _out_path("run", args.out))
    return 0 if all(c == 0 for c in codes.values()) else 1


# ------------------------------------------------------------------ replay: late steps
def _subnormal_count(tensors) -> tuple[int, int]:
    n = sub = 0
    for t in tensors:
        t = t.detach()
        n += t.numel()
        sub += int(((t != 0) & (t.abs() < TINY)).sum())
    return sub, n


def mode_replay(args) -> int:
    from engine.training.protocol import train_epoch
    from engine.training.runner import build_context, set_epoch_lr

    run_dir = Path(args.run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    weights = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    steps = args.steps
    cfg = resolve(RunConfig.from_dict(record["config"])).replace(
        train_limit=2 * steps * 128, epochs=1, data_root=args.data_root or record["config"].get("data_root"))
    lr = cfg.lr * lr_multiplier(cfg, record["epochs"][-1]["epoch"] - 1)
    timings: dict[str, list[float]] = {"on": [], "off": []}
    counts = {}
    for r in range(args.rounds + 1):
        for name in ("on", "off"):
            set_flush(name == "on")
            ctx = build_context(cfg, lambda e: None, None, options=EngineOptions(streams=False))
            ctx.client.load_state_dict(weights["client"])
            ctx.server.load_state_dict(weights["server"])
            ctx.attack.prepare(ctx)
            set_epoch_lr(ctx, lr)
            assert ctx.options.flush_subnormals == (name == "on") and (subnormals_survive() == 0) == (name == "on")
            started = time.perf_counter()
            stats = train_epoch(ctx)
            elapsed = time.perf_counter() - started
            if r:  # round 0 warms up
                timings[name].append(1000 * elapsed / (stats.samples / cfg.batch_size))
            if r == args.rounds:
                params = [p for m in (ctx.client, ctx.server) for p in m.parameters()]
                states = [s["exp_avg_sq"] for opt in [*ctx.client_opts, ctx.server_opt] for s in opt.state.values()]
                counts[name] = {"grads": _subnormal_count(p.grad for p in params if p.grad is not None),
                                "exp_avg_sq": _subnormal_count(states)}
            ctx.close()
    set_flush(True)
    doc = {**_header(), "source_run": record["id"], "source_epochs": len(record["epochs"]), "lr": lr,
           "steps_per_round": steps, "rounds": args.rounds, "ms_per_step": timings,
           "median_ms_per_step": {k: statistics.median(v) for k, v in timings.items()},
           "subnormal_values_after_last_round": {k: {part: {"subnormal": s, "of": n} for part, (s, n) in v.items()}
                                                 for k, v in counts.items()}}
    m = doc["median_ms_per_step"]
    print(f"replay of {record['id']} at lr {lr:g}: flush on {m['on']:.1f} ms/step, off {m['off']:.1f} ms/step "
          f"({m['off'] / m['on']:.2f}x); subnormal values (off): {counts['off']}")
    _write(doc, _out_path("replay", args.out))
    return 0


# ------------------------------------------------------------------ ops: which ops
def _ops():
    """(name, make(scale) -> a closure running the op once) for each op timed."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    def conv(scale):
        x, w = rand(128, 6, 12, 12).requires_grad_(), (rand(16, 6, 5, 5) * 0.1).requires_grad_()
        go = rand(128, 16, 8, 8) * scale
        return lambda: torch.autograd.grad(F.conv2d(x, w), (x, w), go)

    def linear(scale):
        x, w = rand(128, 256).requires_grad_(), (rand(120, 256) * 0.1).requires_grad_()
        go = rand(128, 120) * scale
        return lambda: torch.autograd.grad(F.linear(x, w), (x, w), go)

    def elu(scale):
        # StripNet's activation: inputs far below zero make exp(x) - 1 underflow towards -1
        # through subnormal exp(x) values when scale is 0 (x around -95).
        x = (rand(128, 32, 28, 28) - (95.0 if scale == 0 else 0.0)).requires_grad_()
        go = rand(128, 32, 28, 28)
        return lambda: torch.autograd.grad(F.elu(x), x, go)

    def batchnorm(scale):
        x = (rand(128, 32, 28, 28) * (scale if scale else 1.0)).requires_grad_()
        w, b = torch.ones(32, requires_grad=True), torch.zeros(32, requires_grad=True)
        go = rand(128, 32, 28, 28) * (scale if scale else 1.0)
        return lambda: torch.autograd.grad(F.batch_norm(x, None, None, w, b, training=True), (x, w, b), go)

    def adam(scale):
        params = [torch.zeros(n, requires_grad=True) for n in (30720, 10080, 850)]
        for p in params:
            p.grad = rand(p.numel()) * scale
        opt = torch.optim.Adam(params, lr=1e-7, weight_decay=1e-4, fused=True)
        opt.step()
        return opt.step

    return [("conv 6->16 5x5 backward (LeNet)", conv), ("linear 256->120 backward", linear),
            ("ELU forward+backward (StripNet)", elu), ("BatchNorm forward+backward (StripNet)", batchnorm),
            ("Adam step (LeNet sizes)", adam)]


def mode_ops(args) -> int:
    torch.set_num_threads(1)
    rows = []
    for name, make in _ops():
        row = {"op": name}
        # normal operands; subnormal ones (gradients around 1e-39, ELU inputs near -95)
        for operands, scale in (("normal", 1.0), ("subnormal", 0.0 if "ELU" in name else 1e-39)):
            for flush in (False, True):
                set_flush(flush)
                fn = make(scale)
                fn()
                times = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    fn()
                    times.append(1000 * (time.perf_counter() - started))
                row[f"{operands}_flush_{'on' if flush else 'off'}_ms"] = statistics.median(times)
        rows.append(row)
        print(f"{name:40s} normal {row['normal_flush_off_ms']:7.2f} ms | subnormal: off {row['subnormal_flush_off_ms']:7.2f} ms, "
              f"on {row['subnormal_flush_on_ms']:7.2f} ms")
    set_flush(True)
    _write({**_header(), "threads": 1, "repeats": args.repeats, "ops": rows}, _out_path("ops", args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run", help="two whole runs side by side, flush on and off")
    r.add_argument("--epochs", type=int, default=90)
    r.add_argument("--epochs-off", type=int, default=None, help="stop the flush-off run earlier (same LR schedule)")
    r.add_argument("--runs-dir", default=None)
    one = sub.add_parser("one", help=argparse.SUPPRESS)
    one.add_argument("--flush", choices=["on", "off"], required=True)
    one.add_argument("--epochs", type=int, required=True)
    one.add_argument("--runs-dir", required=True)
    rp = sub.add_parser("replay", help="late-training steps from a run's final weights")
    rp.add_argument("run_dir")
    rp.add_argument("--steps", type=int, default=40)
    rp.add_argument("--rounds", type=int, default=5)
    o = sub.add_parser("ops", help="single ops with normal and subnormal operands")
    o.add_argument("--repeats", type=int, default=20)
    for q in (r, one, rp, o):
        q.add_argument("--data-root", default=os.environ.get("SLTUI_DATA"))
        q.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.mode == "one":
        return one_run(args.flush == "on", args.epochs, args.data_root, args.runs_dir)
    return {"run": mode_run, "replay": mode_replay, "ops": mode_ops}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
