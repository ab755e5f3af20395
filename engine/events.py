"""Events the runner emits. Plain dataclasses: the same object feeds the chart, the
progress bar and the run file, so everything here is JSON-able through ``to_dict``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunStarted(Event):
    """``config`` is resolved (concrete values); ``config_resolved`` names the fields that
    were filled from dataset/model defaults rather than chosen (None: not known)."""
    config: dict[str, Any]
    env: dict[str, Any]
    total_epochs: int
    samples_per_epoch: int
    source_run: str | None = None
    config_resolved: list[str] | None = None


@dataclass(frozen=True)
class PhaseProgress(Event):
    """Progress of a preparation phase of an attack (e.g. autoencoder phases 1-3).

    ``info`` carries phase-specific results (pair count, train/val MSE) and is kept
    in the run file under ``phases``."""
    phase: str
    epoch: int
    epochs: int
    loss: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochMetrics(Event):
    """One training epoch. Accuracies are percentages, like the paper."""
    epoch: int
    train_loss: float
    train_loss_clean: float
    train_loss_malicious: float | None
    val_loss: float
    val_acc: float
    cda: float
    asr: float
    lr: float
    seconds: float
    samples_per_s: float

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EpochMetrics":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class DefenseScores(Event):
    """The client-side detectors after one epoch, emitted just before its EpochMetrics.
    ``defenses`` maps each detector to ``{"scores": [one per client, None where it had
    nothing to score or the client is not honest], "flagged_at": {"epoch", "step",
    "client"} or None (the first flag so far), ...its counts (e.g. fake_batches)}``.
    A score is in [0, 1]: 1 looks like an honest server."""
    epoch: int
    defenses: dict[str, dict[str, Any]]

    def verdicts(self) -> dict[str, dict[str, int] | None]:
        return {name: report.get("flagged_at") for name, report in self.defenses.items()}


@dataclass(frozen=True)
class RunFinished(Event):
    """The run ended on its own (completed, early-stopped) or by request (cancelled)."""
    status: str
    final: dict[str, Any] | None
    best: dict[str, Any] | None
    stopped_early: bool = False
    attack_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reaction(Event):
    """The honest clients stopped split learning at a flag (docs/protocol.md section 12):
    the flags, the epoch it ended in, and each honest client's local model (client,
    epochs, cda, asr) with their mean."""
    epoch: int
    flags: dict[str, Any]
    local: list[dict[str, Any]]
    mean: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """What a run file's `reaction` holds (and the run manager's state)."""
        return {"epoch": self.epoch, "flags": self.flags, "local": self.local, "mean": self.mean}


@dataclass(frozen=True)
class WeightsReady(Event):
    """The final weights as state dicts of tensors (stored with torch.save, read back
    with weights_only=True)."""
    state: dict[str, Any]


@dataclass(frozen=True)
class RunFailed(Event):
    error: str
