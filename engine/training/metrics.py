"""Evaluation metrics (docs/protocol.md section 3): percentages like the paper."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import Normalization, Split
from ..data.trigger import Trigger, stamp_


@dataclass(frozen=True)
class Evaluation:
    loss: float
    acc: float
    asr: float | None


# One evaluation batch: () -> (inputs, labels), labels None for stamped (ASR) inputs.
Batch = Callable[[], tuple[torch.Tensor, torch.Tensor | None]]


def evaluate(model: nn.Module, split: Split, norm: Normalization, batch_size: int,
             trigger: Trigger | None = None, *, x: torch.Tensor | None = None,
             stamped: torch.Tensor | None = None, prepare=None, map_batches=None) -> Evaluation:
    """Loss and accuracy on `split`; with a trigger also the ASR: the share of its
    non-target images predicted as the target once stamped.

    By default every batch is normalised, and its non-target images stamped, as it goes.
    With `x` (the split's images already normalised, EngineOptions.prenormalize) and, for
    the ASR, `stamped` (its non-target images already stamped) the batches are slices of
    those. `prepare` maps each input batch (memory format); `map_batches(fn, batches)`
    runs the per-batch work (default: in order, here; engine/speed/streams.py: on two
    threads). Sums stay on the device until the end and are added in batch order, so
    both ways give the same numbers up to float rounding of the loss sum."""
    n = len(split)
    starts = range(0, n, batch_size)
    target = trigger.target if trigger is not None else 0
    eligible: int | None = None  # stamped images, None: no ASR
    batches: list[Batch]
    if x is not None:
        batches = [lambda s=s: (x[s:s + batch_size], split.y[s:s + batch_size]) for s in starts]
        if trigger is not None and stamped is not None:
            eligible = len(stamped)
            batches += [lambda s=s: (stamped[s:s + batch_size], None) for s in range(0, eligible, batch_size)]
    else:
        def clean(s: int) -> tuple[torch.Tensor, torch.Tensor]:
            return norm.apply(split.x[s:s + batch_size]), split.y[s:s + batch_size]

        def triggered(s: int) -> tuple[torch.Tensor, None]:
            images, labels = clean(s)
            return stamp_(images[labels != target], trigger), None  # type: ignore[arg-type]

        batches = [lambda s=s: clean(s) for s in starts]
        if trigger is not None:
            keep = split.y != target
            eligible = int(keep.sum())
            batches += [lambda s=s: triggered(s) for s in starts if keep[s:s + batch_size].any()]
    return _evaluate_batches(model, batches, n, eligible, target, prepare or (lambda t: t), map_batches)


def _evaluate_batches(model: nn.Module, batches: list[Batch], n: int, eligible: int | None, target: int,
                      prepare, map_batches) -> Evaluation:
    """Run `batches` in eval mode and add up loss and hits (clean) and target hits
    (stamped). `eligible`: the number of stamped images, None without a trigger."""
    was_training = model.training
    model.eval()

    def one(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, bool]:
        with torch.inference_mode():  # per thread
            images, labels = batch()
            logits = model(prepare(images))
            if labels is None:  # stamped: ASR hits
                return logits.new_zeros((), dtype=torch.float64), (logits.argmax(1) == target).sum(), False
            return (F.cross_entropy(logits.float(), labels, reduction="sum").double(),
                    (logits.argmax(1) == labels).sum(), True)

    try:
        results = map_batches(one, batches) if map_batches is not None else [one(b) for b in batches]
    finally:
        model.train(was_training)
    loss = sum((r[0].item() for r in results if r[2]), 0.0)
    correct = sum(int(r[1]) for r in results if r[2])
    hits = sum(int(r[1]) for r in results if not r[2])
    size = max(n, 1)
    asr = None if eligible is None else (100.0 * hits / eligible if eligible else float("nan"))
    return Evaluation(loss / size, 100.0 * correct / size, asr)
