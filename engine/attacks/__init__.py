"""Attack strategies, one file each, looked up by name."""
from __future__ import annotations

from ..config import RunConfig
from .base import Attack


def make_attack(cfg: RunConfig) -> Attack:
    if cfg.attack == "none":
        return Attack()
    if cfg.attack == "surrogate":
        from .surrogate import SurrogateAttack

        return SurrogateAttack()
    if cfg.attack == "autoencoder":
        from .autoencoder import AutoencoderAttack

        return AutoencoderAttack()
    if cfg.attack == "hijack":
        from .hijack import HijackAttack

        return HijackAttack()
    if cfg.attack == "client":
        from .client import ClientAttack

        return ClientAttack()
    raise ValueError(f"unknown attack {cfg.attack!r}")


__all__ = ["Attack", "make_attack"]
