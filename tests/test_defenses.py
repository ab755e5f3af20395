"""docs/protocol.md section 10: the client-side detectors on hand-made gradients, what
they are given inside a run, and their record in the run file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from engine.config import ConfigError, RunConfig, resolve
from engine.defenses.base import Observation, sigmoid
from engine.defenses.lof import NoveltyLOF
from engine.defenses.scrutinizer import (PUBLISHED_THRESHOLD, Scrutinizer, interval_iou, pair_statistics, step_score,
                                         window_score)
from engine.defenses.splitguard import GradientSet, SplitGuard, splitguard_score
from engine.defenses.splitout import SplitOut
from engine.events import DefenseScores
from engine.store import RunStore
from engine.training.protocol import train_epoch
from engine.training.runner import build_context, client_defenses, run
from tests.conftest import tiny_config

ALL = ("splitguard", "scrutinizer", "splitout")


NOISE = torch.Generator().manual_seed(20261201)  # every random tensor of these tests is seeded


def observation(first_grad=None, cut_grad=None, labels=None, fake=False, step=1) -> Observation:
    labels = labels if labels is not None else torch.zeros(4, dtype=torch.long)
    return Observation(client=0, epoch=1, step=step, inputs=torch.zeros(len(labels), 1, 4, 4), labels=labels,
                       sent_labels=labels, fake=fake,
                       cut_grad=cut_grad if cut_grad is not None else torch.randn(len(labels), 8, generator=NOISE),
                       first_grad=first_grad if first_grad is not None else torch.randn(16, generator=NOISE),
                       loss=torch.tensor(1.0))


# ---- SplitGuard -------------------------------------------------------------------

def gradient_set(vectors) -> GradientSet:
    s = GradientSet()
    for v in vectors:
        s.add(v, float(v.norm()))
    return s


def test_splitguard_scores_opposite_fake_gradients_high_and_alike_ones_low():
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(64, generator=gen)
    regular = [direction + 0.1 * torch.randn(64, generator=gen) for _ in range(40)]
    r1, r2 = gradient_set(regular[::2]), gradient_set(regular[1::2])
    # An honest server: wrong labels give larger gradients pointing the other way.
    opposite = gradient_set([-3 * direction + 0.1 * torch.randn(64, generator=gen) for _ in range(5)])
    # A hijacking server ignores the labels: fake gradients look like regular ones.
    alike = gradient_set([direction + 0.1 * torch.randn(64, generator=gen) for _ in range(5)])
    honest, hijacked = splitguard_score(opposite, r1, r2), splitguard_score(alike, r1, r2)
    assert honest > 0.9
    assert hijacked < 0.5
    assert 0.0 <= hijacked < honest <= 1.0


def test_splitguard_fakes_batches_after_start_and_flags_a_server_that_ignores_labels():
    detector = SplitGuard(start=3, fake_prob=0.5, window=3, threshold=0.5, seed=1)
    detector.num_classes = 10
    y = torch.arange(8) % 10
    direction = torch.ones(16)
    flagged, fakes = [], 0
    for step in range(1, 200):
        shifted = detector.fake_labels(y)
        if step <= 3:
            assert shifted is None
        if shifted is not None:
            fakes += 1
            assert not torch.equal(shifted, y)
            assert torch.equal((shifted - y) % 10, torch.full_like(y, int((shifted[0] - y[0]) % 10)))
            assert 1 <= int((shifted[0] - y[0]) % 10) <= 8
        g = direction + 0.05 * torch.randn(16, generator=NOISE)  # the same answer whatever the labels
        flagged.append(detector.observe(observation(g, fake=shifted is not None, step=step)))
    assert detector.facts()["fake_batches"] == fakes > 0
    assert any(flagged)
    assert detector.epoch_score() < 0.5


def test_splitguard_starts_where_the_authors_code_does():
    # The authors' loop (splitguard.ipynb) fakes and records a batch only when its 0-based
    # `index > N`, N = 20. With every eligible batch faked, the default detector's first
    # fake batch is the one at index 21, and no batch before it is recorded or scored.
    assert RunConfig().splitguard_start == SplitGuard().start
    detector = SplitGuard(fake_prob=1.0 - 1e-9, seed=1)
    detector.num_classes = 10
    y = torch.arange(8) % 10
    fakes = [index for index in range(40) if detector.fake_labels(y) is not None]
    assert fakes[0] == 21 and fakes == list(range(21, 40))
    authors_n = 20
    assert fakes == [index for index in range(40) if index > authors_n]
    early = SplitGuard(fake_prob=0.5, seed=1)
    early.num_classes = 10
    for step in range(1, 22):
        early.fake_labels(y)
        assert not early.observe(observation(torch.randn(16, generator=NOISE), step=step))
    assert early.r1.total is None and early.r2.total is None  # nothing recorded before the start


def run_turning_server(memory: int, honest_steps: int = 600, blind_steps: int = 300) -> tuple[list[bool], int]:
    """SplitGuard against a server honest for `honest_steps` batches (fake labels give
    larger gradients the other way) and label-blind after: the flags per step and the
    detector's count of fake batches."""
    detector = SplitGuard(start=20, fake_prob=0.1, window=5, threshold=0.5, seed=3, memory=memory)
    detector.num_classes = 10
    gen = torch.Generator().manual_seed(4)
    direction, y = torch.randn(32, generator=gen), torch.arange(8) % 10
    flagged = []
    for step in range(1, honest_steps + blind_steps + 1):
        fake = detector.fake_labels(y) is not None
        honest_fake = fake and step <= honest_steps
        g = (-3 if honest_fake else 1) * direction + 0.3 * torch.randn(32, generator=gen)
        flagged.append(detector.observe(observation(g, fake=fake, step=step)))
    return flagged, detector.facts()["fake_batches"]


def test_splitguard_memory_sees_a_server_that_turns_after_an_honest_start():
    everything, fakes_all = run_turning_server(memory=0)
    recent, fakes_recent = run_turning_server(memory=20)
    assert not any(everything[:600]) and not any(recent[:600])  # honest start: no flag either way
    assert not any(everything)  # the published memory is outweighed by the honest fakes
    first = recent.index(True)
    assert 600 < first < 600 + 300
    assert fakes_all == fakes_recent > 60  # the count is of all fake batches, not the kept ones


def test_splitguard_memory_keeps_the_last_fakes_and_the_regular_batches_since():
    detector = SplitGuard(start=0, fake_prob=0.0, seed=0, memory=2)
    detector.num_classes = 10
    detector.batches = 1
    for i, fake in enumerate([False, True, False, False, True, False, True, False]):
        detector.observe(observation(torch.full((4,), float(i)), fake=fake, step=i + 1))
    # Kept: fakes 4 and 6 and the regular batches from the first of them on (5 and 7).
    assert detector.fake.count == 2 and detector.r1.count + detector.r2.count == 2
    assert torch.allclose(detector.fake.mean, torch.full((4,), 5.0, dtype=torch.float64))
    regular_sum = sum(s.total for s in (detector.r1, detector.r2) if s.count)
    assert torch.allclose(regular_sum, torch.full((4,), 12.0, dtype=torch.float64))


# ---- Gradients Scrutinizer ----------------------------------------------------------

def test_pair_statistics_is_the_loop_over_pairs():
    gen = torch.Generator().manual_seed(2)
    grads, labels = torch.randn(12, 3, 2, 2, generator=gen), torch.randint(0, 3, (12,), generator=gen)
    same, different = [], []
    for i in range(12):
        for j in range(12):
            if i == j:
                continue
            c = 0.5 + 0.5 * float(torch.nn.functional.cosine_similarity(grads[i].flatten(), grads[j].flatten(), dim=0))
            (same if labels[i] == labels[j] else different).append(c)
    # Population standard deviations by default (np.std, as the authors' SL.py); sample ones
    # (n - 1) as sltui computed them before the choice was recorded.
    for std, ddof in (("population", 0), ("sample", 1)):
        stats = pair_statistics(grads, labels, std)
        expected = [np.mean(same), np.std(same, ddof=ddof), np.mean(different), np.std(different, ddof=ddof)]
        assert stats.tolist() == pytest.approx(expected, abs=1e-5)
    assert pair_statistics(grads, labels).tolist() == pair_statistics(grads, labels, "population").tolist()
    assert Scrutinizer().std == RunConfig().scrutinizer_std == "population"


def labelled_gradients(gen, separable: bool, n=32, dim=24):
    labels = torch.arange(n) % 4
    centres = torch.randn(4, dim, generator=gen) * 3
    noise = torch.randn(n, dim, generator=gen)
    return (centres[labels] + noise if separable else noise), labels


def test_scrutinizer_separable_similarities_score_honest_and_overlapping_ones_flag():
    gen = torch.Generator().manual_seed(3)
    rows = {kind: np.stack([pair_statistics(*labelled_gradients(gen, kind == "separable")).numpy()
                            for _ in range(20)]) for kind in ("separable", "overlapping")}
    honest, hijacked = window_score(rows["separable"]), window_score(rows["overlapping"])
    assert honest.gap > 0.2 and honest.iou < hijacked.iou
    assert abs(hijacked.gap) < 0.05 and hijacked.iou > 0.8
    assert honest.err < 0.05 and hijacked.err < 0.05
    assert honest.ds > 0.5 > hijacked.ds


def test_scrutinizer_err_grows_with_a_jumpy_history():
    steady = np.tile([0.8, 0.05, 0.5, 0.05], (20, 1))
    jumpy = steady.copy()
    jumpy[::2, 0] += 0.3
    assert window_score(steady).err == pytest.approx(0.0, abs=1e-9)
    assert window_score(jumpy).err == pytest.approx(0.15 / 2, rel=0.05)  # mean_s jumps +-0.15, mean_d is steady
    assert window_score(jumpy).ds < window_score(steady).ds


def steady_window(gen, mean_s, std_s, mean_d, std_d, steps=50):
    noise = 0.003 * gen.normal(size=(steps, 2))
    return np.column_stack([mean_s + noise[:, 0], np.full(steps, std_s), mean_d + noise[:, 1], np.full(steps, std_d)])


def test_a_label_blind_window_sits_at_the_floor_under_a_window_with_a_class_gap():
    # A constructed honest window (same-label pairs more alike than different-label ones)
    # against a label-blind one (both means equal): the latter scores sigmoid(-3.5) in both
    # forms, whatever err and iou are.
    gen = np.random.default_rng(0)
    honest = steady_window(gen, 0.60, 0.07, 0.50, 0.04)
    blind = steady_window(gen, 0.50, 0.05, 0.50, 0.03)
    for score in (window_score, step_score):
        assert score(blind).ds == pytest.approx(sigmoid(-3.5), abs=0.01)
        assert score(honest).ds > score(blind).ds + 0.2


def test_the_published_form_scores_the_checkpoint_step_itself():
    # A stream whose class signal vanishes at the last step: the published form sees the
    # checkpoint's own statistics (no gap: the floor), the windowed form the window's means.
    gen = np.random.default_rng(1)
    history = steady_window(gen, 0.60, 0.07, 0.50, 0.04)
    history[-1] = [0.50, 0.05, 0.50, 0.03]
    assert step_score(history).ds == pytest.approx(sigmoid(-3.5), abs=0.01)
    assert window_score(history).ds > step_score(history).ds + 0.2
    published, windowed = Scrutinizer(window=5, form="published"), Scrutinizer(window=5, form="windowed")
    assert published.threshold == PUBLISHED_THRESHOLD == windowed.threshold


def test_interval_iou():
    assert interval_iou((0, 2), (1, 3)) == pytest.approx(1 / 3)
    assert interval_iou((0, 1), (2, 3)) == 0.0
    assert interval_iou((0, 4), (1, 2)) == pytest.approx(1 / 4)


def test_scrutinizer_flags_once_a_window_of_label_blind_gradients_is_full():
    gen = torch.Generator().manual_seed(4)
    detector = Scrutinizer(window=5, threshold=0.5)
    flags = []
    for step in range(1, 11):
        grads, labels = labelled_gradients(gen, separable=False)
        flags.append(detector.observe(observation(cut_grad=grads, labels=labels, step=step)))
    assert flags == [False] * 4 + [True] + [False] * 4 + [True]
    assert detector.epoch_score() < 0.5
    assert detector.epoch_score() is None  # a new epoch with nothing scored yet


# ---- SplitOut -----------------------------------------------------------------------

def test_splitout_lof_flags_a_planted_outlier_window():
    gen = np.random.default_rng(5)
    honest = gen.normal(0, 1, size=(30, 16))
    detector = SplitOut(window=4, features="raw")
    detector.fit(honest)
    inliers = [torch.tensor(gen.normal(0, 1, 16), dtype=torch.float32) for _ in range(4)]
    assert not any(detector.observe(observation(g)) for g in inliers)
    assert detector.epoch_score() == 1.0
    planted = torch.full((16,), 25.0)
    assert detector.lof.is_outlier(planted.double().numpy())
    flags = [detector.observe(observation(g)) for g in [planted, planted, planted, inliers[0], inliers[1]]]
    assert flags == [False, False, True, True, False]  # 2/4, 3/4, 3/4, then 2/4 outliers in the window
    assert detector.epoch_score() == pytest.approx(2 / 5)


def test_novelty_lof_gives_scikit_learns_verdicts_and_asks_it_only_on_the_edge():
    gen = np.random.default_rng(7)
    ordinary = referred = 0
    for trial in range(40):
        n, dim = int(gen.integers(2, 30)), int(gen.integers(1, 160))
        examples = gen.normal(size=(n, dim)) * [1.0, 1e-3, 30.0, 1.0][trial % 4]
        if trial % 4 == 3:
            examples[1] = examples[0]  # a repeated example
        lof = NoveltyLOF(examples)
        rows = np.concatenate([gen.normal(size=(30, dim)) * examples.std() * scale for scale in (0.3, 1, 3)])
        before = lof.referrals
        for row in rows:
            assert lof.is_outlier(row) == (lof.model.predict(row[None])[0] == -1)
        if trial % 4 != 3:  # (with a repeated example, rows to which it is the farthest tie)
            ordinary += len(rows)
            referred += lof.referrals - before
        # Rows on the threshold, and repeats of an example: scikit-learn decides.
        inlier, outlier = examples.mean(axis=0), examples.mean(axis=0) + 100 * examples.std() * gen.normal(size=dim)
        for _ in range(80):
            middle = (inlier + outlier) / 2
            if lof.model.predict(middle[None])[0] == -1:
                outlier = middle
            else:
                inlier = middle
        for row in (inlier, outlier, examples[0]):
            before = lof.referrals
            assert lof.is_outlier(row) == (lof.model.predict(row[None])[0] == -1)
            assert lof.referrals == before + 1
    assert referred < ordinary / 100  # ordinary rows are decided without scikit-learn


def cone(gen, direction, n, spread, scales):
    """n gradients around `direction` (unit), with norms drawn from `scales`."""
    rows = direction + spread * gen.normal(0, 1, size=(n, len(direction)))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows * gen.uniform(*scales, size=(n, 1))


def test_splitout_by_direction_keeps_honest_gradients_that_grew_and_flags_a_turned_server():
    # A constructed case of the failure documented in protocol.md section 10: the honest
    # examples are small gradients; honest training later gives much larger ones in the
    # same directions. Raw LOF calls that growth an outlier; by direction it is not. (The
    # real-run counterpart: tests/test_calibration.py, where raw SplitOut flags honest
    # training in a run.)
    gen = np.random.default_rng(3)
    direction = gen.normal(0, 1, 64)
    direction /= np.linalg.norm(direction)
    examples = cone(gen, direction, 10, 0.1, (0.01, 0.08))
    grown = [torch.tensor(g, dtype=torch.float32) for g in cone(gen, direction, 10, 0.1, (0.3, 0.8))]
    raw, by_direction = SplitOut(window=10, features="raw"), SplitOut(window=10, features="direction")
    raw.fit(examples)
    by_direction.fit(examples)
    assert any(raw.observe(observation(g)) for g in grown)
    assert not any(by_direction.observe(observation(g)) for g in grown)
    assert by_direction.epoch_score() == 1.0
    # A server whose gradients point elsewhere is still caught, at the examples' own size.
    turned = [torch.tensor(g, dtype=torch.float32) for g in cone(gen, -direction, 10, 0.1, (0.01, 0.08))]
    assert any([by_direction.observe(observation(g)) for g in turned])
    assert by_direction.epoch_score() == 0.0


def test_splitout_features_are_checked():
    with pytest.raises(ValueError):
        SplitOut(features="sideways")
    with pytest.raises(ValueError):
        SplitOut(fit="twice")


def epoch_of(detector, rows):
    """Feed one epoch of gradients (rows) to `detector`: the steps that flagged, its score."""
    flags = [step for step, g in enumerate(rows, start=1)
             if detector.observe(observation(torch.tensor(g, dtype=torch.float32), step=step))]
    return flags, detector.epoch_score()


def test_splitout_fitted_per_epoch_follows_a_drift_that_the_fit_once_calls_an_outlier():
    # Honest examples are small (the start of training); in epoch 2 every gradient is 30
    # times larger (an honest model's gradients grow). Fitted once, LOF calls all of epoch 2
    # outliers; refitted on epoch 2's first 10 gradients, none. In epoch 3 a run of planted
    # far gradients after the fit is caught per epoch, in the window that first holds 3 of
    # them. Every gradient of an epoch is judged, its first 10 once the epoch's fit exists.
    gen = np.random.default_rng(11)
    small = lambda n: 0.1 * gen.normal(size=(n, 16))  # noqa: E731
    grown = lambda n: 3.0 * gen.normal(size=(n, 16))  # noqa: E731
    examples = small(12)
    epochs = [small(30), grown(30), np.concatenate([grown(10), np.full((10, 16), 60.0), grown(10)])]
    once = SplitOut(window=4, features="raw", fit="once", trace=True)
    per_epoch = SplitOut(window=4, features="raw", fit="per-epoch", trace=True)
    for detector in (once, per_epoch):
        detector.fit(examples)
    assert per_epoch.lof is None  # nothing fitted before its first epoch
    results = {name: [epoch_of(d, rows) for rows in epochs] for name, d in (("once", once), ("per-epoch", per_epoch))}
    flags_once = [flags for flags, _ in results["once"]]
    assert flags_once[0] == [] and flags_once[1] == list(range(3, 31))
    assert results["once"][1][1] == 0.0
    flags_per_epoch = [flags for flags, _ in results["per-epoch"]]
    assert flags_per_epoch[:2] == [[], []] and results["per-epoch"][1][1] == 1.0
    assert flags_per_epoch[2][0] == 13  # planted at steps 11-20: 3 of the last 4 at step 13
    assert max(flags_per_epoch[2]) <= 22
    trace = per_epoch.trace()  # the last epoch, every way of judging
    assert set(trace) == {"raw", "direction", "raw/per-epoch", "direction/per-epoch"}
    assert trace["raw/per-epoch"] == "0" * 10 + "1" * 10 + "0" * 10
    assert per_epoch.facts() == {"epoch_examples": 10}


def test_splitout_per_epoch_waits_for_its_fit_and_restarts_the_window_each_epoch():
    gen = np.random.default_rng(12)
    detector = SplitOut(window=4, features="raw", fit="per-epoch")
    detector.fit(gen.normal(size=(12, 16)))
    # Fewer gradients than the fit needs: nothing judged, no score.
    assert epoch_of(detector, gen.normal(size=(9, 16))) == ([], None)
    # The window does not carry over: an epoch that ends on outliers leaves the next clean.
    rows = np.concatenate([gen.normal(size=(10, 16)), np.full((3, 16), 80.0)])
    flags, _ = epoch_of(detector, rows)
    assert flags == [13]
    assert epoch_of(detector, gen.normal(size=(12, 16)))[0] == []


# ---- inside a run --------------------------------------------------------------------

def walk(obj, seen=None, depth=0):
    """Every object reachable from `obj` through attributes, containers and modules."""
    seen = seen if seen is not None else {}
    if id(obj) in seen or depth > 12 or isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return seen
    seen[id(obj)] = obj
    children = []
    if isinstance(obj, dict):
        children = list(obj.values()) + list(obj.keys())
    elif isinstance(obj, (list, tuple, set)):
        children = list(obj)
    elif isinstance(obj, nn.Module):
        children = list(obj.modules())[1:] + list(obj.parameters())
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        children += list(vars(obj).values())
    for child in children:
        walk(child, seen, depth + 1)
    return seen


def test_detectors_get_only_what_a_client_has():
    cfg = resolve(tiny_config(defenses=ALL, clients=2, epochs=1, splitguard_start=1, splitguard_fake_prob=0.5,
                              scrutinizer_window=2, splitout_window=2, attack="surrogate"))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.attack.prepare(ctx)
    suite = client_defenses(ctx)
    ctx.defenses = suite
    seen: list[Observation] = []
    for by_client in suite.detectors.values():
        for detector in by_client.values():
            original = detector.observe
            detector.observe = lambda obs, original=original: seen.append(obs) or original(obs)
    train_epoch(ctx)
    assert seen and {o.client for o in seen} == {0, 1}
    for obs in seen:
        for name, value in vars(obs).items():
            assert isinstance(value, (torch.Tensor, int, bool)), (name, type(value))
    server_side = {id(ctx.server), id(ctx.server_opt), id(ctx.attack), id(ctx)}
    server_side |= {id(p) for p in ctx.server.parameters()} | {id(m) for m in ctx.server.modules()}
    server_side |= {id(o) for o in walk(ctx.attack) if isinstance(o, (nn.Module, torch.optim.Optimizer))}
    for by_client in suite.detectors.values():
        for detector in by_client.values():
            reachable = walk(detector)
            assert not server_side & set(reachable), type(detector).__name__


def test_fake_batches_are_sent_with_shifted_labels_and_their_update_is_not_applied():
    cfg = resolve(tiny_config(defenses=("splitguard",), clients=1, epochs=1, splitguard_start=2,
                              splitguard_fake_prob=0.5, train_limit=1200, batch_size=32))
    ctx = build_context(cfg, lambda e: None, None)
    ctx.defenses = client_defenses(ctx)
    ctx.defenses.start_epoch(1)
    steps, sent, seen = [], [], []
    ctx.client_opts[0].register_step_pre_hook(lambda opt, args, kwargs: steps.append(1))
    original = ctx.attack.server_loss
    ctx.attack.server_loss = lambda c, wire, labels: sent.append(labels.clone()) or original(c, wire, labels)
    detector = ctx.defenses.detectors["splitguard"][0]
    observe = detector.observe
    detector.observe = lambda obs: seen.append(obs) or observe(obs)
    train_epoch(ctx)
    report = ctx.defenses.end_epoch()["splitguard"]
    fakes = [obs for obs in seen if obs.fake]
    assert report["fake_batches"] == len(fakes) > 0
    assert len(steps) == len(sent) - len(fakes)
    assert [s.tolist() for s in sent] == [obs.sent_labels.tolist() for obs in seen]
    for obs in seen:
        assert torch.equal(obs.sent_labels, obs.labels) != obs.fake


def test_honest_run_with_all_detectors_records_scores_and_repeats():
    cfg = tiny_config(defenses=ALL, epochs=2, clients=2, train_limit=900, batch_size=32, splitguard_start=2,
                      splitguard_fake_prob=0.3, scrutinizer_window=4, splitout_window=3, save_weights=False)
    reports = []
    for _ in range(2):
        events = []
        result = run(cfg, events.append)
        assert result.status == "completed", result.error
        reports.append([e for e in events if isinstance(e, DefenseScores)])
    first, second = reports
    assert [e.defenses for e in first] == [e.defenses for e in second]
    assert [e.epoch for e in first] == [1, 2]
    for e in first:
        assert set(e.defenses) == set(ALL)
        for name, report in e.defenses.items():
            assert len(report["scores"]) == 2
            assert all(s is None or 0.0 <= s <= 1.0 for s in report["scores"])
    assert first[-1].defenses["splitguard"]["fake_batches"] > 0


def test_run_file_keeps_scores_per_epoch_and_client_and_the_verdict(tmp_path):
    cfg = tiny_config(defenses=("splitguard", "splitout"), epochs=2, clients=2, splitguard_start=1,
                      splitguard_fake_prob=0.4, splitout_window=2, save_weights=False)
    store = RunStore(tmp_path)
    result = run(cfg, store.recorder(), run_id="r1")
    assert result.status == "completed"
    doc = store.load("r1")
    assert set(doc["defenses"]) == {"splitguard", "splitout"}
    for entry in doc["defenses"].values():
        assert len(entry["scores"]) == 2 and all(len(epoch) == 2 for epoch in entry["scores"])
        flag = entry["flagged_at"]
        assert flag is None or (1 <= flag["epoch"] <= 2 and flag["step"] >= 1 and flag["client"] in (1, 2))
    assert doc["defenses"]["splitguard"]["fake_batches"] >= 0
    assert doc["config"]["defenses"] == ["splitguard", "splitout"]


def test_watching_detectors_leave_training_as_it_was():
    """Scrutinizer and SplitOut only watch (SplitOut's simulation uses its own random
    stream): the run trains exactly as without them. SplitGuard's fake batches do not."""
    plain = run(tiny_config(epochs=2, save_weights=False))
    watched = run(tiny_config(epochs=2, save_weights=False, defenses=("scrutinizer", "splitout"),
                              scrutinizer_window=2, splitout_window=2))
    assert [(e["train_loss"], e["cda"]) for e in plain.epochs] == [(e["train_loss"], e["cda"]) for e in watched.epochs]
    guarded = run(tiny_config(epochs=2, save_weights=False, defenses=("splitguard",), splitguard_start=1,
                              splitguard_fake_prob=0.5))
    assert [e["train_loss"] for e in guarded.epochs] != [e["train_loss"] for e in plain.epochs]


# ---- config ---------------------------------------------------------------------------

def test_defense_config_checks():
    assert RunConfig.from_dict({"defenses": ["splitout", "splitguard"]}).defenses == ("splitout", "splitguard")
    with pytest.raises(ConfigError, match="--defenses"):
        RunConfig(defenses=("strip",)).replace()
    with pytest.raises(ConfigError, match="twice"):
        RunConfig(defenses=("splitout", "splitout")).replace()
    with pytest.raises(ConfigError, match="--splitguard-fake-prob"):
        RunConfig(splitguard_fake_prob=1.0).replace()
    with pytest.raises(ConfigError, match="--splitout-features"):
        RunConfig(splitout_features="sideways").replace()
    assert RunConfig(splitout_features="raw").replace().splitout_features == "raw"
