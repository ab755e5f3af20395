"""SplitGuard (Erdogan et al., WPES'22), docs/protocol.md section 10.

After the client's first `start` batches (21 by default: the authors' `index > N` with
N = 20 and a 0-based batch index), each batch becomes a fake batch with probability
`fake_prob`: its labels y are sent as (y + k) mod C with k uniform in 1..C-2, and the
client does not apply that batch's update. An honest server's gradients for wrong labels
point elsewhere and are larger than for right ones; a hijacking server, which ignores the
labels, answers both alike. The client keeps the flattened gradients of its first-layer
weight: fake (F) and regular after `start` (R, split at random into R1 and R2), as
running sums (mean vector, mean norm), and after each fake batch scores

    S  = [theta(F,R) d(F,R) - theta(R1,R2) d(R1,R2)] / [d(F,R) + d(R1,R2)]
    SG = sigmoid(alpha S) ** beta

with d(A,B) = | |A| - |B| | (mean norms) and theta the angle between mean vectors.
SG near 1: honest; near 0: hijacked. Verdict: the mean SG of the last `window` fake
batches below `threshold`.

Memory. The published detector keeps every gradient since batch `start`, so a server
that is honest for its first epochs (the hijack attack's warm-up) has filled F with
honest fake gradients by the time it turns, and those outweigh the hijacked ones for
many epochs. With `memory` M > 0 the sets hold only the last M fake batches and the
regular batches since the first of them, so the score follows what the server does now
(docs/protocol.md section 10 gives the default and the honest runs it was checked on);
M = 0 keeps everything, as published.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch

from .base import ClientView, Detector, Observation, sigmoid

ALPHA = 5.0
BETA = 2.0


class GradientSet:
    """Running mean vector and mean norm of a set of flattened gradients (sums in float64,
    so that taking gradients out again leaves no drift worth counting)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.norms = 0.0
        self.count = 0

    def add(self, g: torch.Tensor, norm: float) -> None:
        self.total = g.to(torch.float64, copy=True) if self.total is None else self.total.add_(g)
        self.norms += norm
        self.count += 1

    def remove(self, g: torch.Tensor, norm: float) -> None:
        assert self.total is not None and self.count > 0
        self.total.sub_(g)
        self.norms -= norm
        self.count -= 1

    @property
    def mean(self) -> torch.Tensor:
        assert self.total is not None
        return self.total / self.count

    @property
    def mean_norm(self) -> float:
        return self.norms / self.count


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0, eps=1e-12).clamp(-1.0, 1.0)
    return float(torch.arccos(cos))


def splitguard_score(fake: GradientSet, r1: GradientSet, r2: GradientSet,
                     alpha: float = ALPHA, beta: float = BETA) -> float:
    """SG from the three sets (each non-empty)."""
    r_mean = (r1.mean + r2.mean) / 2
    r_norm = (r1.mean_norm + r2.mean_norm) / 2
    d_fr = abs(fake.mean_norm - r_norm)
    d_rr = abs(r1.mean_norm - r2.mean_norm)
    denominator = d_fr + d_rr
    if denominator == 0.0:
        s = 0.0
    else:
        s = (angle(fake.mean, r_mean) * d_fr - angle(r1.mean, r2.mean) * d_rr) / denominator
    return sigmoid(alpha * s) ** beta


class MemoryScorer:
    """SG over the fake and regular gradients one memory keeps: with `memory` M > 0 the
    last M fake batches and the regular batches since the first of them, with M = 0 every
    batch since the start. Every scorer of a detector sees the same batches (the fake
    batches and the R1/R2 draws are the detector's), so several memories can be scored
    side by side on one run (calibration, docs/detectors.md)."""

    def __init__(self, memory: int) -> None:
        self.memory = memory
        self.fake, self.r1, self.r2 = GradientSet(), GradientSet(), GradientSet()
        self.kept: deque[tuple[GradientSet, torch.Tensor, float]] = deque()

    def add(self, part: str, g: torch.Tensor, norm: float) -> None:
        into = {"fake": self.fake, "r1": self.r1, "r2": self.r2}[part]
        into.add(g, norm)
        if self.memory:
            self.kept.append((into, g, norm))
        if part == "fake":
            self._forget()

    def _forget(self) -> None:
        """Keep the last `memory` fake batches and the regular ones since the first of them."""
        while self.memory and self.kept and (
                self.fake.count > self.memory or (self.fake.count == self.memory and self.kept[0][0] is not self.fake)):
            into, g, norm = self.kept.popleft()
            into.remove(g, norm)

    def score(self) -> float | None:
        """SG now, or None while a set is empty (or the score is undefined)."""
        if self.fake.count == 0 or self.r1.count == 0 or self.r2.count == 0:
            return None
        score = splitguard_score(self.fake, self.r1, self.r2)
        return None if math.isnan(score) else score


class SplitGuard(Detector):
    name = "splitguard"

    def __init__(self, start: int = 21, fake_prob: float = 0.1, window: int = 5,
                 threshold: float = 0.5, seed: int = 0, memory: int = 0,
                 trace_memories: tuple[int, ...] = ()) -> None:
        if memory == 1:
            raise ValueError("a SplitGuard memory of 1 keeps no regular batch to score against; use 0 or >= 2")
        self.start, self.fake_prob, self.window, self.threshold = start, fake_prob, window, threshold
        self.memory = memory
        self.scorers = {m: MemoryScorer(m) for m in dict.fromkeys((memory, *trace_memories))}
        self.fake_batches = 0
        self.generator = torch.Generator().manual_seed(seed)
        self.num_classes = 0
        self.batches = 0
        self.history: list[float] = []
        self.epoch_values: list[float] = []
        self.epoch_trace: dict[int, list[float | None]] = {m: [] for m in trace_memories}

    @property
    def fake(self) -> GradientSet:
        return self.scorers[self.memory].fake

    @property
    def r1(self) -> GradientSet:
        return self.scorers[self.memory].r1

    @property
    def r2(self) -> GradientSet:
        return self.scorers[self.memory].r2

    def prepare(self, view: ClientView) -> None:
        self.num_classes = view.num_classes

    def fake_labels(self, labels: torch.Tensor) -> torch.Tensor | None:
        self.batches += 1
        if self.batches <= self.start or self.num_classes < 3:
            return None
        if float(torch.rand((), generator=self.generator)) >= self.fake_prob:
            return None
        shift = int(torch.randint(1, self.num_classes - 1, (), generator=self.generator))
        return (labels + shift) % self.num_classes

    def observe(self, obs: Observation) -> bool:
        if self.batches <= self.start:
            return False
        # A copy: the gradient tensor is the weight's .grad, which the next step overwrites.
        g = obs.first_grad.detach().flatten().to(torch.float32, copy=True)
        norm = float(g.norm())
        if not obs.fake:
            part = "r1" if float(torch.rand((), generator=self.generator)) < 0.5 else "r2"
            for scorer in self.scorers.values():
                scorer.add(part, g, norm)
            return False
        self.fake_batches += 1
        for scorer in self.scorers.values():
            scorer.add("fake", g, norm)
        for memory, values in self.epoch_trace.items():
            values.append(self.scorers[memory].score())
        score = self.scorers[self.memory].score()
        if score is None:
            return False
        self.history.append(score)
        self.epoch_values.append(score)
        recent = self.history[-self.window:]
        return len(recent) == self.window and sum(recent) / self.window < self.threshold

    def epoch_score(self) -> float | None:
        values, self.epoch_values = self.epoch_values, []
        return sum(values) / len(values) if values else None

    def trace(self) -> dict[str, list[float | None]]:
        """This epoch's SG after each fake batch, per traced memory (None: not scored yet)."""
        out = {str(m): values for m, values in self.epoch_trace.items()}
        self.epoch_trace = {m: [] for m in self.epoch_trace}
        return out

    def facts(self) -> dict[str, Any]:
        return {"fake_batches": self.fake_batches}
