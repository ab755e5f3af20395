"""Tiny dataset files in torchvision's on-disk layout, for tests that go through the real
loaders without downloading anything."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, as the MNIST distribution ships them."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(root: Path, name: str, n_train: int, n_test: int, gz: bool, seed: int = 0) -> dict:
    """ROOT/<name>/raw/*-ubyte[.gz] in torchvision's layout; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    for stem, array in arrays.items():
        blob = idx_bytes(array)
        if gz:
            (raw / (stem + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (raw / stem).write_bytes(blob)
    return arrays
