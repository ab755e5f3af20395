"""Data prepared once per run (EngineOptions.prenormalize): every split normalised to
float32 on the device, and the stamped ASR images, which never change during a run."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .datasets import ExperimentData
from .trigger import Trigger, stamp_


@dataclass(frozen=True)
class PreparedData:
    shares_x: list[torch.Tensor]  # normalised float (N, C, H, W), one per share (0 = attacker)
    val_x: torch.Tensor
    test_x: torch.Tensor
    asr_x: torch.Tensor  # the test images whose label is not the target, stamped


def prepare_data(data: ExperimentData, trigger: Trigger) -> PreparedData:
    norm = data.norm
    test_x = norm.apply(data.test.x)
    keep = data.test.y != trigger.target
    return PreparedData(
        shares_x=[norm.apply(s.x) for s in data.shares],
        val_x=norm.apply(data.val.x),
        test_x=test_x,
        asr_x=stamp_(test_x[keep], trigger),  # boolean indexing copies: test_x is untouched
    )
