"""EngineOptions: how the engine computes, never what it computes.

Every field here changes speed or memory only: the protocol (docs/protocol.md), the batch size, the
models and the data are the same whatever the options, and every fast path gives the
reference path's numbers up to float rounding (tests/test_options.py checks each one).
``EngineOptions.reference()`` switches every optimisation off.

Defaults are "on" only where the metrics stay equal within noise and the path has been
measured faster on that device (see docs/benchmark.md); the choice made for a run is
recorded by ``resolve_options`` so a run file can say how it was computed.
"""
from __future__ import annotations

import ctypes
import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

import torch

from . import kernels as compiled_kernels
from .adam import lean_available

AUTO = "auto"
# The evaluation batch when neither the config nor the options size it.
DEFAULT_EVAL_BATCH = 1024


@dataclass(frozen=True)
class EngineOptions:
    # Keep every split as normalised float32 on the device (one normalisation per run
    # instead of one per batch) and the surrogate's poisoned share stamped once.
    prenormalize: bool = True
    # Evaluate val/test/ASR in batches of this size when the config gives none (the
    # config's eval_batch_size, a user's --eval-batch-size, always wins). "auto": as many
    # samples as keep the largest activation under 64 MiB on CPU, 1 GiB on CUDA, a power
    # of two between the training batch size and 8192 (LeNet 4096, StripNet 512, ResNet9
    # 128 on CPU); None: DEFAULT_EVAL_BATCH. The stamped ASR images are prepared once per run.
    eval_batch_size: int | str | None = AUTO
    # MaxPool2d(2) as a custom op (forward and backward from strided maxima, first-max
    # tie-breaking like F.max_pool2d). "auto": on CPU only (cuDNN's pooling is fast).
    fast_pool: bool | str = AUTO
    # numba-compiled loops (engine/speed/kernels.py) for 2x2 max pooling and for a 1-channel conv
    # with its ReLU (LeNet's first layer), taken by the fast layers (needs fast_pool).
    # "auto": on CPU. Only where numba imports and SLTUI_PUBLIC_API_ONLY is unset
    # (engine/speed/fallbacks.py). Pooling is bit-identical; the conv's sums run in
    # another order (float rounding).
    kernels: bool | str = AUTO
    # Models, inputs and weights in channels_last memory format. "auto": on for the
    # models with wide convs and BatchNorm (StripNet, ResNet9: BatchNorm and the convs are
    # faster in it), off for LeNet (6 and 16 channels: measured slower).
    channels_last: bool | str = AUTO
    # Adam implementation: "lean" (torch's fused kernel called directly, engine/speed/adam.py),
    # "fused", "foreach", "loop" (torch's for-loop) or "auto" (lean on CPU; fused on CUDA,
    # where lean has not been measured). "lean" becomes "fused" where its probe of torch's
    # internals fails or SLTUI_PUBLIC_API_ONLY is set (engine/speed/fallbacks.py).
    adam: str = AUTO
    # The surrogate attack: one server pass over the innocent and the surrogate batch
    # together when the server has no batch-coupled layer (BatchNorm, dropout): exactly
    # the same per-sample math, half the server calls. Servers with BatchNorm keep two
    # passes (their statistics are per batch).
    server_batch: bool = True
    # Two CPU streams (engine/speed/streams.py): the surrogate's half of each step and half of
    # the evaluation batches on a second thread, each thread with half the intra-op
    # threads. "auto": on CPU (it needs at least 2 threads when the run starts). Same math;
    # the server's gradient is summed from the two halves (float rounding).
    streams: bool | str = AUTO
    # Intra-op threads on CPU: None leaves torch's setting alone (library and UI use:
    # it is process-wide); an int sets it; "auto" times a few training steps with 1 and
    # with 2 threads and keeps the faster (results then depend on that choice).
    threads: int | str | None = None
    # glibc: keep freed memory in the heap instead of returning it to the OS, so the
    # same activation buffers are reused each step without page faults.
    malloc_tuning: bool = True
    # torch.compile the client, server and surrogate modules (inductor). Off: measured
    # slower on CPU for these small models even before counting compile time.
    compile: bool = False
    # CUDA only: bf16 autocast for forward passes. Off by default (changes rounding).
    bf16: bool = False
    # Flush subnormal floats (below 1.2e-38) to zero on every thread that computes the run
    # on the CPU (engine/speed/flush.py): arithmetic on them is many times slower on x86, and
    # converged models produce them. Only values below 1.2e-38 change.
    flush_subnormals: bool = True
    # CUDA: deterministic algorithms, cuDNN deterministic, no cuDNN benchmark
    # (engine/speed/determinism.py), so the same config and seed on the same GPU give the same
    # metrics. Off: torch may pick faster kernels whose sums vary from run to run. The
    # switches are process-wide while such a run is active. CPU runs are deterministic
    # either way: there the option is only recorded.
    deterministic: bool = True

    @classmethod
    def reference(cls) -> "EngineOptions":
        """Every optimisation off: the plain tensor engine."""
        return cls(prenormalize=False, eval_batch_size=None, fast_pool=False, kernels=False, channels_last=False,
                   adam="loop", server_batch=False, streams=False, threads=None, malloc_tuning=False,
                   compile=False, bf16=False, flush_subnormals=False)

    def replace(self, **changes: Any) -> "EngineOptions":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ResolvedOptions:
    """The concrete choices for one run on one device."""
    prenormalize: bool
    eval_batch_size: int
    fast_pool: bool
    kernels: bool
    channels_last: bool
    adam: str
    server_batch: bool
    streams: bool
    threads: int
    malloc_tuning: bool
    compile: bool
    bf16: bool
    # Whether the flush was found in force on the run's threads (not just asked for).
    flush_subnormals: bool
    deterministic: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_options(options: EngineOptions | None, device: torch.device, model: str,
                    eval_batch_size: int | None = None, flushing: bool = False) -> ResolvedOptions:
    """Turn "auto" into concrete choices for `device` and `model` (threads are chosen
    later, by timing, when asked for "auto", and an "auto" evaluation batch once the
    model is built). `eval_batch_size`: the config's, None when not given. `flushing`:
    whether the calling thread and its workers flush subnormals (engine/speed/flush.py:
    set by the caller, checked there)."""
    o = options or EngineOptions()
    cuda = device.type == "cuda"
    fast_pool = (not cuda) if o.fast_pool == AUTO else bool(o.fast_pool)
    kernels = (not cuda) if o.kernels == AUTO else bool(o.kernels)
    channels_last = (model in ("resnet9", "stripnet")) if o.channels_last == AUTO else bool(o.channels_last)
    adam = ("fused" if cuda else "lean") if o.adam == AUTO else o.adam
    if adam not in ("lean", "fused", "foreach", "loop"):
        raise ValueError(f"EngineOptions.adam must be lean, fused, foreach, loop or auto (got {o.adam!r})")
    if adam == "lean" and not lean_available():
        adam = "fused"  # the same update through public API (engine/speed/fallbacks.py)
    threads = torch.get_num_threads() if o.threads in (None, AUTO) else int(o.threads)
    return ResolvedOptions(
        prenormalize=o.prenormalize,
        eval_batch_size=(eval_batch_size if eval_batch_size is not None
                         else DEFAULT_EVAL_BATCH if o.eval_batch_size in (None, AUTO) else int(o.eval_batch_size)),
        fast_pool=fast_pool, kernels=kernels and fast_pool and compiled_kernels.usable(),
        channels_last=channels_last, adam=adam, server_batch=o.server_batch,
        streams=(not cuda) if o.streams == AUTO else bool(o.streams) and not cuda,
        threads=threads, malloc_tuning=o.malloc_tuning, compile=o.compile, bf16=o.bf16 and cuda,
        flush_subnormals=o.flush_subnormals and flushing, deterministic=o.deterministic,
    )


def auto_eval_batch(net: torch.nn.Module, input_shape: tuple[int, ...], device: torch.device,
                    low: int = 128, high: int = 8192) -> int:
    """The largest power of two in [low, high] whose largest activation in `net` stays
    under 64 MiB (CPU: caches and memory bandwidth) or 1 GiB (CUDA)."""
    budget = (1 << 30) if device.type == "cuda" else (64 << 20)
    largest = [0]

    def hook(module, inputs, output):
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel() * output.element_size())

    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = net.training
    try:
        with torch.inference_mode():
            net.eval()(torch.zeros(2, *input_shape, device=device))
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    per_sample = max(largest[0] // 2, 1)
    batch = low
    while batch * 2 <= high and batch * 2 * per_sample <= budget:
        batch *= 2
    return batch


_MALLOC_TUNED = False


def tune_malloc() -> bool:
    """glibc only: no mmap for large blocks and no heap trimming, so freed activation
    buffers are reused without page faults (many on every step otherwise; see
    docs/benchmark.md). Process-wide and harmless; returns whether it applied."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, (1 << 31) - 1) == 1
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    return ok
