"""Datasets as tensors: loading, Table 1 splits, the K+1 i.i.d. shares, batching.

Images stay uint8 (N, C, H, W) on the run's device for the whole run; a batch is a
slice, normalised on the fly (docs/protocol.md section 2). No per-sample Python, no workers.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig


from ..errors import DataError  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float32, ToTensor then Normalize(mean, std)."""
        x = images.float().div_(255.0)
        c = x.shape[1]
        mean = torch.tensor(self.mean, device=x.device).view(1, c, 1, 1) if len(self.mean) > 1 else self.mean[0]
        std = torch.tensor(self.std, device=x.device).view(1, c, 1, 1) if len(self.std) > 1 else self.std[0]
        return x.sub_(mean).div_(std)


TO_TENSOR = Normalization((0.0,), (1.0,))
HALF = Normalization((0.5,), (0.5,))
CIFAR = Normalization((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


@dataclass(frozen=True)
class RawData:
    """A dataset's official train and test parts, uint8 images and int64 labels."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W)
    y: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class ExperimentData:
    """Table 1 of the paper, with the train pool cut into K+1 shares (0 = attacker)."""
    name: str
    shares: list[Split]
    val: Split
    test: Split
    norm: Normalization
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.test.x.shape[1:])  # type: ignore[return-value]


def default_data_root() -> Path:
    return Path(os.environ.get("SLTUI_DATA") or Path.home() / ".cache" / "sltui" / "data")


# ---------------------------------------------------------------- raw loaders
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {body.size}")
    return body.reshape(dims)


def _find_raw(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _reason(exc: Exception) -> str:
    """The last non-empty line of an error: torchvision's download errors put the cause
    (e.g. ``<urlopen error [Errno -3] Temporary failure in name resolution>``) last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:160]


def _download_hint(name: str, root: Path, exc: Exception | None) -> DataError:
    why = f" and could not be downloaded (no network? {_reason(exc)})" if exc else ""
    return DataError(
        f"{name} not found under {root}{why}; pass --data-root DIR (or set SLTUI_DATA) to a folder "
        f"holding {name}/raw/*-ubyte[.gz] in torchvision's layout"
    )


def load_idx_dataset(root: Path, name: str, download: bool = True) -> RawData:
    """MNIST / FashionMNIST from ROOT/<name>/raw in torchvision's layout (.gz or unpacked).
    Missing files are downloaded there by torchvision when `download` is set (the first
    run on a machine with network); without network the error is one line."""
    folder = root / name / "raw"
    paths = [_find_raw(folder, stem) for stem in _IDX_STEMS]
    if None in paths:
        if not download:
            raise _download_hint(name, root, None)
        try:
            import torchvision.datasets as tvd

            getattr(tvd, name)(str(root), train=True, download=True)
        except Exception as exc:  # network errors come in many types
            raise _download_hint(name, root, exc) from None
        paths = [_find_raw(folder, stem) for stem in _IDX_STEMS]
        if None in paths:
            raise _download_hint(name, root, None)
    try:
        arrays = [_read_idx(p) for p in paths]  # type: ignore[arg-type]
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {name} under {folder}: {exc}") from None
    tx, ty, vx, vy = (torch.from_numpy(a.copy()) for a in arrays)
    return RawData(tx.unsqueeze(1), ty.long(), vx.unsqueeze(1), vy.long())


def load_cifar10(root: Path, download: bool = True) -> RawData:
    """The original CIFAR-10 through torchvision (python pickles, MD5-checked by it)."""
    import torchvision.datasets as tvd

    try:
        train = tvd.CIFAR10(str(root), train=True, download=download)
        test = tvd.CIFAR10(str(root), train=False, download=download)
    except Exception as exc:
        raise DataError(
            f"CIFAR-10 not found under {root} and could not be downloaded (no network? {_reason(exc)}); "
            f"pass --data-root DIR (or set SLTUI_DATA) to a folder holding cifar-10-batches-py, "
            f"or use --dataset cifar10-jpeg with a folder holding CIFAR10-JPEG"
        ) from None

    def conv(ds) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                torch.tensor(ds.targets, dtype=torch.long, device="cpu"))

    (tx, ty), (vx, vy) = conv(train), conv(test)
    return RawData(tx, ty, vx, vy)


def _cache_dir() -> Path:
    return Path(os.environ.get("SLTUI_CACHE") or Path.home() / ".cache" / "sltui")


def _decode_image_folder(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """An ImageFolder tree (class folders sorted = labels) decoded to uint8 tensors."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    images, labels = [], []
    for label, cls in enumerate(classes):
        for file in sorted((folder / cls).iterdir()):
            if file.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            images.append(decode_image(read_file(str(file)), mode=ImageReadMode.RGB))
            labels.append(label)
    if not images:
        raise DataError(f"no images under {folder}")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long, device="cpu")


def load_image_folder_cifar(root: Path) -> RawData:
    """CIFAR-10 as an image folder: ROOT/CIFAR10-JPEG/{train,test}/<class>/*.jpg.

    Decoding 60 000 JPEGs takes a while, so the tensors are cached under
    ~/.cache/sltui (or $SLTUI_CACHE), keyed by the folder's path and listing, and
    read back with ``weights_only=True``."""
    base = root / "CIFAR10-JPEG"
    if not (base / "train").is_dir() or not (base / "test").is_dir():
        raise DataError(
            f"CIFAR10-JPEG/train and /test not found under {root}; pass --data-root DIR (or set SLTUI_DATA) "
            f"to a folder holding CIFAR10-JPEG/{{train,test}}/<class>/*.jpg (it is never downloaded)"
        )
    key = hashlib.sha1(str(base.resolve()).encode())
    for part in ("train", "test"):
        for cls in sorted((base / part).iterdir()):
            key.update(f"{part}/{cls.name}:{len(os.listdir(cls)) if cls.is_dir() else 0}".encode())
    cache = _cache_dir() / f"cifar10-jpeg-{key.hexdigest()[:16]}.pt"
    if cache.is_file():
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            return RawData(blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"])
        except Exception:
            pass  # a broken cache is rebuilt below
    tx, ty = _decode_image_folder(base / "train")
    vx, vy = _decode_image_folder(base / "test")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save({"train_x": tx, "train_y": ty, "test_x": vx, "test_y": vy}, tmp)
        os.replace(tmp, cache)
    except OSError:
        pass  # caching is an optimisation only
    return RawData(tx, ty, vx, vy)


def load_emnist_letters(root: Path, download: bool = True) -> RawData:
    """EMNIST letters through torchvision; images transposed upright."""
    import torchvision.datasets as tvd

    try:
        train = tvd.EMNIST(str(root), split="letters", train=True, download=download)
        test = tvd.EMNIST(str(root), split="letters", train=False, download=download)
    except Exception as exc:
        raise DataError(
            f"EMNIST letters not found under {root}/EMNIST and could not be downloaded (no network? "
            f"{_reason(exc)}); pass --data-root DIR to a folder holding EMNIST/raw/emnist-letters-*-ubyte"
        ) from None
    return RawData(train.data.transpose(1, 2).unsqueeze(1).contiguous(), train.targets.long(),
                   test.data.transpose(1, 2).unsqueeze(1).contiguous(), test.targets.long())


def make_synthetic(channels: int, side: int, n_train: int = 3000, n_test: int = 1000, seed: int = 0) -> RawData:
    """A small learnable 10-class image set for tests: each class is a bright bar at its
    own place and angle on noise. Deterministic in `seed`; no files needed. Made on the
    host, like every dataset (the run moves it to its device)."""
    g = torch.Generator(device="cpu").manual_seed(seed)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g, device="cpu")
        x = torch.rand(n, channels, side, side, generator=g, device="cpu") * 90
        rows = torch.arange(side, device="cpu").view(1, side, 1)
        cols = torch.arange(side, device="cpu").view(1, 1, side)
        cls = y.view(n, 1, 1)
        horizontal = (rows - (8 + 2 * (cls % 5))).abs() < 2
        vertical = (cols - (6 + 3 * (cls % 5))).abs() < 2
        mask = torch.where(cls < 5, horizontal & (cols > 4), vertical & (rows > 10))
        x = x + mask.unsqueeze(1).float() * 150
        return x.clamp_(0, 255).to(torch.uint8), y.long()

    tx, ty = draw(n_train)
    vx, vy = draw(n_test)
    return RawData(tx, ty, vx, vy)


# ---------------------------------------------------------------- where files live
DOWNLOADABLE = ("mnist", "mnist-10k", "fmnist", "fmnist-5", "cifar10", "emnist-letters-aj")
"""Datasets torchvision downloads into the data root when they are missing (network needed)."""


def dataset_folder(dataset: str, root: Path) -> Path:
    """The folder under `root` that the loader of `dataset` reads (and downloads into)."""
    folders = {"mnist": "MNIST/raw", "mnist-10k": "MNIST/raw", "fmnist": "FashionMNIST/raw",
               "fmnist-5": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py", "cifar10-jpeg": "CIFAR10-JPEG",
               "emnist-letters-aj": "EMNIST/raw"}
    if dataset not in folders:
        raise DataError(f"{dataset!r} is generated, not read from files")
    return root / folders[dataset]


def missing_files(dataset: str, root: Path) -> list[str]:
    """What the loader of `dataset` needs under `root` and does not find there ([] = all
    found). Checks names only, so it is quick enough to run for every dataset."""
    folder = dataset_folder(dataset, root)
    if dataset.startswith(("mnist", "fmnist")):
        return [stem for stem in _IDX_STEMS if _find_raw(folder, stem) is None]
    if dataset == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        return [name for name in names if not (folder / name).is_file()]
    if dataset == "cifar10-jpeg":
        return [part + "/" for part in ("train", "test") if not (folder / part).is_dir()]
    names = [f"emnist-letters-{part}-{kind}-ubyte" for part in ("train", "test") for kind in ("images-idx3", "labels-idx1")]
    return [name for name in names if not (folder / name).is_file()]


# ---------------------------------------------------------------- Table 1
def host_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed`: splits and subsets are drawn on the host."""
    return torch.Generator(device="cpu").manual_seed(seed)


def _take_classes(x: torch.Tensor, y: torch.Tensor, keep: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    mask = (y >= offset) & (y < offset + keep)
    return x[mask], y[mask] - offset


def load_raw(dataset: str, root: Path) -> tuple[RawData, Normalization, int]:
    """The official parts of `dataset`, its normalisation and number of classes."""
    if dataset in ("mnist", "mnist-10k"):
        return load_idx_dataset(root, "MNIST"), TO_TENSOR, 10
    if dataset in ("fmnist", "fmnist-5"):
        raw = load_idx_dataset(root, "FashionMNIST")
        if dataset == "fmnist-5":
            tx, ty = _take_classes(raw.train_x, raw.train_y, 5)
            vx, vy = _take_classes(raw.test_x, raw.test_y, 5)
            return RawData(tx, ty, vx, vy), HALF, 5
        return raw, HALF, 10
    if dataset == "cifar10":
        return load_cifar10(root), CIFAR, 10
    if dataset == "cifar10-jpeg":
        return load_image_folder_cifar(root), CIFAR, 10
    if dataset == "emnist-letters-aj":
        raw = load_emnist_letters(root)
        tx, ty = _take_classes(raw.train_x, raw.train_y, 10, offset=1)
        vx, vy = _take_classes(raw.test_x, raw.test_y, 10, offset=1)
        return RawData(tx, ty, vx, vy), TO_TENSOR, 10
    if dataset == "synthetic":
        return make_synthetic(1, 28), TO_TENSOR, 10
    if dataset == "synthetic-rgb":
        return make_synthetic(3, 32), CIFAR, 10
    raise DataError(f"unknown dataset {dataset!r}")


EVAL_SPLIT_SEED = 0
"""Seed of the fixed permutation that cuts CIFAR-10's test part into validation and test
(SPEC section 2), and of the --eval-limit subsets: every run, whatever its seed, is
validated and tested on the same images, so spread over seeds is training spread only.
Recorded in each run file as ``env.eval_split_seed``."""


def table1_splits(dataset: str, raw: RawData) -> tuple[Split, Split, Split]:
    """(train pool, validation, test) as Table 1 of the paper.

    MNIST-like: the train part's first images are the pool, the last 1/6 (10 000 of
    60 000) validation, the test part is the test set. CIFAR-10: the whole train part is
    the pool; the test part is split by a fixed permutation (seed EVAL_SPLIT_SEED, not the
    run's) into 5 000 validation and 5 000 test images (halves for other sizes)."""
    n_train, n_test = len(raw.train_y), len(raw.test_y)
    if dataset.startswith("cifar10") or dataset == "synthetic-rgb":
        perm = torch.randperm(n_test, generator=host_generator(EVAL_SPLIT_SEED), device="cpu")
        half = n_test // 2
        val_idx, test_idx = perm[:half], perm[half:]
        pool = Split(raw.train_x, raw.train_y)
        return pool, Split(raw.test_x[val_idx], raw.test_y[val_idx]), Split(raw.test_x[test_idx], raw.test_y[test_idx])
    n_val = n_train // 6
    n_pool = n_train - n_val
    if dataset == "mnist-10k":
        n_pool = 10_000
    pool = Split(raw.train_x[:n_pool], raw.train_y[:n_pool])
    val = Split(raw.train_x[n_train - n_val:], raw.train_y[n_train - n_val:])
    return pool, val, Split(raw.test_x, raw.test_y)


def make_shares(pool: Split, parts: int, seed: int) -> list[Split]:
    """Split the pool i.i.d. (seeded) into `parts` equal shares; a remainder is dropped."""
    size = len(pool) // parts
    if size == 0:
        raise DataError(f"the train pool has {len(pool)} images, too few for {parts} shares")
    perm = torch.randperm(len(pool), generator=host_generator(seed), device="cpu")
    return [Split(pool.x[perm[i * size:(i + 1) * size]], pool.y[perm[i * size:(i + 1) * size]]) for i in range(parts)]


def limit_split(split: Split, n: int | None, seed: int) -> Split:
    """A seeded random subset of `n` images, kept in their order. Random, not the first n:
    an image folder lists its files class by class, and its first 5 000 are all airplanes."""
    if n is None or n >= len(split):
        return split
    keep = limit_indices(len(split), n, seed).to(split.y.device)
    return Split(split.x[keep], split.y[keep])


def limit_indices(total: int, n: int, seed: int) -> torch.Tensor:
    """The rows `limit_split` keeps: a seeded random `n` of `total`, in their order."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randperm(total, generator=gen, device="cpu")[:n].sort().values


def load_experiment_data(cfg: RunConfig, device: torch.device) -> ExperimentData:
    root = Path(cfg.data_root).expanduser() if cfg.data_root else default_data_root()
    raw, norm, classes = load_raw(cfg.dataset, root)
    pool, val, test = table1_splits(cfg.dataset, raw)
    pool = limit_split(pool, cfg.train_limit, cfg.seed)
    shares = make_shares(pool, cfg.clients + 1, cfg.seed)
    return ExperimentData(
        name=cfg.dataset,
        shares=[s.to(device) for s in shares],
        val=limit_split(val, cfg.eval_limit, EVAL_SPLIT_SEED + 1).to(device),
        test=limit_split(test, cfg.eval_limit, EVAL_SPLIT_SEED + 2).to(device),
        norm=norm,
        num_classes=classes,
    )


# ---------------------------------------------------------------- batching
def batch_order(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """A shuffled epoch as a list of index tensors on `device` (the last batch may be
    smaller), drawn on the host from the CPU `generator`: the same order on every device."""
    perm = torch.randperm(n, generator=generator, device="cpu").to(device)
    return list(perm.split(batch_size))
