"""docs/protocol.md section 2: IDX files, Table 1 splits, K+1 shares, normalisation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config import RunConfig
from engine.data import datasets as D
from engine.data.datasets import (CIFAR, HALF, TO_TENSOR, DataError, RawData, Split, load_experiment_data,
                         load_idx_dataset, load_raw, make_shares, table1_splits)

from fake_data import write_idx_dataset


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_idx_reader_reads_torchvision_layout(tmp_path, gz):
    arrays = write_idx_dataset(tmp_path, "MNIST", 12, 6, gz)
    raw = load_idx_dataset(tmp_path, "MNIST", download=False)
    assert raw.train_x.shape == (12, 1, 28, 28) and raw.train_x.dtype == torch.uint8
    assert raw.test_x.shape == (6, 1, 28, 28)
    assert raw.train_y.dtype == torch.int64
    assert np.array_equal(raw.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(raw.train_y.numpy(), arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(raw.test_x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(raw.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_idx_reader_rejects_bad_and_truncated_files(tmp_path):
    write_idx_dataset(tmp_path, "MNIST", 4, 4, gz=False)
    raw = tmp_path / "MNIST" / "raw"
    good = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(good[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_idx_dataset(tmp_path, "MNIST", download=False)
    (raw / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(DataError, match="not an IDX"):
        load_idx_dataset(tmp_path, "MNIST", download=False)


def test_missing_files_give_one_line_hint(tmp_path):
    with pytest.raises(DataError) as err:
        load_idx_dataset(tmp_path, "MNIST", download=False)
    assert "--data-root" in str(err.value) and "\n" not in str(err.value)


def test_missing_files_without_network_fail_with_one_line(tmp_path):
    with pytest.raises(DataError) as err:
        load_raw("mnist", tmp_path)
    assert "MNIST not found" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name,dataset", [("MNIST", "mnist"), ("FashionMNIST", "fmnist")])
def test_missing_files_are_downloaded_into_the_default_root(monkeypatch, name, dataset):
    """With no --data-root and no files, torchvision is asked to download the dataset into
    the default root ($SLTUI_DATA here), and the run then reads what it wrote there."""
    import torchvision.datasets as tvd

    calls = []

    class FakeTorchvision:
        def __init__(self, root, train=True, download=False):
            calls.append((Path(root), download))
            write_idx_dataset(Path(root), name, 12, 6, gz=True)

    monkeypatch.setattr(tvd, name, FakeTorchvision)
    cfg = RunConfig(dataset=dataset, clients=1)
    data = load_experiment_data(cfg, torch.device("cpu"))
    assert calls == [(D.default_data_root(), True)]
    assert sum(len(s) for s in data.shares) == 10 and len(data.test) == 6
    load_experiment_data(cfg, torch.device("cpu"))  # files now on disk: no second download
    assert len(calls) == 1


def fake_raw(n_train: int, n_test: int) -> RawData:
    """Tiny 1x2x2 images; the label is the image's index, so every split is traceable."""
    return RawData(torch.zeros(n_train, 1, 2, 2, dtype=torch.uint8), torch.arange(n_train),
                   torch.zeros(n_test, 1, 2, 2, dtype=torch.uint8), torch.arange(n_test) + 10**6)


@pytest.mark.parametrize("dataset", ["mnist", "fmnist"])
def test_table1_mnist_like(dataset):
    pool, val, test = table1_splits(dataset, fake_raw(60000, 10000))
    assert torch.equal(pool.y, torch.arange(50000)), "the first 50 000 train images"
    assert torch.equal(val.y, torch.arange(50000, 60000)), "the other 10 000"
    assert torch.equal(test.y, torch.arange(10000) + 10**6), "the 10 000 test images"


def test_table1_cifar():
    pool, val, test = table1_splits("cifar10", fake_raw(50000, 10000))
    assert torch.equal(pool.y, torch.arange(50000))
    assert len(val) == 5000 and len(test) == 5000
    assert set(val.y.tolist()).isdisjoint(test.y.tolist())
    assert sorted(val.y.tolist() + test.y.tolist()) == list(range(10**6, 10**6 + 10000))
    perm = torch.randperm(10000, generator=torch.Generator().manual_seed(D.EVAL_SPLIT_SEED))
    assert torch.equal(val.y, perm[:5000] + 10**6) and torch.equal(test.y, perm[5000:] + 10**6), \
        "the halves of a fixed permutation of its own seed"


def test_table1_mnist_10k_pool():
    pool, val, _ = table1_splits("mnist-10k", fake_raw(60000, 10000))
    assert torch.equal(pool.y, torch.arange(10000)) and len(val) == 10000


@pytest.mark.parametrize("pool_size", [50000, 1003])
@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_shares_disjoint_equal_remainder_dropped(k, pool_size):
    pool = Split(torch.zeros(pool_size, 1, 1, 1, dtype=torch.uint8), torch.arange(pool_size))
    shares = make_shares(pool, k + 1, seed=47)
    size = pool_size // (k + 1)
    assert len(shares) == k + 1
    assert all(len(s) == size and s.x.shape[0] == size for s in shares)
    ids = torch.cat([s.y for s in shares])
    assert len(set(ids.tolist())) == size * (k + 1), "disjoint"
    assert torch.equal(torch.cat([s.y for s in make_shares(pool, k + 1, seed=47)]), ids), "seeded"
    assert not torch.equal(torch.cat([s.y for s in make_shares(pool, k + 1, seed=48)]), ids)


def test_shares_are_iid_not_contiguous():
    pool = Split(torch.zeros(1000, 1, 1, 1, dtype=torch.uint8), torch.arange(1000))
    first = make_shares(pool, 2, seed=47)[0].y
    assert not torch.equal(first.sort().values, torch.arange(500))


def test_too_few_images_for_the_shares():
    pool = Split(torch.zeros(3, 1, 1, 1, dtype=torch.uint8), torch.arange(3))
    with pytest.raises(DataError):
        make_shares(pool, 4, seed=47)


def test_normalisations_match_the_authors():
    white = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    black = torch.zeros((1, 1, 2, 2), dtype=torch.uint8)
    assert torch.equal(TO_TENSOR.apply(white), torch.ones(1, 1, 2, 2))
    assert torch.equal(TO_TENSOR.apply(black), torch.zeros(1, 1, 2, 2))
    assert torch.equal(HALF.apply(white), torch.ones(1, 1, 2, 2))
    assert torch.equal(HALF.apply(black), -torch.ones(1, 1, 2, 2))
    rgb = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    expected = torch.tensor([(v / 255 - m) / s for v, m, s in zip((0, 128, 255), mean, std)]).view(1, 3, 1, 1)
    torch.testing.assert_close(CIFAR.apply(rgb), expected.expand(1, 3, 2, 2))
    assert rgb.dtype == torch.uint8, "apply does not change its input"


def test_load_raw_picks_the_normalisation_per_dataset(tmp_path, monkeypatch):
    write_idx_dataset(tmp_path, "MNIST", 6, 6, gz=True)
    write_idx_dataset(tmp_path, "FashionMNIST", 20, 20, gz=False)
    assert load_raw("mnist", tmp_path)[1] == TO_TENSOR
    assert load_raw("mnist-10k", tmp_path)[1] == TO_TENSOR
    raw, norm, classes = load_raw("fmnist", tmp_path)
    assert norm == HALF and classes == 10
    raw5, norm5, classes5 = load_raw("fmnist-5", tmp_path)
    assert norm5 == HALF and classes5 == 5 and int(raw5.train_y.max()) < 5 and len(raw5.train_y) == 10
    monkeypatch.setattr(D, "load_cifar10", lambda root, download=True: fake_raw(4, 4))
    assert load_raw("cifar10", tmp_path)[1] == CIFAR
    assert load_raw("synthetic", tmp_path)[1] == TO_TENSOR
    assert load_raw("synthetic-rgb", tmp_path)[1] == CIFAR


def test_experiment_data_on_synthetic():
    cfg = RunConfig(dataset="synthetic-rgb", clients=3, train_limit=1001, eval_limit=300, device="cpu")
    data = load_experiment_data(cfg, torch.device("cpu"))
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert len(data.shares) == 4 and all(len(s) == 1001 // 4 for s in data.shares)
    assert len(data.val) == 300 and len(data.test) == 300
    assert data.shares[0].x.dtype == torch.uint8


def test_validation_and_test_do_not_depend_on_the_run_seed(monkeypatch):
    # CIFAR-like data whose test labels are the image indices, so the split is traceable.
    n_test = 400
    raw = D.make_synthetic(3, 32, 200, n_test, seed=0)
    raw = RawData(raw.train_x, raw.train_y, raw.test_x, torch.arange(n_test))
    monkeypatch.setattr(D, "load_raw", lambda dataset, root: (raw, CIFAR, 10))
    perm = torch.randperm(n_test, generator=torch.Generator().manual_seed(0))
    for limit in (None, 50):
        got = [load_experiment_data(RunConfig(dataset="synthetic-rgb", seed=seed, eval_limit=limit), torch.device("cpu"))
               for seed in (1, 2)]
        assert torch.equal(got[0].val.y, got[1].val.y) and torch.equal(got[0].test.y, got[1].test.y)
        assert not torch.equal(got[0].shares[1].y, got[1].shares[1].y), "the run seed still draws the shares"
        if limit is None:
            assert torch.equal(got[0].val.y, perm[:n_test // 2]) and torch.equal(got[0].test.y, perm[n_test // 2:])
        else:
            assert set(got[0].val.y.tolist()) <= set(perm[:n_test // 2].tolist()) and len(got[0].val) == limit


def test_limits_draw_from_every_class_of_a_class_sorted_folder():
    # An image folder (cifar10-jpeg) lists its files class by class: a limit must not keep one class.
    y = torch.arange(10).repeat_interleave(100)
    split = Split(torch.arange(1000).view(1000, 1, 1, 1).to(torch.uint8), y)
    kept = D.limit_split(split, 200, seed=47)
    assert len(kept) == 200 and len(set(kept.y.tolist())) == 10
    assert torch.equal(kept.y, D.limit_split(split, 200, seed=47).y)      # seeded
    assert not torch.equal(kept.y, D.limit_split(split, 200, seed=48).y)
    assert D.limit_split(split, None, seed=1) is split and D.limit_split(split, 5000, seed=1) is split


def test_synthetic_is_deterministic():
    a, b = D.make_synthetic(1, 28, 50, 10, seed=0), D.make_synthetic(1, 28, 50, 10, seed=0)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
