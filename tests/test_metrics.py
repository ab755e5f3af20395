"""docs/protocol.md section 3: CDA and ASR on hand-built cases."""
from __future__ import annotations

import torch
from torch import nn

from engine.data.datasets import TO_TENSOR, Split
from engine.data.trigger import make_trigger
from engine.training.metrics import evaluate


class ConstantIfTriggered(nn.Module):
    """Predicts the image's label (stored in pixel [0, 0, 27, 27]) unless the trigger
    corner pixel is set, then predicts class 0."""

    def __init__(self, trigger_value: float) -> None:
        super().__init__()
        self.trigger_value = trigger_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = (x[:, 0, 27, 27] * 255).round().long()
        stamped = x[:, 0, 0, 10] == self.trigger_value
        pred = torch.where(stamped, torch.zeros_like(labels), labels)
        return nn.functional.one_hot(pred, 10).float() * 10


def test_evaluate_cda_and_asr_on_a_known_model():
    trig = make_trigger(1, 8, 0, 10, seed=56, target=0)
    labels = torch.tensor([0, 1, 2, 3, 0, 5, 6, 7, 8, 9])
    x = torch.zeros(10, 1, 28, 28, dtype=torch.uint8)
    x[:, 0, 27, 27] = labels.to(torch.uint8)
    x[3, 0, 27, 27] = 4  # one clean mistake
    split = Split(x, labels)
    model = ConstantIfTriggered(float(trig.patch[0, 0, 0]))
    ev = evaluate(model, split, TO_TENSOR, batch_size=3, trigger=trig)
    assert ev.acc == 90.0
    assert ev.asr == 100.0  # the 8 non-target images, all flipped to 0
    assert evaluate(model, split, TO_TENSOR, batch_size=4).asr is None
    assert model.training, "evaluate restores the train/eval mode"
