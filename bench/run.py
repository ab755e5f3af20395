"""Side-by-side benchmark: the engine against a plain DataLoader split-learning loop.

    python bench/run.py                            # CPU: LeNet and StripNet settings (MNIST)
    python bench/run.py --data-root DIR            # datasets already on disk, torchvision's layout
    python bench/run.py --device cuda --data-root DIR   # adds ResNet9 on CIFAR-10 (the JPEG folder)

--data-root defaults to the engine's data root ($SLTUI_DATA, else ~/.cache/sltui/data),
where the engine downloads MNIST on first use when the machine has network.

Both loops train the same setting (same config, seed, init, splits, hyperparameters and
number of steps) and are evaluated the same way every epoch (validation loss/accuracy,
test CDA, ASR). Each loop runs in its own worker process, so that peak memory and
thread settings are its own, and the epochs are interleaved (plain, engine, engine,
plain, ...) so that both see the same machine load.

samples/s = training samples (the innocent clients' images; the surrogate's extra batches
are not counted, for either loop) per wall-clock second of the whole epoch, *including
the evaluation*; "train-only" leaves the evaluation out. Reported: the median over the
epochs, and every epoch in the JSON file written to bench/results/<device>-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` from a fresh clone
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.config import RunConfig, resolve  # noqa: E402
from engine.data.datasets import default_data_root  # noqa: E402
from engine.errors import ConfigError, DataError  # noqa: E402

SAMPLES_DEFINITION = ("training samples (innocent clients' images) per wall-clock second of the whole "
                      "epoch including evaluation; train-only excludes evaluation")


@dataclass(frozen=True)
class Setting:
    name: str
    dataset: str
    model: str
    attack: str
    epochs: int
    cuda_only: bool = False
    extra: dict = field(default_factory=dict)

    def config(self, data_root: str, device: str, epochs: int | None, **changes: Any) -> RunConfig:
        return resolve(RunConfig(
            dataset=self.dataset, model=self.model, cut=1, clients=3, attack=self.attack,
            epochs=epochs or self.epochs, data_root=data_root, device=device, save_weights=False,
            **{**self.extra, **changes}))


SETTINGS = {
    "lenet-mnist-k3-surrogate": Setting("lenet-mnist-k3-surrogate", "mnist", "lenet", "surrogate", 4),
    "stripnet-mnist-k3": Setting("stripnet-mnist-k3", "mnist", "stripnet", "none", 2),
    "resnet9-cifar10-k3": Setting("resnet9-cifar10-k3", "cifar10-jpeg", "resnet9", "none", 2, cuda_only=True),
}


# ------------------------------------------------------------------ the two loops
class EngineLoop:
    """The engine, epoch by epoch, exactly as engine.training.runner.run does it."""

    def __init__(self, cfg: RunConfig, options) -> None:
        from engine.speed.flush import set_flush
        from engine.speed.options import EngineOptions
        from engine.training.runner import build_context

        # As engine.training.runner.run does: this worker's thread (and the intra-op workers it
        # creates from now on) flush subnormals; build_context records whether they do.
        set_flush((options or EngineOptions()).flush_subnormals)
        self.ctx = build_context(cfg, lambda e: None, None, options=options)
        self.ctx.attack.prepare(self.ctx)
        self.epoch = 0
        self.samples_per_epoch = sum(len(s) for s in self.ctx.data.shares[1:])

    def train_epoch(self) -> dict:
        from engine.config import lr_multiplier
        from engine.training.protocol import train_epoch
        from engine.training.runner import set_epoch_lr

        cfg = self.ctx.cfg
        lr = cfg.lr * lr_multiplier(cfg, self.epoch)
        set_epoch_lr(self.ctx, lr)
        stats = train_epoch(self.ctx)
        self.epoch += 1
        return {"loss": stats.loss, "samples": stats.samples, "lr": lr}

    def evaluate(self) -> dict:
        from engine.training.runner import evaluate_epoch

        val, test = evaluate_epoch(self.ctx)
        return {"val_loss": val.loss, "val_acc": val.acc, "cda": test.acc, "asr": test.asr}

    def describe(self) -> dict:
        return {"engine_options": self.ctx.speed.options.to_dict()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return float("nan")


class Worker:
    """Builds one loop and runs its epochs on request, in this process or another."""

    def __init__(self, kind: str, cfg: RunConfig, options_dict: dict | None, threads: int | None = None) -> None:
        self.kind = kind
        self.device = torch.device(cfg.device)
        self.rss_before_mb = _current_rss_mb()
        if threads is not None:
            torch.set_num_threads(threads)
        if kind == "plain":
            from bench.plain import PlainLoop

            self.loop = PlainLoop(cfg, self.device)
            self.info = {"threads": torch.get_num_threads()}
        else:
            from engine.speed.options import EngineOptions

            self.loop = EngineLoop(cfg, EngineOptions(**options_dict) if options_dict is not None else None)
            self.info = self.loop.describe()
            self.info["threads"] = torch.get_num_threads()
        # Its own intra-op thread count (torch's default for the plain loop, the engine's
        # choice for the engine), set again before each epoch in case both share a process.
        self.threads = torch.get_num_threads()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def epoch(self) -> dict:
        torch.set_num_threads(self.threads)
        threads = torch.get_num_threads()
        _sync(self.device)
        started = time.perf_counter()
        train = self.loop.train_epoch()
        _sync(self.device)
        trained = time.perf_counter()
        metrics = self.loop.evaluate()
        _sync(self.device)
        done = time.perf_counter()
        out = {**train, **metrics, "train_s": trained - started, "eval_s": done - trained,
               "epoch_s": done - started, "threads": threads, "peak_rss_mb": _rss_mb()}
        if self.device.type == "cuda":
            out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return out


def _serve(conn, kind: str, cfg_dict: dict, options_dict: dict | None, threads: int | None) -> None:
    """Worker process: build, say ready, then run one epoch per request."""
    try:
        worker = Worker(kind, RunConfig.from_dict(cfg_dict), options_dict, threads)
        conn.send(("ready", {**worker.info, "rss_before_mb": worker.rss_before_mb,
                             "rss_built_mb": _current_rss_mb()}))
        while conn.recv() == "epoch":
            conn.send(("epoch", worker.epoch()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class Remote:
    def __init__(self, kind: str, cfg: RunConfig, options_dict: dict | None, threads: int | None = None) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, kind, cfg.to_dict(), options_dict, threads), daemon=True)
        self.proc.start()
        child.close()

    def _get(self, expected: str):
        what, payload = self.conn.recv()
        if what == "error":
            raise RuntimeError(f"benchmark worker failed:\n{payload}")
        assert what == expected, what
        return payload

    def ready(self) -> dict:
        return self._get("ready")

    def epoch(self) -> dict:
        self.conn.send("epoch")
        return self._get("epoch")

    def close(self) -> None:
        try:
            self.conn.send("stop")
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=30)


class Local:
    def __init__(self, kind: str, cfg: RunConfig, options_dict: dict | None, threads: int | None = None) -> None:
        self.worker = Worker(kind, cfg, options_dict, threads)

    def ready(self) -> dict:
        return {**self.worker.info, "rss_before_mb": self.worker.rss_before_mb, "rss_built_mb": _current_rss_mb()}

    def epoch(self) -> dict:
        return self.worker.epoch()

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ FLOPs
def flops_per_epoch(cfg: RunConfig, input_shape: tuple[int, ...], num_classes: int,
                    train_samples: int, eval_samples: int) -> float:
    """Estimated FLOPs of one epoch (convolutions and matmuls, forward and backward, as
    torch.utils.flop_counter counts them), the same for both loops: the surrogate attack
    doubles the training passes."""
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from engine.models import build_split

    client, server = build_split(cfg.model, cfg.cut, input_shape, num_classes)
    net = nn.Sequential(client, server)
    x = torch.zeros(4, *input_shape)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    train = counter.get_total_flops() / 4
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.eval()(x)
    infer = counter.get_total_flops() / 4
    passes = 2 if cfg.attack == "surrogate" and cfg.alpha != 1.0 else 1
    return train_samples * train * passes + eval_samples * infer


# ------------------------------------------------------------------ driver
def run_setting(setting: Setting, cfg: RunConfig, options_dict: dict | None, inline: bool,
                plain_threads: tuple[int, ...] = (), log=print) -> dict:
    """Both loops (and the plain loop again at each of `plain_threads` intra-op threads,
    as a check on thread contention), epochs interleaved in rotating order."""
    from engine.data.datasets import load_experiment_data

    data = load_experiment_data(cfg, torch.device("cpu"))  # sizes for the FLOP estimate only
    train_samples = sum(len(s) for s in data.shares[1:])
    n_asr = int((data.test.y != cfg.target).sum())
    eval_samples = len(data.val) + len(data.test) + n_asr
    flops = flops_per_epoch(cfg, data.input_shape, data.num_classes, train_samples, eval_samples)
    del data

    if cfg.dataset in ("mnist", "fmnist"):  # unpack torchvision's files once, before the workers start
        from bench.plain import torchvision_root

        torchvision_root(Path(cfg.data_root), "MNIST" if cfg.dataset == "mnist" else "FashionMNIST")
    make = Local if inline else Remote
    loops = {"plain": make("plain", cfg, None)}
    for t in plain_threads:
        loops[f"plain-{t}t"] = make("plain", cfg, None, t)
    loops["engine"] = make("engine", cfg, options_dict)
    names = list(loops)
    try:
        info = {name: loop.ready() for name, loop in loops.items()}
        epochs: dict[str, list[dict]] = {name: [] for name in names}
        loads = []
        for e in range(cfg.epochs):
            order = names if e % 2 == 0 else names[::-1]
            for name in order:
                rec = loops[name].epoch()
                rec["load"] = os.getloadavg()
                epochs[name].append(rec)
                loads.append(rec["load"][0])
                log(f"  {setting.name} epoch {e + 1}/{cfg.epochs} {name:9s}: train {rec['train_s']:.2f}s "
                    f"eval {rec['eval_s']:.2f}s  CDA {rec['cda']:.2f}%  ASR {rec['asr']:.2f}%  "
                    f"threads {rec['threads']}  load {rec['load'][0]:.2f}")
    finally:
        for loop in loops.values():
            loop.close()

    def summary(name: str) -> dict:
        recs = epochs[name]
        last = recs[-1]
        per_epoch = [r["samples"] / r["epoch_s"] for r in recs]
        train_only = [r["samples"] / r["train_s"] for r in recs]
        out = {
            "samples_per_s": statistics.median(per_epoch),
            "train_samples_per_s": statistics.median(train_only),
            "samples_per_s_by_epoch": per_epoch,
            "tflops": flops / statistics.median(r["epoch_s"] for r in recs) / 1e12,
            "final": {k: last[k] for k in ("loss", "val_loss", "val_acc", "cda", "asr")},
            "peak_rss_mb": last["peak_rss_mb"],
            "rss_before_build_mb": info[name]["rss_before_mb"],
            "threads": last["threads"],
            "epochs": recs,
            **{k: v for k, v in info[name].items() if k not in ("rss_before_mb", "threads")},
        }
        if "cuda_peak_mb" in last:
            out["cuda_peak_mb"] = last["cuda_peak_mb"]
        return out

    loops_out = {name: summary(name) for name in names}
    engine = loops_out["engine"]
    ratios = {name: engine["samples_per_s"] / loops_out[name]["samples_per_s"] for name in names if name != "engine"}
    ratios_train = {name: engine["train_samples_per_s"] / loops_out[name]["train_samples_per_s"]
                    for name in names if name != "engine"}
    return {
        "setting": setting.name, "config": cfg.to_dict(), "epochs": cfg.epochs,
        "samples_per_epoch": train_samples, "flops_per_epoch": flops,
        "ratio": ratios["plain"], "ratio_train_only": ratios_train["plain"],
        "ratio_vs": ratios, "ratio_train_only_vs": ratios_train,
        "load_during": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
        "loops": names, **loops_out,
    }


def table(results: list[dict]) -> str:
    head = ("| setting | loop | samples/s | train-only samples/s | ratio | CDA % | ASR % | peak RSS MiB "
            "| CUDA peak MiB | TFLOP/s | threads |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        for name in r["loops"]:
            s = r[name]
            if name == "engine":
                ratio = f"**{r['ratio']:.2f}x** ({r['ratio_train_only']:.2f}x train-only)"
                for other in r["loops"]:
                    if other not in ("plain", "engine"):
                        ratio += f"; {r['ratio_vs'][other]:.2f}x vs {other}"
            else:
                ratio = "1.00x" if name == "plain" else f"{r[name]['samples_per_s'] / r['plain']['samples_per_s']:.2f}x"
            cuda = f"{s['cuda_peak_mb']:.0f}" if "cuda_peak_mb" in s else "-"
            lines.append(
                f"| {r['setting']} | {name} | {s['samples_per_s']:,.0f} | {s['train_samples_per_s']:,.0f} | {ratio} "
                f"| {s['final']['cda']:.2f} | {s['final']['asr']:.2f} | {s['peak_rss_mb']:,.0f} | {cuda} "
                f"| {s['tflops']:.4f} | {s['threads']} |")
    return "\n".join(lines)


def write_synthetic_mnist(root: Path, n_train: int = 1200, n_test: int = 400) -> Path:
    """A small MNIST look-alike in torchvision's layout (for tests and dry runs)."""
    from engine.data.datasets import make_synthetic

    raw = make_synthetic(1, 28, n_train, n_test, seed=0)
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)

    def idx(arr: torch.Tensor, name: str) -> None:
        a = arr.numpy().astype("uint8")
        header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        with gzip.open(folder / (name + ".gz"), "wb") as fh:
            fh.write(header + a.tobytes())
        (folder / name).write_bytes(header + a.tobytes())  # torchvision wants them unpacked too

    idx(raw.train_x[:, 0], "train-images-idx3-ubyte")
    idx(raw.train_y, "train-labels-idx1-ubyte")
    idx(raw.test_x[:, 0], "t10k-images-idx3-ubyte")
    idx(raw.test_y, "t10k-labels-idx1-ubyte")
    return root


def _device_name(device: str) -> str:
    """The GPU's name, or the CPU's model name (Linux /proc/cpuinfo; else platform's)."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), None)
    if model is None:
        return platform.processor() or platform.machine()
    vector = next((f for f in ("avx512f", "avx2") if f" {f} " in info), None)
    return f"{model} ({platform.machine()}{', ' + vector if vector else ''})"


def _git_commit() -> str | None:
    """The checkout's commit (with "+changes" when the tree differs from it), or None."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(default_data_root()),
                   help="folder holding the datasets (default $SLTUI_DATA, else ~/.cache/sltui/data)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--settings", default=None,
                   help="comma-separated, from: " + ", ".join(SETTINGS) + " (default: all that fit the device)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per setting (default: per setting)")
    p.add_argument("--train-limit", type=int, default=None, help="use only N train-pool images (quick runs)")
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--options", default=None, help="EngineOptions fields as JSON, e.g. '{\"fast_pool\": false}'")
    p.add_argument("--plain-threads", default=None,
                   help="also run the plain loop with these intra-op thread counts, comma-separated (a check "
                        "on thread contention; the headline ratio is against torch's default). Default on CPU: "
                        "1 when torch's default is more than 1; '' for none")
    p.add_argument("--inline", action="store_true", help="run both loops in this process (no worker processes; "
                   "peak RSS is then shared)")
    p.add_argument("--synthetic", action="store_true", help="a small generated MNIST look-alike instead of --data-root")
    p.add_argument("--out", default=None, help="results JSON path (default bench/results/<device>-<date>.json)")
    args = p.parse_args(argv)

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 2
    names = args.settings.split(",") if args.settings else [n for n, s in SETTINGS.items() if device == "cuda" or not s.cuda_only]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        print(f"error: unknown setting {unknown[0]!r}; known: {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    options = {"threads": "auto", **(json.loads(args.options) if args.options else {})}
    tmp = None
    data_root = args.data_root
    if args.synthetic:
        tmp = tempfile.TemporaryDirectory(prefix="sltui-bench-")
        data_root = str(write_synthetic_mnist(Path(tmp.name)))

    print(f"sltui benchmark on {device} ({_device_name(device)}, {os.cpu_count()} CPUs), "
          f"torch {torch.__version__}, load {os.getloadavg()[0]:.2f}")
    print(f"samples/s = {SAMPLES_DEFINITION}")
    results = []
    started = time.time()
    load_start = os.getloadavg()
    try:
        for name in names:
            setting = SETTINGS[name]
            if setting.cuda_only and device != "cuda":
                print(f"skip {name}: GPU only")
                continue
            cfg = setting.config(data_root, device, args.epochs, train_limit=args.train_limit, eval_limit=args.eval_limit)
            print(f"{name}: {cfg.epochs} epochs, batch {cfg.batch_size}, attack {cfg.attack}")
            if args.plain_threads is None:
                plain_threads = (1,) if device == "cpu" and torch.get_num_threads() > 1 else ()
            else:
                plain_threads = tuple(int(t) for t in args.plain_threads.split(",") if t.strip())
            results.append(run_setting(setting, cfg, options, args.inline, plain_threads))
    except (ConfigError, DataError) as exc:  # missing data, no network: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            tmp.cleanup()
    print()
    print(table(results))
    doc = {
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": device,
        "device_name": _device_name(device), "engine_commit": _git_commit(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "samples_per_s_definition": SAMPLES_DEFINITION,
        "load_start": load_start, "load_end": os.getloadavg(), "seconds": time.time() - started,
        "engine_options_requested": options, "synthetic": args.synthetic, "results": results,
    }
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{device}-{_dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
