"""Tab 3 trains on a dataset's full set where this server has it installed, and on the shipped images otherwise.

The full set is a few IDX files written here in Debian's layout (``ROOT/fashion-mnist/train-images-idx3-ubyte.gz``
…), with 20 training and 5 test images per class; ``DDPM_PLAYGROUND_DATA`` names ROOT and ``paths.SYSTEM_DATASETS``
is an empty temp folder, so no test reads the machine's own /usr/share/datasets.
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client.exceptions import AppError
from ui_fixtures import error_text, page

from ddpm_core import paths
from ddpm_ui import model_card, state, train_tab

pytestmark = pytest.mark.usefixtures("tiny_live")

TRAIN_PER_CLASS, TEST_PER_CLASS = 20, 5
IDX_FILES = {  # LeCun's names, as Debian's dataset-fashion-mnist installs them (gzipped)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SHIPPED = ("the 4,000 shipped", "bundled")
FULL = ("all 60,000 (installed on this server)", "full")


def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzipped IDX file of unsigned bytes: 0, 0, type 0x08, the number of dimensions, each size, the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def install_fashion(root: Path) -> Path:
    """A small full Fashion-MNIST set under ``root`` as Debian lays it out: each class a band of its own height."""
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        images = rng.integers(0, 40, (len(labels), 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label + 4 : 2 * label + 10, 6:22] = 220
        images_name, labels_name = IDX_FILES[split]
        write_idx(folder / images_name, images)
        write_idx(folder / labels_name, labels)
    return folder


@pytest.fixture()
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty folder named by ``DDPM_PLAYGROUND_DATA``, an empty system folder, no images cached before or after."""
    root, system = tmp_path / "datasets", tmp_path / "system-datasets"
    root.mkdir()
    system.mkdir()
    monkeypatch.setenv(paths.DATA_ENV, str(root))
    monkeypatch.setattr(paths, "SYSTEM_DATASETS", system)
    state.forget_data()
    yield root
    state.forget_data()  # the fake set must not outlive its test


def source_radio(request: object, value: str = "bundled") -> dict:
    """The training images' radio as the card's change sets it on this page, its value ``value`` before."""
    _, _, radio = train_tab.dataset_controls(value, request)
    return radio


def test_the_radio_offers_the_full_set_only_where_this_server_has_it(data_root: Path) -> None:
    f, d = page("f"), page("d")
    model_card.choose_dataset("fashion", f)
    radio = source_radio(f)
    assert radio["choices"] == [SHIPPED] and radio["value"] == "bundled"
    assert "Only the shipped images are on this server." in radio["info"]
    assert "packages.txt" in radio["info"] and "apt-get install dataset-fashion-mnist" in radio["info"]
    assert not state.full_set_present("fashion")

    install_fashion(data_root)
    assert state.full_set_present("fashion") and not state.full_set_present("digits")
    radio = source_radio(f)
    assert radio["choices"] == [SHIPPED, FULL] and radio["value"] == "bundled"
    assert radio["info"] == "This server has the full Fashion-MNIST training set installed."
    assert source_radio(f, "full")["value"] == "full"  # a choice still on offer stays
    radio = source_radio(d, "full")  # the fashion files are no digits: that page is offered the shipped ones only
    assert radio["choices"] == [SHIPPED] and radio["value"] == "bundled"
    assert "DDPM_PLAYGROUND_DATA" in radio["info"] and "apt-get" not in radio["info"]


def test_the_radio_follows_the_card_and_is_the_last_input_of_training() -> None:
    with gr.Blocks() as demo:
        train_tab.build_tab(demo)
    by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    radio, card = by_id["train-source"], by_id["model-info"]
    assert isinstance(radio, gr.Radio) and radio.choices == [SHIPPED, FULL] and radio.value == "bundled"
    assert not [fn for fn in demo.fns.values() if any(block == radio._id for block, _ in fn.targets)]
    (follow,) = [fn for fn in demo.fns.values() if (card._id, "change") in fn.targets]
    assert follow.fn is train_tab.dataset_controls
    assert [b._id for b in follow.inputs] == [radio._id] and radio._id in [b._id for b in follow.outputs]
    runs = [fn for fn in demo.fns.values() if fn.name in ("train_model", "train_model_for_page")]
    assert len(runs) == 2 and all(fn.inputs[-1]._id == radio._id for fn in runs)


def test_a_run_on_the_full_set_records_it(data_root: Path) -> None:
    folder = install_fashion(data_root)
    f = page("f")
    model_card.choose_dataset("fashion", f)
    outputs = list(train_tab.train_model(1, 2, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, "fast", "full",
                                         request=f))  # fmt: skip
    assert "Training on Fashion-MNIST (200 images)" in outputs[0][0]  # 20 per class in the fake set
    assert "finished at step **2**" in outputs[-1][0]
    record = state.JOB.load_result("f").config["data"]
    assert record["dataset"] == "fashion" and record["source"] == "full"
    assert record["train_images"] == 10 * TRAIN_PER_CLASS
    assert record["description"] == "Fashion-MNIST, full set" and str(folder) not in json.dumps(record)
    assert state.data("fashion", "full") is state.data("fashion", "full")  # read once, then kept


@pytest.mark.parametrize(("dataset", "installed", "how"), [
    ("fashion", False, "apt-get install dataset-fashion-mnist"),
    ("digits", True, "DDPM_PLAYGROUND_DATA"),  # Fashion-MNIST's full set is no help to a digits page
])  # fmt: skip
def test_asking_for_a_full_set_that_is_not_here_starts_nothing(
    data_root: Path, dataset: str, installed: bool, how: str
) -> None:
    if installed:
        install_fashion(data_root)
    p = page("p")
    model_card.choose_dataset(dataset, p)
    before = state.JOB.status().run_id
    with pytest.raises(gr.Error) as excinfo:
        next(train_tab.train_model(1, 2, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, "fast", "full",
                                   request=p))  # fmt: skip
    title = "Fashion-MNIST" if dataset == "fashion" else "MNIST digits"
    message = error_text(excinfo)
    assert message.startswith(
        f"This server does not have the full {title} set, so no run was started. "
        "Train on the 4,000 shipped images instead."
    )
    assert how in message and "Traceback" not in message and str(data_root) not in message
    assert not state.JOB.running and state.JOB.status().run_id == before


@pytest.mark.parametrize("source", ["everything", "FULL"])
def test_an_unknown_source_is_refused(data_root: Path, source: str) -> None:
    install_fashion(data_root)
    with pytest.raises(gr.Error) as excinfo:
        next(train_tab.train_model(1, 2, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, "fast", source))
    assert error_text(excinfo).startswith("Choose the training images: 'bundled'")
    assert not state.JOB.running


def test_the_shipped_images_still_train_where_the_full_set_is_here(data_root: Path) -> None:
    install_fashion(data_root)
    f = page("f")
    model_card.choose_dataset("fashion", f)
    outputs = list(train_tab.train_model(1, 2, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, request=f))
    assert "Training on Fashion-MNIST (the 4,000 shipped images)" in outputs[0][0]
    record = state.JOB.load_result("f").config["data"]
    assert record["dataset"] == "fashion" and record["source"] == "bundled"
    assert record["train_images"] == 4000  # 400 of each class in assets/fashion_5k.npz


def test_the_api_takes_the_source_last_and_says_when_the_full_set_is_missing(data_root: Path, gradio_client) -> None:
    api = gradio_client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/train_model"]
    source = api["parameters"][-1]
    assert source["parameter_name"] == "source" and len(api["parameters"]) == 10
    assert source["parameter_has_default"] and source["parameter_default"] == "bundled"
    with pytest.raises(AppError) as excinfo:  # a new API session is on the digits, whose full set is not here
        gradio_client.predict(1, 2, "tiny", 16, 2e-3, 0.15, 0, "start fresh", "fast", "full", api_name="/train_model")
    assert str(excinfo.value).startswith("This server does not have the full MNIST digits set")
    assert not state.JOB.running
