"""Client-side detectors of a malicious server, one file per detector (docs/protocol.md
section 10): splitguard.py, scrutinizer.py, splitout.py. base.py says what a detector
sees; suite.py runs them inside every honest client."""
from __future__ import annotations

from .base import ClientView, Detector, Observation
from .suite import ClientDefenses, honest_clients, make_detector

__all__ = ["ClientDefenses", "ClientView", "Detector", "Observation", "honest_clients", "make_detector"]
