"""Device-check mode: proof that every tensor a run makes sits on an explicit device.

Switched on by the environment variable ``SLTUI_CHECK_DEVICES=1`` and recorded in the
run file (``env.device_check``). While a run computes in it, each thread that runs the
run's torch ops (the run's own thread and the second CPU stream's, engine/streams.py):

- has ``meta`` as its default device (``torch.set_default_device`` is per thread), so a
  tensor made without ``device=`` (or a layer built outside an explicit device) lands
  on ``meta`` instead of quietly on the CPU;
- runs under ``DeviceCheckMode``, a ``torch.overrides.TorchFunctionMode`` (public API)
  that sees every torch function and tensor method call with its arguments and raises
  ``MixedDeviceError``, naming the op, when tensor arguments sit on different devices.
  0-dim CPU tensors are left aside (torch takes them as scalars on any device), and so
  are the ops that move tensors between devices by design: ``Tensor.copy_`` and
  ``Tensor.to`` (a ``meta`` source fails there by itself: it has no data) and
  ``torch._has_compatible_shallow_copy_type``, the check ``Module.to`` makes between a
  parameter and its moved copy, and the setter of ``Tensor.data``, with which
  ``Module.to`` puts the moved copy into the parameter (seen on the first CUDA run of
  the check: a model built on the host and moved to the GPU).

The default device alone is not enough: a convolution of a ``meta`` input with CPU
weights quietly succeeds (on ``meta``). With both, on a CPU run, a tensor made without
a device fails at the first op that mixes it with the run's tensors, which is where a
CUDA run would have failed (or silently copied through the host).

Each torch call then passes through Python: a debugging mode, off by default.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode

ENV_VAR = "SLTUI_CHECK_DEVICES"
# Ops whose tensor arguments may sit on different devices by design.
_TRANSFERS = frozenset({"copy_", "to", "_has_compatible_shallow_copy_type"})

_thread = threading.local()


class MixedDeviceError(RuntimeError):
    """An op got tensors on different devices while the device check was on."""


def requested() -> bool:
    """Whether the environment asks for the device check."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in ("", "0", "false", "no", "off")


def active() -> bool:
    """Whether the device check is in force on the calling thread."""
    return bool(getattr(_thread, "active", False))


def op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    module = getattr(func, "__module__", None)
    if isinstance(module, str) and module.startswith("torch"):
        return f"{module}.{name}"
    return f"Tensor.{name}"


def _devices(value: Any, found: set[torch.device]) -> None:
    if isinstance(value, torch.Tensor):
        if not (value.device.type == "cpu" and value.dim() == 0):
            found.add(value.device)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _devices(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _devices(item, found)


def moves_by_design(func: Any) -> bool:
    """Whether `func` moves tensors between devices by design: a transfer op, or the
    setter of a tensor's ``data`` (a method-wrapper whose descriptor is named data)."""
    name = getattr(func, "__name__", None)
    if name in _TRANSFERS:
        return True
    return name == "__set__" and getattr(getattr(func, "__self__", None), "__name__", None) == "data"


class DeviceCheckMode(TorchFunctionMode):
    """Fails any torch call whose tensor arguments sit on different devices."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not moves_by_design(func):
            found: set[torch.device] = set()
            _devices(args, found)
            _devices(kwargs, found)
            if len(found) > 1:
                where = ", ".join(sorted(str(d) for d in found))
                hint = " (a tensor made without device= lands on meta)" if any(d.type == "meta" for d in found) else ""
                raise MixedDeviceError(f"device check: {op_name(func)} got tensors on {where}{hint}")
        return func(*args, **kwargs)


@contextlib.contextmanager
def checking(enabled: bool | None = None) -> Iterator[bool]:
    """The device check on the calling thread for the block (`enabled`: default from
    the environment); yields whether it is in force. Nested blocks keep the outer one.
    The thread's default device and mode stack are as before once the block ends."""
    if enabled is None:
        enabled = requested()
    if not enabled or active():
        yield active()
        return
    previous = torch.get_default_device()
    torch.set_default_device("meta")
    _thread.active = True
    try:
        with DeviceCheckMode():
            yield True
    finally:
        _thread.active = False
        torch.set_default_device(None if previous.type == "cpu" else previous)


def check_this_thread() -> None:
    """The device check on the calling thread until it ends: for a worker thread that
    lives only as long as a run (the second CPU stream)."""
    if active():
        return
    torch.set_default_device("meta")
    DeviceCheckMode().__enter__()
    _thread.active = True
