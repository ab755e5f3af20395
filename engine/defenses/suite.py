"""The detectors of every honest client, and the one place where a training step becomes
what a detector sees.

The protocol asks the suite, per client step, which labels to send and, once the
client's backward pass is done, whether to apply the update (`begin`). The suite holds
only client-side things: the detectors (one per honest client and name) and the
client's own first-layer weight, from which it reads the weight and its gradient. It
builds each Observation from those and from the tensors the protocol hands it (inputs,
labels, the gradient received at the cut, the reported loss), so a detector never gets
a reference to the server, its optimiser or the attack.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..config import RunConfig, honest_clients
from .base import ClientView, Detector, Observation
from .scrutinizer import Scrutinizer
from .splitguard import SplitGuard
from .splitout import SplitOut

Received = Callable[[torch.Tensor, Any], bool]
# The memories a tracing SplitGuard scores besides its own (calibration, docs/detectors.md).
SPLITGUARD_TRACED_MEMORIES = (0, 5, 10, 20, 50, 100)


def make_detector(name: str, cfg: RunConfig, client: int) -> Detector:
    """Detector `name` for client `client` (0-based) with the config's options. Each
    detector draws from its own seeded generator, so runs repeat exactly."""
    if name == "splitguard":
        return SplitGuard(cfg.splitguard_start, cfg.splitguard_fake_prob, cfg.splitguard_window,
                          cfg.splitguard_threshold, seed=cfg.seed * 1000 + 100 + client,
                          memory=cfg.splitguard_memory,
                          trace_memories=SPLITGUARD_TRACED_MEMORIES if cfg.defense_trace else ())
    if name == "scrutinizer":
        return Scrutinizer(cfg.scrutinizer_window, cfg.scrutinizer_threshold, form=cfg.scrutinizer_form,
                           trace=cfg.defense_trace, std=cfg.scrutinizer_std)
    if name == "splitout":
        return SplitOut(cfg.splitout_share, cfg.splitout_window, seed=cfg.seed * 1000 + 200 + client,
                        features=cfg.splitout_features, fit=cfg.splitout_fit, trace=cfg.defense_trace)
    raise ValueError(f"unknown defense {name!r}")


class ClientDefenses:
    def __init__(self, cfg: RunConfig, first_weight: torch.Tensor) -> None:
        self.names = tuple(cfg.defenses)
        self.clients = cfg.clients
        self.honest = honest_clients(cfg)
        self.first_weight = first_weight
        self.detectors: dict[str, dict[int, Detector]] = {
            name: {k: make_detector(name, cfg, k) for k in self.honest} for name in self.names}
        self.flagged_at: dict[str, dict[str, int] | None] = {name: None for name in self.names}
        # Per detector, the epochs in which it flagged at some step (any honest client): the
        # unit the authors of SplitOut count false positives in (docs/protocol.md section 11).
        self.flagged_epochs: dict[str, set[int]] = {name: set() for name in self.names}
        self.epoch = 0
        self.steps = [0] * cfg.clients
        self.stop_on_flag = cfg.on_flag == "stop"

    @property
    def halted(self) -> bool:
        """With --on-flag stop, whether a detector of an honest client has flagged: the
        clients then send no more smashed data (the protocol ends the epoch there)."""
        return self.stop_on_flag and any(flag is not None for flag in self.flagged_at.values())

    def prepare(self, views: dict[int, ClientView]) -> None:
        """Give each honest client's detectors what that client knows before training."""
        for by_client in self.detectors.values():
            for k, detector in by_client.items():
                detector.prepare(views[k])

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.steps = [0] * self.clients

    def begin(self, k: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Received | None]:
        """Client `k` is about to send batch (x, y): the labels it sends, and the call
        that takes the gradient it receives (after its backward pass) and says whether it
        applies the update (not on a fake batch). (y, None) for a client without detectors."""
        if k not in self.honest:
            return y, None
        self.steps[k] += 1
        step, sent, fake = self.steps[k], y, False
        for by_client in self.detectors.values():
            shifted = by_client[k].fake_labels(y)
            if shifted is not None and not fake:
                sent, fake = shifted, True

        def received(cut_grad: torch.Tensor, result: Any) -> bool:
            weight = self.first_weight
            assert weight.grad is not None
            obs = Observation(client=k, epoch=self.epoch, step=step, inputs=x, labels=y, sent_labels=sent,
                              fake=fake, cut_grad=cut_grad, first_grad=weight.grad.detach().flatten(),
                              loss=result.clean.detach())
            for name, by_client in self.detectors.items():
                if not by_client[k].observe(obs):
                    continue
                self.flagged_epochs[name].add(self.epoch)
                if self.flagged_at[name] is None:
                    self.flagged_at[name] = {"epoch": self.epoch, "step": step, "client": k + 1}
            return not fake

        return sent, received

    def end_epoch(self) -> dict[str, dict[str, Any]]:
        """Per detector: this epoch's score of each client (None: not scored, or not an
        honest client), the verdict so far, the epochs so far in which it flagged at some
        step (`flagged_epochs`), and the detector's counts summed over clients."""
        out: dict[str, dict[str, Any]] = {}
        for name, by_client in self.detectors.items():
            scores: list[float | None] = [None] * self.clients
            traces: list[Any] = [None] * self.clients
            facts: dict[str, Any] = {}
            for k, detector in by_client.items():
                scores[k] = detector.epoch_score()
                traces[k] = detector.trace()
                for key, value in detector.facts().items():
                    facts[key] = facts.get(key, 0) + value
            out[name] = {"scores": scores, "flagged_at": self.flagged_at[name],
                         "flagged_epochs": sorted(self.flagged_epochs[name]), **facts}
            if any(t is not None for t in traces):
                out[name]["trace"] = traces
        return out
