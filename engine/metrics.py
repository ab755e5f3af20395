"""Evaluation metrics (SPEC section 3): percentages like the paper."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import Normalization, Split
from .trigger import Trigger, stamp_


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Percentage of rows whose arg-max is the label."""
    if labels.numel() == 0:
        return float("nan")
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def attack_success_rate(stamped_predictions: torch.Tensor, true_labels: torch.Tensor, target: int) -> float:
    """Percentage of images whose true label is not `target` that are predicted `target`
    once stamped. Target-class images are left out."""
    keep = true_labels != target
    if not keep.any():
        return float("nan")
    return 100.0 * (stamped_predictions[keep] == target).float().mean().item()


@dataclass(frozen=True)
class Evaluation:
    loss: float
    acc: float
    asr: float | None


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, norm: Normalization, batch_size: int,
             trigger: Trigger | None = None, *, x: torch.Tensor | None = None,
             stamped: torch.Tensor | None = None, prepare=None, map_batches=None) -> Evaluation:
    """Loss and accuracy on `split`; with a trigger also the ASR on its non-target images.

    With `x` (the split's images already normalised, EngineOptions.prenormalize) and, for
    the ASR, `stamped` (its non-target images already stamped), the fast path below runs
    instead: same numbers up to float rounding of the loss sum."""
    if x is not None:
        return evaluate_tensors(model, x, split.y, batch_size, stamped if trigger is not None else None,
                                trigger.target if trigger is not None else 0, prepare or (lambda t: t), map_batches)
    was_training = model.training
    model.eval()
    total_loss, correct, hits, eligible = 0.0, 0, 0, 0
    try:
        for start in range(0, len(split), batch_size):
            x = norm.apply(split.x[start:start + batch_size])
            y = split.y[start:start + batch_size]
            logits = model(x)
            total_loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
            if trigger is not None:
                keep = y != trigger.target
                if keep.any():
                    pred = model(stamp_(x[keep], trigger)).argmax(1)
                    hits += int((pred == trigger.target).sum())
                    eligible += int(keep.sum())
    finally:
        model.train(was_training)
    n = max(len(split), 1)
    asr = (100.0 * hits / eligible if eligible else float("nan")) if trigger is not None else None
    return Evaluation(total_loss / n, 100.0 * correct / n, asr)


def evaluate_tensors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     stamped: torch.Tensor | None = None, target: int = 0,
                     prepare=lambda t: t, map_batches=None) -> Evaluation:
    """`evaluate` on data prepared once per run: `x` normalised float images, `stamped`
    the already-stamped images whose label is not the target (for the ASR). Sums stay
    on the device until the end (no per-batch sync); `prepare` maps each input batch
    (memory format); `map_batches(fn, batches)` runs the per-batch work (default: in
    order, here; engine/streams.py: on two threads), the sums are then added in batch
    order. Same numbers as `evaluate` up to float rounding of the loss sum."""
    was_training = model.training
    model.eval()
    batches = [(x, y, start) for start in range(0, len(y), batch_size)]
    n_clean = len(batches)
    if stamped is not None:
        batches += [(stamped, None, start) for start in range(0, len(stamped), batch_size)]

    def one(batch) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, start = batch
        with torch.inference_mode():  # per thread
            logits = model(prepare(images[start:start + batch_size]))
            if labels is None:  # stamped: ASR hits
                return logits.new_zeros((), dtype=torch.float64), (logits.argmax(1) == target).sum()
            yb = labels[start:start + batch_size]
            return (F.cross_entropy(logits.float(), yb, reduction="sum").double(),
                    (logits.argmax(1) == yb).sum())

    try:
        results = map_batches(one, batches) if map_batches is not None else [one(b) for b in batches]
    finally:
        model.train(was_training)
    loss = sum((r[0].item() for r in results[:n_clean]), 0.0)
    correct = sum(int(r[1]) for r in results[:n_clean])
    hits = sum(int(r[1]) for r in results[n_clean:])
    n = max(len(y), 1)
    eligible = len(stamped) if stamped is not None else 0
    asr = (100.0 * hits / eligible if eligible else float("nan")) if stamped is not None else None
    return Evaluation(loss / n, 100.0 * correct / n, asr)
