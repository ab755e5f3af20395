"""SPEC section 3: CDA and ASR on hand-built cases."""
from __future__ import annotations

import math

import torch
from torch import nn

from engine.data.datasets import TO_TENSOR, Split
from engine.training.metrics import accuracy, attack_success_rate, evaluate
from engine.data.trigger import make_trigger


def test_accuracy_known_case():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 5.0], [9.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    assert accuracy(logits, labels) == 50.0
    assert math.isnan(accuracy(logits[:0], labels[:0]))


def test_asr_leaves_out_target_class_images():
    target = 0
    true = torch.tensor([0, 0, 1, 2, 3, 4])
    pred = torch.tensor([0, 0, 0, 0, 3, 1])  # target images predicted target: not counted
    assert attack_success_rate(pred, true, target) == 50.0  # 2 of the 4 non-target images
    # Target images predicted as something else do not count either.
    assert attack_success_rate(torch.tensor([5, 5, 0, 0, 0, 0]), true, target) == 100.0
    assert math.isnan(attack_success_rate(torch.tensor([0, 1]), torch.tensor([0, 0]), target))


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
