"""The speed-path state of one run: what its EngineOptions resolved to and what they set
up (the data prepared once, the second CPU stream), with the operations that depend on
them. How the run computes, never what (engine/speed/options.py)."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..config import RunConfig
from ..data.prepared import PreparedData
from .adam import make_adam
from .device import thread_share
from .fastops import use_fast_layers
from .options import EngineOptions, ResolvedOptions, resolve_options
from .streams import CpuStreams


def _reference_options() -> ResolvedOptions:
    return resolve_options(EngineOptions.reference(), torch.device("cpu"), "")


@dataclass
class SpeedState:
    options: ResolvedOptions = field(default_factory=_reference_options)
    # Every split normalised (and the ASR images stamped) once (EngineOptions.prenormalize); None: per batch.
    prepared: PreparedData | None = None
    # Two CPU streams (EngineOptions.streams) for the attack's concurrent half and for
    # evaluation; None: one stream.
    streams: CpuStreams | None = None
    device_type: str = "cpu"
    # The most intra-op threads the run asked for itself (EngineOptions.threads), None:
    # whatever share of the cores it is given (device.share_cpu_threads).
    thread_ceiling: int | None = None

    def follow_thread_share(self) -> None:
        """Take the current per-run share of the cores (device.thread_share) on the
        calling thread, the run's own, and on its second stream: called at every batch
        boundary, so a run started alone gives up cores when another one starts and takes
        them back when it ends. Not more than the run's own ceiling; CPU only."""
        share = thread_share()
        if share is None or self.device_type != "cpu":
            return
        threads = share if self.thread_ceiling is None else min(share, self.thread_ceiling)
        if threads == self.options.threads and (self.streams is None or self.streams.threads == threads):
            return
        self.options = dataclasses.replace(self.options, threads=threads)
        if self.streams is not None:
            self.streams.set_threads(threads)
        else:
            torch.set_num_threads(threads)

    def close(self) -> None:
        """Stop the second stream's thread (the run goes on, on one stream)."""
        if self.streams is not None:
            self.streams.close()
            self.streams = None

    def setup_module(self, module: nn.Module, device: torch.device) -> nn.Module:
        """Move a freshly built network to `device` the way the options say (fast layers,
        memory format, compile)."""
        if self.options.fast_pool:
            use_fast_layers(module, compiled=self.options.kernels)
        module.to(device)
        if self.options.channels_last:
            module.to(memory_format=torch.channels_last)
        if self.options.compile:
            module.compile()
        return module

    def make_adam(self, params, cfg: RunConfig) -> torch.optim.Adam:
        """The config's Adam, in the implementation the options name."""
        return make_adam(params, cfg, self.options.adam)

    def batch_input(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch in the memory format the options ask for."""
        return x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x

    def autocast(self, device: torch.device):
        if not self.options.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def map_batches(self) -> Callable | None:
        """How evaluation runs its batches: on the two streams, or None (in order)."""
        return self.streams.map if self.streams is not None else None
