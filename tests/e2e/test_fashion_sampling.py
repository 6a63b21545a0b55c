"""Fashion-MNIST in the Sample tab, through a real browser against ``python app.py`` and its shipped models.

A person picks Fashion-MNIST in tab 4, samples at two guidance weights and reads the verdicts; the page's
dataset is one choice, so tab 3's radio and model card show it too. Nothing here depends on how good the
shipped fashion model is: only on which classes are named and that the picture follows w.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import fetch, image_src, open_tab, set_number, text_of, wait_until
from PIL import Image

from ddpm_core.data import FASHION

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (or fails them under CI) with the reason
    expect = None

pytestmark = pytest.mark.e2e

SHEET = "#sample-sheet img"


def verdict_rows(page) -> list[list[str]]:
    """The verdict table under the sheet: one list of cells per class (the first cell is the class asked)."""
    rows = page.locator("#sample-summary table tbody tr")
    return [[text_of(cell) for cell in rows.nth(i).locator("td").all()] for i in range(rows.count())]


def sample_at(page, w: int, before: str | None, dest: Path) -> tuple[str, np.ndarray]:
    """Set w, press Sample, wait for the new sheet; returns its src and its pixels."""
    set_number(page, "sample-w", w)
    expect(page.locator("#sample-w input[type=number]")).to_have_value(str(w))
    page.locator("#sample-go").click()
    expect(page.locator("#sample-summary")).to_contain_text(f"w = {w},")

    def new_sheet() -> str | None:
        src = image_src(page.locator(SHEET))
        return src if src not in (None, before) else None

    src = wait_until(new_sheet, f"the sheet at w = {w}")
    return src, np.asarray(Image.open(fetch(page, src, dest)).convert("RGB"))


def test_sampling_fashion_items_at_two_guidance_weights(page, tmp_path: Path) -> None:
    open_tab(page, "Sample")
    radio = page.locator("#sample-dataset")
    expect(radio.locator("input[value=digits]")).to_be_checked()
    expect(page.locator("#sample-w input[type=number]")).to_have_value("4")
    radio.get_by_label(FASHION.title).check()

    # The tab follows the page's dataset: the class boxes carry the fashion names; live guidance says it stays digits.
    classes = page.locator("#sample-classes")
    for name in FASHION.class_names:
        expect(classes).to_contain_text(name)
    expect(page.locator("#sample-classes input[type=checkbox]:checked")).to_have_count(10)
    expect(page.locator("#live-dataset-note")).to_contain_text("Live guidance is distilled for digits")
    expect(page.locator("#sample-per-class")).to_contain_text("samples per class")
    # w moves to where the shipped fashion model's samples are read as asked often enough
    expect(page.locator("#sample-w input[type=number]")).to_have_value("6")

    first_src, first = sample_at(page, 1, image_src(page.locator(SHEET)), tmp_path / "w1.png")
    summary = page.locator("#sample-summary")
    expect(summary).to_contain_text(f"10 {FASHION.items}")
    expect(summary).to_contain_text(FASHION.title)
    rows = verdict_rows(page)
    assert [row[0] for row in rows] == list(FASHION.class_names), rows
    readings = [row[1] for row in rows]
    assert all(r.startswith("✓ ") or r.startswith("✗ read as ") for r in readings), readings
    assert all(any(name in r for name in FASHION.class_names) for r in readings), readings  # classes read, named
    wait_until(lambda: "at w = 1 " in (page.locator(SHEET).get_attribute("alt") or ""), "the sheet's alt text")
    assert page.locator(SHEET).get_attribute("alt").startswith(f"10 sampled {FASHION.items} (T-shirt/top, Trouser,")

    _, second = sample_at(page, 4, first_src, tmp_path / "w4.png")
    assert [row[0] for row in verdict_rows(page)] == list(FASHION.class_names)
    assert first.shape != second.shape or not np.array_equal(first, second), "the sheet did not change with w"

    # One dataset per page: tab 3's radio and the model card show the choice made here.
    open_tab(page, "Train or load")
    expect(page.locator("#train-dataset input[value=fashion]")).to_be_checked()
    expect(page.locator("#model-info")).to_contain_text(FASHION.title)
