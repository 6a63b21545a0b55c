"""Fashion-MNIST beside the digits: the bundled subset, IDX files, where the full sets are found, the subset's picks,
and the classifier of one dataset refused for the other.

The full sets are IDX files written here with ``struct``; ``DDPM_PLAYGROUND_DATA`` points at a temp folder and
``paths.SYSTEM_DATASETS`` at another, so no test reads the machine's own /usr/share/datasets.
"""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from ddpm_core import paths
from ddpm_core.classifier import load_classifier
from ddpm_core.data import (
    DATASETS,
    FASHION,
    IDX_NAMES,
    ImageData,
    ImageSplit,
    dataset_info,
    fashion_subset,
    find_full,
    load_bundled,
    load_dataset,
    load_full,
    read_idx,
)
from ddpm_core.paths import classifier_dir

# ---------------------------------------------------------------------------------------------
# The bundled subset
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion() -> ImageData:
    return load_bundled("fashion")


def test_the_bundled_fashion_items_are_balanced_and_split_without_overlap(fashion: ImageData) -> None:
    assert fashion.dataset == "fashion" and fashion.info is FASHION and fashion.source == "bundled"
    assert fashion.train.images.shape == (4000, 28, 28) and fashion.held_out.images.shape == (1000, 28, 28)
    assert fashion.train.images.dtype == np.uint8 and fashion.train.labels.dtype == np.int64
    assert np.bincount(fashion.train.labels).tolist() == [400] * 10
    assert np.bincount(fashion.held_out.labels).tolist() == [100] * 10
    train_rows = {img.tobytes() for img in fashion.train.images}
    assert not any(img.tobytes() in train_rows for img in fashion.held_out.images)
    assert fashion.description == "Fashion-MNIST, 5,000-image subset shipped in assets/fashion_5k.npz"


def test_the_bundled_fashion_items_look_like_fashion_mnist_not_digits(fashion: ImageData) -> None:
    x = fashion.train.images.astype(np.float64)
    y = fashion.train.labels
    border = np.concatenate([x[:, 0, :], x[:, -1, :], x[:, :, 0], x[:, :, -1]], axis=1).mean(axis=1)
    assert np.median(border) < 20 and x.max() == 255  # a light item on a dark background
    digits = load_bundled("digits").train.images
    assert (x > 0).mean() > 0.4 > 0.25 > (digits > 0).mean()  # clothes cover much more of the picture than strokes
    trousers = x[y == FASHION.class_names.index("Trouser")].mean(axis=0)
    gap, legs = trousers[18:26, 13:15].mean(), trousers[18:26, [9, 10, 17, 18]].mean()
    assert gap < 0.6 * legs  # low down, the mean trouser is dark between its two legs
    for shoe in ("Sandal", "Sneaker"):
        mean = x[y == FASHION.class_names.index(shoe)].mean(axis=0)
        assert mean[:8].mean() < 0.5 * mean[16:].mean()  # shoes sit low in the picture, their tops empty


def test_dataset_info_names_the_classes_and_refuses_unknown_names() -> None:
    assert set(DATASETS) == {"digits", "fashion"} and dataset_info("fashion") is FASHION
    assert FASHION.class_names[0] == "T-shirt/top" and FASHION.class_name(9) == "Ankle boot"
    assert FASHION.short_names[9] == "Boot" and len(FASHION.class_names) == len(FASHION.short_names) == 10
    assert dataset_info("digits").class_names == tuple("0123456789")
    for bad in ("cifar", ["digits"]):
        with pytest.raises(ValueError, match=r"unknown dataset .*choose 'digits' or 'fashion'"):
            dataset_info(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_bundled("cifar")


# ---------------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """LeCun's IDX layout, written out: two zero bytes, the type, the number of dimensions, the sizes, the data."""
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def test_read_idx_reads_plain_and_gzipped_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    for name, array in (("images", images), ("labels", labels)):
        for suffix in ("", ".gz"):
            got = read_idx(write_idx(tmp_path / f"{name}{suffix}", array))
            assert got.dtype == np.uint8 and got.shape == array.shape and np.array_equal(got, array)
            assert got.flags.writeable  # a copy, not a view of the file's bytes
    assert (tmp_path / "images.gz").read_bytes()[:2] == b"\x1f\x8b"  # really gzipped


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (idx_bytes(np.zeros((2, 3)))[:-1], "holds 5 bytes of data where its header says 6"),
        (idx_bytes(np.zeros((2, 3))) + b"\x00", "holds 7 bytes of data where its header says 6"),
        (idx_bytes(np.zeros((2, 3)), type_code=0x0D), "not an IDX file of unsigned bytes"),  # 0x0D: float32
        (b"\x01\x00" + idx_bytes(np.zeros(4))[2:], "not an IDX file of unsigned bytes"),
        (b"\x00\x00", "not an IDX file of unsigned bytes"),
        (b"", "not an IDX file of unsigned bytes"),
    ],
)
def test_read_idx_refuses_a_wrong_magic_or_a_wrong_length(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


# ---------------------------------------------------------------------------------------------
# The full sets: where they are found
# ---------------------------------------------------------------------------------------------


def fake_full_set(folder: Path, train_per_class: int = 3, test_per_class: int = 2, gz: bool = True) -> dict:
    """Four IDX files in ``folder``: small train and test splits whose image i has pixel [0, 0] = i (mod 256)."""
    arrays = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
        images = np.zeros((len(labels), 28, 28), np.uint8)
        images[:, 0, 0] = np.arange(len(labels)) % 256
        images[:, 14, :] = labels[:, None] * 20
        arrays[(split, "images")], arrays[(split, "labels")] = images, labels
    for key, name in IDX_NAMES.items():
        write_idx(folder / (f"{name}.gz" if gz else name), arrays[key])
    return arrays


@pytest.fixture()
def data_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """$DDPM_PLAYGROUND_DATA and the system folder, both empty temp folders (never /usr/share/datasets)."""
    env_root, system = tmp_path / "env-data", tmp_path / "system-datasets"
    env_root.mkdir()
    system.mkdir()
    monkeypatch.setenv(paths.DATA_ENV, str(env_root))
    monkeypatch.setattr(paths, "SYSTEM_DATASETS", system)
    return env_root, system


def test_the_full_set_is_found_in_debians_layout(data_roots: tuple[Path, Path]) -> None:
    env_root, _ = data_roots
    arrays = fake_full_set(env_root / "fashion-mnist")
    assert find_full("fashion") == env_root / "fashion-mnist"
    full = load_full("fashion")
    assert full.dataset == "fashion" and full.source == "full"
    assert len(full.train) == 30 and len(full.held_out) == 20
    assert np.array_equal(full.train.images, arrays[("train", "images")])
    assert np.array_equal(full.held_out.labels, arrays[("test", "labels")]) and full.held_out.labels.dtype == np.int64
    assert full.description == "Fashion-MNIST, full set"  # no server folder: it goes into shared checkpoints
    assert load_dataset("fashion", "full").description == full.description
    assert find_full("digits") is None  # the fashion files are not the digits


def test_the_full_set_is_found_in_torchvisions_layout_and_in_the_system_folder(
    data_roots: tuple[Path, Path], tmp_path: Path
) -> None:
    env_root, system = data_roots
    fake_full_set(system / "FashionMNIST" / "raw", gz=False)
    assert find_full("fashion") == system / "FashionMNIST" / "raw"  # $DDPM_PLAYGROUND_DATA is empty: the next root
    fake_full_set(env_root / "fashion-mnist", train_per_class=4)
    assert find_full("fashion") == env_root / "fashion-mnist"  # $DDPM_PLAYGROUND_DATA comes first
    assert len(load_full("fashion").train) == 40
    fake_full_set(tmp_path / "mine" / "MNIST" / "raw", train_per_class=5)
    assert find_full("digits", root=tmp_path / "mine") == tmp_path / "mine" / "MNIST" / "raw"
    assert find_full("fashion", root=tmp_path / "mine") is None  # a given root is the only place looked in
    assert len(load_full("digits", root=tmp_path / "mine").train) == 50
    fake_full_set(tmp_path / "flat")
    assert find_full("digits", root=tmp_path / "flat") == tmp_path / "flat"  # the files right in the root


def test_a_folder_missing_a_file_is_not_a_full_set(data_roots: tuple[Path, Path]) -> None:
    env_root, _ = data_roots
    fake_full_set(env_root / "fashion-mnist")
    (env_root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert find_full("fashion") is None


def test_without_the_full_set_the_error_says_where_it_looked(data_roots: tuple[Path, Path]) -> None:
    env_root, system = data_roots
    with pytest.raises(FileNotFoundError) as excinfo:
        load_full("fashion")
    assert str(excinfo.value) == (
        f"no Fashion-MNIST IDX files under {env_root} or {system} (apt-get install dataset-fashion-mnist installs them)"
    )
    with pytest.raises(FileNotFoundError, match=re.escape(f"no MNIST digits IDX files under {env_root} or {system}")):
        load_dataset("digits", "full")


def test_idx_files_of_the_wrong_shape_are_refused(data_roots: tuple[Path, Path]) -> None:
    env_root, _ = data_roots
    folder = env_root / "fashion-mnist"
    fake_full_set(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(29, np.uint8))  # one label short
    with pytest.raises(ValueError, match="do not hold 28×28 images with one label each"):
        load_full("fashion")
    fake_full_set(folder)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((20, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="do not hold 28×28 images"):
        load_full("fashion")


# ---------------------------------------------------------------------------------------------
# How the bundled subset is picked from the full set
# ---------------------------------------------------------------------------------------------


def test_fashion_subset_takes_the_first_test_images_of_each_class_in_file_order() -> None:
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.repeat(np.arange(10), 4)).astype(np.int64)  # 4 of each class, shuffled
    images = np.zeros((len(labels), 28, 28), np.uint8)
    images[:, 0, 0] = np.arange(len(labels))  # each image carries its index in the file
    empty = ImageSplit(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64))
    full = ImageData(empty, ImageSplit(images, labels), "full", "fake", "fashion")
    picked, picked_labels = fashion_subset(full, per_class=3)
    expected = []  # by hand: walk the file once per class and keep its first three
    for c in range(10):
        expected += [i for i in range(len(labels)) if labels[i] == c][:3]
    assert picked[:, 0, 0].tolist() == expected
    assert picked_labels.tolist() == [c for c in range(10) for _ in range(3)] and picked_labels.dtype == np.uint8
    picked[0, 0, 0] = 255
    assert images[expected[0], 0, 0] == expected[0]  # a copy: the full set is untouched


# ---------------------------------------------------------------------------------------------
# A classifier reads one dataset
# ---------------------------------------------------------------------------------------------


def test_the_classifier_of_one_dataset_is_refused_for_the_other() -> None:
    with pytest.raises(ValueError, match=r"the classifier in .*classifier reads digits, not fashion"):
        load_classifier(classifier_dir("digits"), "fashion")  # made before there were two: its config names none
    with pytest.raises(ValueError, match=r"the classifier in .*fashion-classifier reads fashion, not digits"):
        load_classifier(classifier_dir("fashion"), "digits")
    assert load_classifier(classifier_dir("fashion"), "fashion") is not None
    assert load_classifier(classifier_dir("digits"), "digits") is not None
    assert load_classifier(classifier_dir("fashion")) is not None  # no dataset asked: nothing to check
