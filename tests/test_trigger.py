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


@pytest.mark.parametrize("channels", [1, 3])
def test_default_pattern_is_the_authors_numpy_draw(channels):
    """The authors' code: np.random.seed(56), then for each row x and column y of the 8x8
    square np.random.random(C). Their loop is replayed here on the global generator."""
    np = pytest.importorskip("numpy")
    saved = np.random.get_state()
    try:
        np.random.seed(56)
        expected = torch.zeros(channels, 8, 8)
        for x in range(8):
            for y in range(8):
                expected[:, x, y] = torch.tensor(np.random.random(channels), dtype=torch.float32)
    finally:
        np.random.set_state(saved)
    dataset = "synthetic" if channels == 1 else "synthetic-rgb"
    trig = trigger_for(resolve(RunConfig(dataset=dataset)), channels, torch.device("cpu"))
    assert torch.equal(trig.patch, expected)
    older = trigger_for(resolve(RunConfig(dataset=dataset, trigger_rng="torch")), channels, torch.device("cpu"))
    assert not torch.equal(older.patch, expected)
    assert torch.equal(older.patch, torch.rand(channels, 8, 8, generator=torch.Generator().manual_seed(56)))


def test_a_run_file_without_the_generator_field_keeps_the_torch_pattern():
    from engine.config import stored_config
    stored = resolve(RunConfig(dataset="synthetic")).to_dict()
    del stored["trigger_rng"]
    assert stored_config(stored).trigger_rng == "torch"
    assert stored_config({**stored, "trigger_rng": "numpy"}).trigger_rng == "numpy"


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


# ---------------------------------------------------------------- trigger kinds (section 9c)
import math  # noqa: E402

from engine.data.datasets import Normalization  # noqa: E402
from engine.data.prepared import prepare_data  # noqa: E402


def pixels(norm: Normalization, image: torch.Tensor) -> torch.Tensor:
    """A normalised image back in [0, 1] pixel units."""
    return image * torch.tensor(norm.std).view(-1, 1, 1) + torch.tensor(norm.mean).view(-1, 1, 1)


def test_blend_mixes_the_noise_image_in_pixel_space():
    norm = Normalization((0.5,), (0.5,))
    image = torch.full((1, 1, 28, 28), 102, dtype=torch.uint8)  # 0.4 in pixels
    trig = make_trigger(1, 8, 0, 10, seed=56, target=0, kind="blend", side=28, mean=norm.mean, std=norm.std,
                        blend_alpha=0.2, rng="torch")
    gen = torch.Generator().manual_seed(56)
    torch.rand(1, 8, 8, generator=gen)  # the patch's values are drawn first
    noise = torch.rand(1, 28, 28, generator=gen)
    out = stamp(norm.apply(image), trig)[0]
    torch.testing.assert_close(pixels(norm, out), 0.8 * (102 / 255) + 0.2 * noise, atol=1e-5, rtol=0)


def test_sig_adds_a_clipped_horizontal_sine_in_pixel_space():
    norm = Normalization((0.1307,), (0.3081,))
    delta, freq, side = 20 / 255, 6, 28
    trig = make_trigger(1, 8, 0, 10, seed=56, target=0, kind="sig", side=side, mean=norm.mean, std=norm.std,
                        sig_delta=delta, sig_freq=freq)
    image = torch.full((1, 1, side, side), 128, dtype=torch.uint8)
    image[0, 0, 0, :] = 0      # a black row: the negative half of the sine clips at 0
    image[0, 0, 1, :] = 255    # a white row: the positive half clips at 1
    got = pixels(norm, stamp(norm.apply(image), trig)[0])[0]
    wave = torch.tensor([delta * math.sin(2 * math.pi * j * freq / side) for j in range(side)])
    torch.testing.assert_close(got[5], 128 / 255 + wave, atol=1e-5, rtol=0)
    torch.testing.assert_close(got[0], wave.clamp(min=0), atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], (1 + wave).clamp(max=1), atol=1e-5, rtol=0)
    assert torch.equal(got[5], got[20]), "the same in every row"


def test_patch_kind_is_the_default_and_unchanged():
    a = make_trigger(1, 8, 0, 10, seed=56, target=0)
    b = make_trigger(1, 8, 0, 10, seed=56, target=0, kind="patch", mean=(0.5,), std=(0.5,))
    x = torch.zeros(1, 1, 28, 28)
    assert a.kind == "patch" and torch.equal(stamp(x, a), stamp(x, b))


@pytest.mark.parametrize("kind", ["patch", "blend", "sig"])
def test_run_trigger_and_prepared_asr_images_use_the_configured_kind(kind):
    from engine.training.runner import build_context

    cfg = resolve(RunConfig(dataset="synthetic", trigger=kind, train_limit=200, eval_limit=100, device="cpu"))
    ctx = build_context(cfg, lambda e: None, None)
    assert ctx.trigger.kind == kind
    prepared = prepare_data(ctx.data, ctx.trigger)
    keep = ctx.data.test.y != cfg.target
    expected = stamp(ctx.data.norm.apply(ctx.data.test.x[keep]), ctx.trigger)
    torch.testing.assert_close(prepared.asr_x, expected)
    if kind != "patch":  # blend and sig change pixels outside the patch's square
        outside = (expected != ctx.data.norm.apply(ctx.data.test.x[keep]))[:, :, 20:, :]
        assert outside.any()


@pytest.mark.parametrize("kind", ["patch", "blend", "sig"])
def test_poison_stamps_masked_rows_with_the_triggers_kind(kind):
    trig = make_trigger(1, 8, 0, 10, seed=56, target=0, kind=kind, mean=(0.13,), std=(0.31,))
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    before, y = x.clone(), torch.tensor([3, 4, 5, 6])
    mask = torch.tensor([True, False, True, False])
    poison_(x, y, mask, trig)
    assert torch.equal(x[mask], stamp(before[mask], trig))
    assert torch.equal(x[~mask], before[~mask]) and y.tolist() == [0, 4, 0, 6]


@pytest.mark.parametrize("kind", ["blend", "sig"])
@pytest.mark.parametrize("path", ["share", "client"])
def test_attacks_train_on_rows_stamped_with_the_configured_kind(kind, path):
    """The rows an attack trains on as poisoned (the server-side attacks' PoisonedShare,
    the malicious client's batches) are the clean rows stamped with the run's trigger
    kind, so ASR, measured with that kind, measures the backdoor the attack planted."""
    from engine.attacks.poisoned import PoisonedShare
    from engine.training.runner import build_context

    attack = "client" if path == "client" else "surrogate"
    cfg = resolve(RunConfig(dataset="synthetic", attack=attack, trigger=kind, clients=1, train_limit=200,
                            eval_limit=100, device="cpu"))
    ctx = build_context(cfg, lambda e: None, None)
    if path == "client":
        ctx.attack.prepare(ctx)
        share = ctx.attack.share
        idx = torch.arange(len(ctx.data.shares[share]))
        x, y = ctx.attack.client_batch(ctx, share, idx)
        clean, m = ctx.client_batch(share, idx)[0], ctx.attack.mask[idx]
    else:
        poisoned = PoisonedShare(ctx.data.shares[0], 0.5, torch.Generator().manual_seed(0), 16)
        idx = torch.arange(len(poisoned.share))
        x, y = poisoned.take(idx, ctx.data.norm, ctx.trigger)
        clean, m = ctx.data.norm.apply(poisoned.share.x[idx]), poisoned.mask[idx]
    assert m.any() and (y[m] == cfg.target).all()
    torch.testing.assert_close(x[m], stamp(clean[m], ctx.trigger))
    assert (x[m][:, :, 20:, :] != clean[m][:, :, 20:, :]).any()  # not only the patch's square
