"""The page's dataset (tab 3's radio and the model card): per page, a model of each dataset, training on the choice.

The tiny digits and fashion models stand in for the shipped ones (``tiny_live``); each fake request is one page.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from ui_fixtures import error_text, page

from ddpm_core import pictures
from ddpm_core.checkpoints import CONFIG_FILE, MODEL_FILE
from ddpm_core.data import DIGITS, FASHION
from ddpm_core.paths import runs_dir
from ddpm_ui import model_card, state, train_tab

pytestmark = pytest.mark.usefixtures("tiny_live")

DIGITS_LINE = "**Dataset:** MNIST digits (handwritten digits 0 to 9)."
FASHION_LINE = "**Dataset:** Fashion-MNIST (10 kinds of clothing, shoes and bags, from T-shirts to ankle boots)."
# The preview: 10 × 10 pictures of 28 px with 2-px gaps around each, everything drawn 4×: (10·30 + 2)·4 px a side.
PREVIEW_SIDE = (10 * (28 + 2) + 2) * 4


def renamed(source: Path, folder: Path, name: str) -> list[str]:
    """The two files of a copy of checkpoint ``source`` whose config calls it ``name`` (to tell it from the shipped)."""
    folder.mkdir(parents=True)
    shutil.copy(source / MODEL_FILE, folder / MODEL_FILE)
    config = json.loads((source / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "name": name}))
    return [str(folder / MODEL_FILE), str(folder / CONFIG_FILE)]


def test_choosing_a_dataset_changes_this_page_only() -> None:
    a, b = page("a"), page("b")
    card = model_card.choose_dataset("fashion", a)
    assert card.startswith(FASHION_LINE) and "`tiny-fashion`" in card and "shared by every visitor" in card
    assert state.dataset_for(a) == "fashion" and state.model_for(a).dataset == "fashion"
    assert state.dataset_for(b) == "digits" and state.model_for(b).name == "tiny-digits"
    assert model_card.model_info(b).startswith(DIGITS_LINE)
    assert model_card.choose_dataset("digits", a).startswith(DIGITS_LINE) and state.model_for(a).name == "tiny-digits"


def test_the_tabs_controls_follow_the_pages_dataset() -> None:
    a = page("a")
    radio, heading, _ = train_tab.dataset_controls(request=a)
    assert radio["value"] == "digits" and heading == "#### Train on MNIST digits"
    model_card.choose_dataset("fashion", a)
    radio, heading, _ = train_tab.dataset_controls(request=a)
    assert radio["value"] == "fashion" and heading == "#### Train on Fashion-MNIST"


@pytest.mark.parametrize("asked", ["shirts", "", None, 3, ["fashion"], "Fashion"])
def test_an_unknown_dataset_is_refused_and_changes_nothing(asked: object) -> None:
    a = page("a")
    model_card.choose_dataset("fashion", a)
    mine = state.model_for(a)
    with pytest.raises(gr.Error) as excinfo:
        model_card.choose_dataset(asked, a)
    assert error_text(excinfo) == "Choose one of the datasets: digits, fashion."
    assert state.dataset_for(a) == "fashion" and state.model_for(a) is mine


def test_a_pages_own_digit_model_survives_a_visit_to_fashion(tiny_dir: Path, tmp_path: Path) -> None:
    a = page("a")
    info = train_tab.load_model(renamed(tiny_dir, tmp_path / "mine", "my-digits"), a)
    assert info.startswith("Loaded for this page. " + DIGITS_LINE) and "switched" not in info
    mine = state.model_for(a)
    assert mine.name == "my-digits" and mine.path.parent == runs_dir() / "uploads"
    card = model_card.choose_dataset("fashion", a)
    assert "`tiny-fashion`" in card and "shared by every visitor" in card
    card = model_card.choose_dataset("digits", a)
    assert "`my-digits`" in card and "for this page only" in card
    assert state.model_for(a).path == mine.path


def test_the_shipped_model_is_the_chosen_datasets(tiny_dir: Path, tiny_fashion_dir: Path, tmp_path: Path) -> None:
    a = page("a")
    train_tab.load_model(renamed(tiny_dir, tmp_path / "digits", "my-digits"), a)
    train_tab.load_model(renamed(tiny_fashion_dir, tmp_path / "fashion", "my-fashion"), a)
    assert state.dataset_for(a) == "fashion" and state.model_for(a).name == "my-fashion"
    info = train_tab.use_shipped_model(a)
    assert info.startswith("Back to the shipped model. " + FASHION_LINE) and "`tiny-fashion`" in info
    assert state.model_for(a).path == tiny_fashion_dir and not state.MODELS.has_own("a", "fashion")
    assert state.MODELS.get("a", "digits").name == "my-digits"  # the other dataset's own model stays


def test_uploading_a_fashion_checkpoint_switches_the_page(tiny_fashion_dir: Path, tmp_path: Path) -> None:
    a, b = page("a"), page("b")
    info = train_tab.load_model(renamed(tiny_fashion_dir, tmp_path / "mine", "my-fashion"), a)
    assert info.startswith(
        "Loaded for this page. It is a model of Fashion-MNIST: this page has switched to that dataset. " + FASHION_LINE
    )
    assert "`my-fashion`" in info and "for this page only" in info
    assert state.dataset_for(a) == "fashion" and state.MODELS.has_own("a", "fashion")
    assert not state.MODELS.has_own("a", "digits") and state.dataset_for(b) == "digits"
    assert train_tab.dataset_controls(request=a)[0]["value"] == "fashion"


def train_two_steps(request: object, start_from: str = train_tab.FRESH_CHOICE) -> tuple:
    """Two training steps of the tiny width (the smallest run the limits allow), to its last outputs."""
    *_, last = train_tab.train_model(1, 2, "tiny", 16, 2e-3, 0.15, 0, start_from, request=request)
    return last


def test_training_learns_the_chosen_dataset_and_titles_its_preview() -> None:
    f = page("f")
    model_card.choose_dataset("fashion", f)
    message, _, _, preview = train_two_steps(f)
    assert "finished at step **2**" in message and f"(100 {FASHION.items}, w = 6)" in message  # fashion's default
    assert "checkpoint of Fashion-MNIST saved" in message
    result = state.JOB.load_result("f")
    assert result.config["data"]["dataset"] == "fashion" and result.dataset == "fashion"
    assert preview.shape[1] == PREVIEW_SIDE and preview.shape[0] > PREVIEW_SIDE
    band = preview.shape[0] - PREVIEW_SIDE
    assert (preview[band : band + 8] == 40).all()  # the grid starts under the band, with its 8-px (2 × 4) border
    blank = np.full((PREVIEW_SIDE, PREVIEW_SIDE), 40, np.uint8)  # cells 28·4 = 112 px, gaps 2·4 = 8 px

    def band_of(titles: tuple[str, ...]) -> np.ndarray:
        return pictures.column_titles(blank, titles, 112, pad=8, font_size=28)[:band]

    assert np.array_equal(preview[:band], band_of(FASHION.short_names))
    assert not np.array_equal(preview[:band], band_of(DIGITS.short_names))
    info = train_tab.use_trained_model(f)
    assert "now uses the trained model" in info and "switched" not in info and FASHION_LINE in info
    assert state.MODELS.has_own("f", "fashion") and not state.MODELS.has_own("f", "digits")


def test_continuing_training_resumes_the_chosen_datasets_model() -> None:
    f = page("f")
    model_card.choose_dataset("fashion", f)
    message, *_ = train_two_steps(f, train_tab.RESUME_CHOICE)
    result = state.JOB.load_result("f")
    assert result.dataset == "fashion" and result.config["training"]["steps"] == 3 + 2  # the tiny model's 3 go on
    assert "finished at step **5**" in message


def test_the_preview_alt_text_names_the_datasets_classes() -> None:
    fashion = train_tab.preview_alt_text(FASHION)
    assert f"sampled {FASHION.items}," in fashion and "T-shirt/top, Trouser," in fashion and "and Ankle boot" in fashion
    assert "classes 0, 1, 2, 3, 4, 5, 6, 7, 8 and 9" in train_tab.preview_alt_text(DIGITS)


@pytest.fixture()
def two_pages(app_server: str, tmp_path: Path) -> Iterator[tuple[Client, Client]]:
    made = [Client(app_server, verbose=False, download_files=str(tmp_path / f"c{i}")) for i in range(2)]
    try:
        yield made[0], made[1]
    finally:
        for client in made:
            client.close()


def test_choose_dataset_over_the_api(two_pages: tuple[Client, Client], tiny_fashion_dir: Path) -> None:
    a, b = two_pages
    card = a.predict("fashion", api_name="/choose_dataset")
    assert card.startswith(FASHION_LINE) and "`tiny-fashion`" in card
    assert a.predict(api_name="/model_info").startswith(FASHION_LINE)
    assert b.predict(api_name="/model_info").startswith(DIGITS_LINE)
    with pytest.raises(AppError) as excinfo:  # the radio's own check, in api_errors' words, before the handler's
        a.predict("shirts", api_name="/choose_dataset")
    assert str(excinfo.value) == "'shirts' is not one of the choices offered: ['digits', 'fashion']."
    assert a.predict(api_name="/model_info").startswith(FASHION_LINE)
    files = [handle_file(str(tiny_fashion_dir / MODEL_FILE)), handle_file(str(tiny_fashion_dir / CONFIG_FILE))]
    assert "this page has switched" in b.predict(files, api_name="/load_model")
    assert b.predict(api_name="/model_info").startswith(FASHION_LINE)
