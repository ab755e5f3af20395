"""Which fast paths may use something beyond public torch API, and the switch that turns
them all off.

A few fast paths call torch internals (the autograd engine's direct entry in
engine/speed/backward.py, the fused Adam kernel called directly in engine/speed/adam.py,
aten's ``elu_backward`` in engine/speed/fastops.py) or numba (engine/speed/kernels.py).
Each one is probed once before it is used (does it exist, does a call on a throwaway
input give the public path's answer) and falls back to public torch API when the probe
fails, so a torch release that changes an internal or a platform without numba costs
speed, never a run. ``SLTUI_PUBLIC_API_ONLY=1`` forces every fallback (CI runs part of
the suite once more that way, see .ci/run); the run file records it
(``env.public_api_only``).
"""
from __future__ import annotations

import os
import threading
from typing import Callable

ENV = "SLTUI_PUBLIC_API_ONLY"

_probed: dict[str, bool] = {}
_lock = threading.Lock()


def public_api_only() -> bool:
    """Whether the environment asks for public torch API only (and no numba)."""
    return os.environ.get(ENV, "").strip() not in ("", "0")


def may_use(name: str, probe: Callable[[], bool]) -> bool:
    """Whether the private fast path `name` may be used: never under the switch, else
    whether `probe()` said yes (asked once per process; an exception counts as no)."""
    if public_api_only():
        return False
    found = _probed.get(name)
    if found is None:
        with _lock:
            found = _probed.get(name)
            if found is None:
                try:
                    found = bool(probe())
                except Exception:  # noqa: BLE001 - any failure of an internal means: do not use it
                    found = False
                _probed[name] = found
    return found
