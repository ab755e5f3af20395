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
             trigger: Trigger | None = None) -> Evaluation:
    """Loss and accuracy on `split`; with a trigger also the ASR on its non-target images."""
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
