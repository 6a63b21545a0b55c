"""The Sample tab with the keyboard alone: Tab, arrow keys, Enter and Space; no mouse, no typing into boxes.

Every step moves the focus with Tab (or Shift+Tab) as a person would, and checks where it landed before
pressing a key, so the test follows the page's real tab order. What it checks on the way is what a
screen-reader user depends on: the verdicts as text with ✓/✗ and alt texts that follow the pictures.
"""

from __future__ import annotations

import re

import pytest
from e2e_helpers import image_src, text_of, wait_until

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (or fails them under CI) with the reason
    expect = None

pytestmark = pytest.mark.e2e

MOST_TABS = 150  # the whole page has about 60 stops; more means the target is not reachable by Tab
FOCUSED = """([selector, text]) => {
  const el = document.activeElement;
  return !!el && el.matches(selector) && (text === null || el.innerText.trim() === text);
}"""
VERDICT = re.compile(r"^(✓ \d \(\d+%\)|✗ read as \d \(\d+%\))$")


def tab_to(page, selector: str, text: str | None = None, key: str = "Tab") -> int:
    """Press Tab (or ``key``, e.g. Shift+Tab) until the focused element matches; returns the presses."""
    for presses in range(1, MOST_TABS + 1):
        page.keyboard.press(key)
        if page.evaluate(FOCUSED, [selector, text]):
            return presses
    raise AssertionError(f"{selector} {text or ''} is not reachable with {key} ({MOST_TABS} presses)")


def alt_of(page, selector: str) -> str:
    img = page.locator(selector)
    return (img.get_attribute("alt", timeout=2000) or "") if img.count() else ""


def verdict_cells(page) -> list[list[str]]:
    """The verdict table under the sheet: one list of cells per class (the first cell is the digit asked)."""
    rows = page.locator("#sample-summary table tbody tr")
    return [[text_of(cell) for cell in rows.nth(i).locator("td").all()] for i in range(rows.count())]


def test_sample_tab_by_keyboard_only(page) -> None:
    # The tab strip: each tab is a button in the tab order; Enter selects it.
    tab_to(page, "[role=tab]", "Sample")
    page.keyboard.press("Enter")
    expect(page.get_by_role("tab", name="Sample")).to_have_attribute("aria-selected", "true")

    # Live guidance follows the slider when it moves by arrow keys (its .input event), alt text included.
    note, grid = page.locator("#live-note"), "#live-grid img"
    expect(note).to_contain_text("w = 3, seed 0: 10 digits")
    wait_until(lambda: "w = 3, seed 0" in alt_of(page, grid), "the live grid's alt text")
    assert alt_of(page, grid).startswith("Digits 0–9 drawn live by the distilled student")
    before = image_src(page.locator(grid))
    tab_to(page, "#live-w input[type=range]")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(page.locator("#live-w input[type=number]")).to_have_value("3.3")
    expect(note).to_contain_text("w = 3.3, seed 0: 10 digits")
    wait_until(lambda: image_src(page.locator(grid)) not in (None, before), "the grid at w = 3.3")
    wait_until(lambda: "w = 3.3, seed 0" in alt_of(page, grid), "the alt text at w = 3.3")

    # The main sampler: w up by five arrow presses, then the Sample button by Enter.
    tab_to(page, "#sample-w input[type=range]")
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    expect(page.locator("#sample-w input[type=number]")).to_have_value("4.5")
    tab_to(page, "#sample-go")
    page.keyboard.press("Enter")
    summary = page.locator("#sample-summary")
    expect(summary).to_contain_text("10 digits")
    expect(summary).to_contain_text("w = 4.5,")
    cells = verdict_cells(page)
    assert [row[0] for row in cells] == [str(c) for c in range(10)], cells
    assert all(len(row) == 2 and VERDICT.match(row[1]) for row in cells), cells
    correct = sum(row[1].startswith("✓") for row in cells)
    sheet_alt = "#sample-sheet img"
    wait_until(lambda: "at w = 4.5" in alt_of(page, sheet_alt), "the sheet's alt text")
    assert alt_of(page, sheet_alt).startswith("10 sampled digits (0–9, 1 per class) at w = 4.5 with dpmpp, seed 0")
    assert f"{correct} of 10 read as asked" in alt_of(page, sheet_alt)
    assert "Denoising animation" in alt_of(page, "#sample-gif img")

    # A preset by Space (it fills the controls and runs nothing), then back to Sample with Shift+Tab and Space.
    tab_to(page, "#sample-presets button", "sharp digits")
    page.keyboard.press("Space")
    expect(page.locator("#sample-w input[type=number]")).to_have_value("3")
    expect(page.locator("#sample-per-class input[type=number]")).to_have_value("4")
    expect(page.locator("#sample-mid-guidance input[type=checkbox]")).not_to_be_checked()
    expect(summary).to_contain_text("w = 4.5,")  # nothing sampled yet
    tab_to(page, "#sample-go", key="Shift+Tab")
    page.keyboard.press("Space")
    expect(summary).to_contain_text("40 digits")
    expect(summary).to_contain_text("w = 3,")
    cells = verdict_cells(page)
    assert len(cells) == 10 and all(len(row) == 5 and all(VERDICT.match(c) for c in row[1:]) for row in cells), cells
    wait_until(lambda: "at w = 3 " in alt_of(page, sheet_alt), "the sheet's new alt text")
    assert alt_of(page, sheet_alt).startswith("40 sampled digits (0–9, 4 per class) at w = 3 with dpmpp")
