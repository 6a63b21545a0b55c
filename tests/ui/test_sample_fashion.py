"""Tab 4 on Fashion-MNIST: a page that chooses fashion samples the fashion model and names its classes; another
page stays on digits. Tiny stand-ins serve as both shipped models (``tiny_live``); the classifiers are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import imageio.v3 as iio
import numpy as np
import pytest
from ui_fixtures import error_text, last, page

from ddpm_core import pictures
from ddpm_core.classifier import classify
from ddpm_core.data import DIGITS, FASHION, to_model_range
from ddpm_core.image_io import to_uint8
from ddpm_core.sampling import MID_INTERVAL, SamplerSettings, sample, validate_labels
from ddpm_ui import model_card, sample_tab, state

pytestmark = pytest.mark.usefixtures("tiny_live")

ASKED = ["0", "6", "9"]  # T-shirt/top, Shirt, Ankle boot
PER_CLASS = 2
ARGS = (ASKED, PER_CLASS, 3.0, "ddim", 4, 0.0, 7, True)  # classes, per class, w, sampler, steps, η, seed, mid
SETTINGS = SamplerSettings(w=3.0, sampler="ddim", steps=4, eta=0.0, seed=7, guidance_interval=MID_INTERVAL)
ARTICLE = {"Ankle boot": "an"}  # every other class name here (and every digit) takes "a"


def fashion_page(name: str = "fashion-page"):
    """A page (session) that has chosen Fashion-MNIST, as its radio would."""
    request = page(name)
    state.choose_dataset(request, "fashion")
    return request


def table_rows(summary: str) -> list[list[str]]:
    """The verdict table's body: one list of cells per class asked."""
    lines = [line for line in summary.splitlines() if line.startswith("| ") and " asked |" not in line]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]


def independent_reading(npz: str, dataset: str) -> tuple[list[int], list[int], list[float]]:
    """What ``dataset``'s classifier reads in a saved npz (asked, read, confidence), apart from the tab's code."""
    with np.load(npz) as f:
        images, labels = f["images"], f["labels"]
    verdict = classify(state.classifier(dataset), to_model_range(images))
    return labels.tolist(), verdict.predicted.tolist(), verdict.confidence.tolist()


def test_a_fashion_page_samples_the_fashion_model_and_names_its_classes() -> None:
    request = fashion_page()
    sheet, gif, files, summary = last(sample_tab.sample_digits.for_page(*ARGS, request=request))
    png, gif_copy, npz = (Path(f) for f in files)
    assert [p.name for p in (png, gif_copy, npz)] == [f"fashion-w3-ddim-seed7.{ext}" for ext in ("png", "gif", "npz")]
    with np.load(npz) as f:
        images = f["images"]
        assert f["labels"].tolist() == [0, 0, 6, 6, 9, 9]
        assert f["class_names"].tolist() == list(FASHION.class_names)
    # the very samples of the fashion model (same settings, same noise); the summary names it
    fashion = state.MODELS.default("fashion")
    direct = to_uint8(sample(fashion.model, fashion.schedule, validate_labels([0, 0, 6, 6, 9, 9]), SETTINGS).images)
    assert np.abs(direct.astype(int) - images.astype(int)).max() <= 1
    assert "Model: `tiny-fashion` (Fashion-MNIST" in summary and summary.startswith(f"6 {FASHION.items} in")

    asked, read, sure = independent_reading(str(npz), "fashion")
    rows = table_rows(summary)
    assert "| class asked | sample 1 | sample 2 |" in summary
    assert [row[0] for row in rows] == ["T-shirt/top", "Shirt", "Ankle boot"]
    names = FASHION.class_names
    expected = [
        f"✓ {names[r]} ({100 * c:.0f}%)" if a == r else f"✗ read as {names[r]} ({100 * c:.0f}%)"
        for a, r, c in zip(asked, read, sure, strict=True)
    ]
    assert [cell for row in rows for cell in row[1:]] == expected

    alt = sheet["alt_text"]
    which = "(T-shirt/top, Shirt and Ankle boot, 2 per class)"
    assert alt.startswith(f"6 sampled {FASHION.items} {which} at w = 3 with ddim, seed 7")
    wrong = [
        f"{ARTICLE.get(names[a], 'a')} {names[a]} read as {names[r]}"
        for a, r in zip(asked, read, strict=True)
        if a != r
    ]
    assert f"{6 - len(wrong)} of 6 read as asked" in alt and all(phrase in alt for phrase in wrong)
    assert f"6 {FASHION.items} of the sheet" in gif["alt_text"]


def test_another_page_stays_on_digits() -> None:
    fashion_page()
    request = page("digits-page")
    assert state.dataset_for(request) == "digits" and state.dataset_for(page("fashion-page")) == "fashion"
    sheet, _, files, summary = last(sample_tab.sample_digits.for_page(*ARGS, request=request))
    assert Path(files[2]).name == "digits-w3-ddim-seed7.npz"
    with np.load(files[2]) as f:
        assert f["class_names"].tolist() == list(DIGITS.class_names)
    asked, read, _ = independent_reading(files[2], "digits")
    assert [row[0] for row in table_rows(summary)] == ASKED and "| digit asked |" in summary
    assert summary.startswith("6 digits in") and "Model: `tiny-digits` (MNIST digits" in summary
    assert sheet["alt_text"].startswith("6 sampled digits (0, 6 and 9, 2 per class)")
    wrong = [f"a {a} read as {r}" for a, r in zip(asked, read, strict=True) if a != r]
    assert all(phrase in sheet["alt_text"] for phrase in wrong)


def test_fashion_messages_and_captions_name_classes() -> None:
    request = fashion_page()
    with pytest.raises(gr.Error) as excinfo:
        last(sample_tab.sample_digits([], 1, 3.0, "ddim", 4, 0.0, 0, request=request))
    assert error_text(excinfo) == "Choose at least one class."
    assert sample_tab.verdict_caption(7, 7, 0.984, FASHION) == "✓ Sneaker · 98%"
    assert sample_tab.verdict_caption(9, 5, 0.61, FASHION) == "✗ Sandal · 61%"
    assert sample_tab.verdict_text(9, 5, 0.61, FASHION) == "✗ read as Sandal (61%)"
    assert sample_tab.misread_phrase(6, 0, FASHION) == "a Shirt read as T-shirt/top"
    assert sample_tab.misread_phrase(9, 7, FASHION) == "an Ankle boot read as Sneaker"
    assert sample_tab.misread_phrase(7, 1) == "a 7 read as 1"


def gif_first_frame(path: str) -> np.ndarray:
    frame = iio.imread(path, index=0)
    return frame[..., 0] if frame.ndim == 3 else frame  # grey either way (the GIF has no colour)


def test_the_gif_names_its_columns() -> None:
    """The first frame: a band of text over the columns of both grids, as pictures.column_titles lays it out."""
    _, gif, _, _ = last(sample_tab.sample_digits(*ARGS, request=fashion_page()))
    frame = gif_first_frame(gif)
    scale, columns = sample_tab.GIF_SCALE, len(ASKED)
    cell, pad = 28 * scale, scale  # image_grid's 1-px gaps, enlarged with the pictures
    grid_w, grid_h = (columns * 29 + 1) * scale, (PER_CLASS * 29 + 1) * scale
    band = frame.shape[0] - grid_h - 4  # what is left above the grids and the 4-px progress bar under them
    assert 8 + 6 <= band <= 12 + 6, band  # column_titles: a font of 8 … 12 px in a band 6 px taller
    assert frame.shape[1] == 2 * grid_w + 12  # the two grids and the spacer between them
    assert (frame[band : band + pad, :grid_w] <= 8).all()  # the grid starts right under the band (its black edge)
    for left_of_grid in (0, grid_w + 12):
        head = frame[:band, left_of_grid : left_of_grid + grid_w]
        assert np.median(head) == pytest.approx(128, abs=8)  # the band's grey
        for c in range(columns):
            x = pad + c * (cell + pad)
            assert (head[:, x : x + cell] > 200).sum() >= 10, c  # white text over every column
            assert (head[:, x - pad : x] > 200).sum() == 0  # and none in the gaps between columns


def band_over(sheet: np.ndarray, rows: int) -> int:
    """Height added over a labelled_rows sheet of ``rows`` rows (its height is the same whatever the captions)."""
    blank = pictures.labelled_rows([np.zeros((2, 28, 28), np.uint8)] * rows, ["x"] * rows, scale=3, pad=6)
    return sheet.shape[0] - blank.shape[0]


def test_sweep_and_comparison_run_for_fashion_without_the_digit_student() -> None:
    request = fashion_page()
    sheet, plot, note = last(sample_tab.guidance_sweep.for_page(["1", "8"], 2, "0, 2", "ddim", 4, 0.0, 0,
                                                               request=request))  # fmt: skip
    assert sheet["alt_text"].startswith(f"Guidance sweep from one starting noise: 2 rows of {FASHION.items} (Trouser")
    assert "w = 0, w = 2." in sheet["alt_text"] and "distilled student" not in sheet["alt_text"]
    assert "knows digits only" in note and f"4 {FASHION.items} per w" in note and "student accuracy" not in note
    rows = [line for line in note.splitlines() if line.startswith("| ") and "w |" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["0", "2"] and all(row.count("%") == 1 for row in rows)
    assert "for this page's model." in plot["alt_text"]
    band = band_over(sheet["value"], 2)
    assert 14 <= band <= 18
    head = sheet["value"][:band]
    for c in range(2):  # dark text over each column: labelled_rows's 6-px margin, then cells of 84 px with 3-px gaps
        x = 6 + 3 + c * 87
        assert (head[:, x : x + 84] < 100).any(), c

    sheet, note = last(sample_tab.compare_samplers.for_page(["1", "8"], 3.0, 0, request=request))
    assert sheet["alt_text"].startswith(f"5 rows of {FASHION.items} (Trouser and Bag) from the same starting noise")
    assert "under a band naming each column's class" in sheet["alt_text"] and "knows digits only" in note
    rows = [line for line in note.splitlines() if line.startswith("| ") and "sampler |" not in line]
    assert len(rows) == 5 and all(row.split("|")[3].strip().endswith("%") for row in rows)
    assert 14 <= band_over(sheet["value"], 5) <= 18


def test_the_controls_follow_the_pages_dataset() -> None:
    fashion = fashion_page()
    radio, classes, per_class, sweep_per_class, sweep_sheet, live_note, _, _ = sample_tab.dataset_controls(
        request=fashion
    )
    assert radio["value"] == "fashion"
    assert classes["choices"] == [(name, str(i)) for i, name in enumerate(FASHION.class_names)]
    assert classes["label"] == "classes" and per_class["label"] == "samples per class"
    assert sweep_per_class["label"].startswith("samples per class") and sweep_sheet["label"].endswith(
        "columns: classes"
    )
    assert live_note["visible"] is True and live_note["value"].startswith("*Live guidance is distilled for digits")
    assert "Fashion-MNIST" in live_note["value"]
    radio, classes, per_class, *_, live_note, _, _ = sample_tab.dataset_controls(request=page("digits-page"))
    assert radio["value"] == "digits" and [label for label, _ in classes["choices"]] == [str(d) for d in range(10)]
    assert per_class["label"] == "samples per digit" and live_note["visible"] is False
    # the tab built without a card chooses for itself; a name the app does not know is refused
    updates = sample_tab.choose_dataset("fashion", request=page("alone"))
    assert updates[0]["value"] == "fashion" and state.dataset_for(page("alone")) == "fashion"
    assert updates[-2] == {"__type__": "update", "value": 6.0} and updates[-1] == "fashion"
    with pytest.raises(gr.Error) as excinfo:
        sample_tab.choose_dataset("cifar", request=page("alone"))
    assert "Choose one of the datasets" in error_text(excinfo)


def test_w_moves_to_the_datasets_default_only_when_the_dataset_changes() -> None:
    request = page("switching")
    # a page load (or another digits model): the card changes but the dataset does not, so a link's w stays
    *_, w, shown = sample_tab.dataset_controls("digits", request)
    assert w == {"__type__": "update"} and shown == "digits"
    model_card.choose_dataset("fashion", request)
    *_, w, shown = sample_tab.dataset_controls(shown, request)
    assert w == {"__type__": "update", "value": 6.0} and shown == "fashion"  # the shipped fashion model needs w = 6
    *_, w, shown = sample_tab.dataset_controls(shown, request)  # another fashion model: a person's w stays
    assert w == {"__type__": "update"} and shown == "fashion"
    model_card.choose_dataset("digits", request)
    *_, w, shown = sample_tab.dataset_controls(shown, request)
    assert w == {"__type__": "update", "value": 4.0} and shown == "digits"


def test_live_guidance_stays_on_digits_for_a_fashion_page() -> None:
    fashion_page()
    images, notes = sample_tab.live_digits([["3", "8"]], [2.0], [0])  # the batched event knows no page
    assert images[0] is not None and "2 digits" in notes[0]
    note = sample_tab.teacher_beside_student(["3"], 2.0, 0)[1]
    assert "teacher (tiny-digits)" in note


def build(with_card: bool) -> tuple[gr.Blocks, gr.Markdown | None]:
    with gr.Blocks() as demo:
        card = gr.Markdown() if with_card else None
        sample_tab.build_tab(demo, model_card=card)
    return demo, card


def events_on(demo: gr.Blocks, block: gr.components.Component) -> dict[str, list]:
    """The events a block triggers, by event name: the functions they run."""
    found: dict[str, list] = {}
    for fn in demo.fns.values():
        for block_id, event in fn.targets:
            if block_id == block._id:
                found.setdefault(event, []).append(fn)
    return found


def test_the_radio_writes_the_card_and_the_tab_follows_the_card() -> None:
    demo, card = build(with_card=True)
    (radio,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "sample-dataset"]
    assert isinstance(radio, gr.Radio) and [v for _, v in radio.choices] == ["digits", "fashion"]
    on_radio = events_on(demo, radio)
    assert set(on_radio) == {"input"}  # a person's choice only: never .change, which a refresh would fire
    (choose,) = on_radio["input"]
    assert choose.fn is model_card.choose_dataset and [b._id for b in choose.outputs] == [card._id]
    (follow,) = events_on(demo, card)["change"]
    assert follow.fn is sample_tab.dataset_controls and radio._id in [b._id for b in follow.outputs]
    (w,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "sample-w"]
    (shown,) = follow.inputs  # the State the tab's last dataset lives in: read and written by the same event
    assert isinstance(shown, gr.State) and [b._id for b in follow.outputs][-2:] == [w._id, shown._id]
    assert w.value == 4.0  # a new page is on digits
    (live,) = [fn for fn in demo.fns.values() if fn.api_name == "live_digits"]
    assert live.batch and live.fn is sample_tab.live_digits

    alone, _ = build(with_card=False)
    (radio,) = [b for b in alone.blocks.values() if getattr(b, "elem_id", None) == "sample-dataset"]
    (choose,) = events_on(alone, radio)["input"]
    assert choose.fn is sample_tab.choose_dataset and len(choose.outputs) == 8


def test_presets_say_their_numbers_are_digits() -> None:
    measured = [p for p in sample_tab.PRESETS if "%" in p.why]
    assert measured and all("on digits" in p.why for p in measured)
    assert all("digit" not in p.why.replace("on digits", "") for p in sample_tab.PRESETS)
