"""docs/protocol.md section 3: the trigger patch, stamping and the poisoned share."""
from __future__ import annotations

import pytest
import torch

from engine.config import RunConfig, resolve
from engine.data.trigger import make_trigger, poison_, poison_mask, stamp, stamp_, trigger_for


@pytest.mark.parametrize("channels,side", [(1, 28), (3, 32)])
def test_trigger_covers_exactly_the_upper_middle_patch(channels, side):
    dataset = "synthetic" if channels == 1 else "synthetic-rgb"
    cfg = resolve(RunConfig(dataset=dataset))
    assert (cfg.trigger_row, cfg.trigger_col, cfg.trigger_size, cfg.trigger_seed, cfg.target) == (0, side // 2 - 4, 8, 56, 0)
    trig = trigger_for(cfg, channels, torch.device("cpu"))
    assert trig.patch.shape == (channels, 8, 8)
    assert float(trig.patch.min()) >= 0.0 and float(trig.patch.max()) < 1.0

    x = torch.full((4, channels, side, side), -7.0)  # a value no trigger pixel can take
    out = stamp(x, trig)
    assert torch.equal(x, torch.full_like(x, -7.0)), "stamp() must not modify its input"
    changed = (out != x).any(dim=(0, 1))
    expected = torch.zeros(side, side, dtype=torch.bool)
    expected[0:8, side // 2 - 4:side // 2 + 4] = True
    assert torch.equal(changed, expected)
    for img in out:
        assert torch.equal(img[:, 0:8, side // 2 - 4:side // 2 + 4], trig.patch)


def test_stamp_in_place_returns_same_tensor():
    trig = make_trigger(1, 8, 0, 10, seed=56, target=0)
    x = torch.zeros(2, 1, 28, 28)
    assert stamp_(x, trig) is x
    assert torch.equal(x[:, :, 0:8, 10:18], trig.patch.expand(2, 1, 8, 8))


def test_same_seed_same_patch_other_seed_other_patch():
    a = make_trigger(3, 8, 0, 12, seed=56, target=0).patch
    b = make_trigger(3, 8, 0, 12, seed=56, target=0).patch
    c = make_trigger(3, 8, 0, 12, seed=57, target=0).patch
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1]), "values are drawn per channel"


def test_trigger_does_not_touch_the_global_rng():
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    make_trigger(3, 8, 0, 12, seed=56, target=0)
    assert torch.equal(torch.rand(3), before)


@pytest.mark.parametrize("n,ratio", [(100, 0.5), (101, 0.5), (7, 0.3), (10, 0.0), (10, 1.0), (128, 0.25)])
def test_poison_mask_picks_exactly_round_ratio_n(n, ratio):
    mask = poison_mask(n, ratio, torch.Generator().manual_seed(1))
    assert mask.dtype == torch.bool and mask.shape == (n,)
    assert int(mask.sum()) == int(round(ratio * n))


def test_poison_mask_is_seeded():
    a = poison_mask(50, 0.5, torch.Generator().manual_seed(3))
    b = poison_mask(50, 0.5, torch.Generator().manual_seed(3))
    c = poison_mask(50, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_poison_stamps_and_relabels_only_masked_rows():
    trig = make_trigger(1, 8, 0, 10, seed=56, target=0)
    x = torch.full((4, 1, 28, 28), 0.5)
    y = torch.tensor([3, 4, 5, 6])
    mask = torch.tensor([True, False, True, False])
    poison_(x, y, mask, trig)
    assert y.tolist() == [0, 4, 0, 6]
    assert torch.equal(x[0, :, 0:8, 10:18], trig.patch) and torch.equal(x[2, :, 0:8, 10:18], trig.patch)
    assert torch.equal(x[1], torch.full((1, 28, 28), 0.5)) and torch.equal(x[3], torch.full((1, 28, 28), 0.5))
