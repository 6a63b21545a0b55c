"""Tabs 1 and 2 in a real browser: the example photos, alt text that follows the views, and the keyboard.

Run with ``python -m pytest tests/e2e/test_image_tabs_a11y.py -q``. A slider moved with the arrow keys fires
no pointer release, so these tests move every slider of the two tabs that way and wait for the view to follow.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from e2e_helpers import image_src, natural_size, open_tab, output_image, text_of, wait_until

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (or fails them under CI) with the reason
    expect = None

pytestmark = pytest.mark.e2e

FORWARD_LABELS = {
    "mean": "mean μₜ = √ᾱₜ x₀",
    "noise": "ε of draw 1 (shown as ε/3, clipped)",
    "samples": "3 samples of xₜ ~ q(xₜ | x₀), one noise draw each",
    "single": "one step of q(xₜ | xₜ₋₁), starting from an xₜ₋₁ drawn by the jump",
    "plot": "ᾱₜ and log-SNR, marker at t",
}
EXAMPLE_SIZE = (218, 256)  # Grace Hopper (512 × 600) shrunk to a longest side of 256
ASTRONAUT_SIZE = (128, 128)  # assets/astronaut.jpg, small enough to be kept as it is


def alt(img) -> str:
    return (img.get_attribute("alt", timeout=2000) or "") if img.count() else ""


def forward_info(page):
    return page.locator("[data-testid=markdown]:visible").filter(has_text="paper step").first


def oracle_table(page):
    return page.locator("[data-testid=markdown]:visible").filter(has=page.locator("table")).first


def press_right(page, elem_id: str, times: int = 1) -> int:
    """Focus a slider's track and press the right arrow key; returns the value its number box shows then."""
    track = page.locator(f"#{elem_id} input[type=range]")
    track.focus()
    start = int(page.locator(f"#{elem_id} input[type=number]").input_value())
    for _ in range(times):
        track.press("ArrowRight")
    box = page.locator(f"#{elem_id} input[type=number]")
    expect(box).to_have_value(str(start + times))
    return start + times


def test_an_example_photo_draws_both_tabs(page) -> None:
    mean = output_image(page, FORWARD_LABELS["mean"])
    wait_until(lambda: natural_size(mean) == EXAMPLE_SIZE, "the default photo's mean image")
    expect(forward_info(page)).to_contain_text("resized from 512×600")
    examples = page.locator("#forward-examples")
    expect(examples.get_by_role("button")).to_have_count(4)  # each example is a button named in words

    examples.get_by_role("button", name="astronaut", exact=True).click()
    # Gradio hands the handler its own copy of the example; the views are drawn from it, at its own size.
    wait_until(lambda: natural_size(mean) == ASTRONAUT_SIZE, "the astronaut's mean image")
    expect(forward_info(page)).to_contain_text("paper step 201 of 1000")
    expect(forward_info(page)).not_to_contain_text("resized")
    for label in ("noise", "samples", "single"):
        img = output_image(page, FORWARD_LABELS[label])
        wait_until(lambda img=img: natural_size(img)[1] >= ASTRONAUT_SIZE[1], f"the {label} view")

    open_tab(page, "Oracle reconstruction")  # its photo follows tab 1's
    expect(page.locator("#oracle-image img")).to_have_attribute("src", re.compile(r"astronaut\.jpg$"))
    expect(oracle_table(page)).to_contain_text("t = 200, seed 0")
    expect(oracle_table(page)).not_to_contain_text("resized")


def test_forward_t_from_the_keyboard_and_the_alt_text_follows(page) -> None:
    images = {name: output_image(page, label) for name, label in FORWARD_LABELS.items()}
    wait_until(lambda: "t = 200 of 1000" in alt(images["mean"]), "the mean image's alt text at t = 200")
    t = press_right(page, "forward-t", times=3)
    assert t == 203
    expect(forward_info(page)).to_contain_text("paper step 204 of 1000")
    for name in ("mean", "samples", "single"):
        wait_until(lambda name=name: f"t = {t} of 1000, linear schedule" in alt(images[name]), f"{name}'s alt text")
    assert f"marker at t = {t}" in alt(images["plot"])
    assert "seed 0" in alt(images["noise"]) and "seed 0" in alt(images["samples"])
    # The numbers in the alt text, against DDPM's linear schedule written out here: β from 1e-4 to 0.02 over
    # T = 1000 steps, ᾱ_t = ∏_{s ≤ t} (1 − β_s) (Ho et al. 2020, §4).
    alpha_bar = float(np.prod(1 - np.linspace(1e-4, 0.02, 1000)[: t + 1]))
    shown = float(re.search(r"scaled by ([0-9.]+),", alt(images["mean"])).group(1))
    assert shown == pytest.approx(alpha_bar**0.5, abs=1e-4)
    shown = float(re.search(r"alpha-bar_t = ([0-9.]+), log-SNR = (-?[0-9.]+)", alt(images["plot"])).group(1))
    assert shown == pytest.approx(alpha_bar, abs=1e-4)


def test_oracle_views_carry_alt_text_and_follow_the_keyboard(page) -> None:
    open_tab(page, "Oracle reconstruction")
    panels = output_image(page, "oracle reconstruction at t")
    curve = output_image(page, "errors against x₀ at every t, marker at t")
    wait_until(lambda: "t = 200 of 1000, linear schedule" in alt(panels), "the panels' alt text")
    wait_until(lambda: "At the marker, t = 200" in alt(curve), "the curve's alt text")
    t = press_right(page, "oracle-t")
    expect(oracle_table(page)).to_contain_text(f"t = {t}, seed 0")
    wait_until(lambda: f"t = {t} of 1000" in alt(panels), "the panels' alt text at the new t")
    wait_until(lambda: f"At the marker, t = {t}" in alt(curve), "the curve's alt text at the new t")
    # The L1 of x_t in the alt text is the one in the table.
    l1 = re.search(r"x_t \(L1 distance to x_0: ([0-9.e+-]+)\)", alt(panels)).group(1)
    row = oracle_table(page).locator("tbody tr").first
    assert text_of(row.locator("td").last) == l1


def test_model_vs_oracle_sliders_follow_the_keyboard(page) -> None:
    open_tab(page, "Oracle reconstruction")
    strip = output_image(page, "model vs oracle")
    # Drawn when the tab opens, at the sliders' values (no slider touched yet).
    wait_until(lambda: "held-out digit 3 (example 0) at t = 100 " in alt(strip), "the strip drawn on opening")
    for elem_id, expected in (
        ("mvo-digit", "held-out digit 4 (example 0) at t = 100 "),
        ("mvo-index", "held-out digit 4 (example 1) at t = 100 "),
        ("mvo-t", "held-out digit 4 (example 1) at t = 101 "),
    ):
        before = image_src(strip)
        press_right(page, elem_id)
        wait_until(lambda expected=expected: expected in alt(strip), f"the strip after ArrowRight on {elem_id}")
        wait_until(lambda before=before: image_src(strip) not in (None, before), f"a new strip after {elem_id}")
    note = page.locator("[data-testid=markdown]:visible").filter(has_text="ε error (mean squared").first
    mse = re.search(r"mean squared, per pixel\): ([0-9.]+)", text_of(note)).group(1)
    assert f"mean squared error {mse}" in alt(strip)  # the same number in words and in the note


def test_the_chain_strip_is_described_in_text(page) -> None:
    open_tab(page, "Oracle reconstruction")
    page.locator("#oracle-T").get_by_label("150").check()
    expect(oracle_table(page)).to_contain_text("t = 149, seed 0")  # t is kept inside 0 … T−1
    page.get_by_role("button", name="Run the oracle reverse chain (all T steps)").click()
    summary = page.locator("[data-testid=markdown]:visible").filter(has_text="left to right")
    expect(summary).to_contain_text("Ran all 150 reverse steps")
    # The strip's labels in words: it starts at x_{T−1} = x_149 and ends with the x_0 the chain reached.
    assert "149" in text_of(summary) and "the chain ends with" in text_of(summary)
    chain = output_image(page, "oracle reverse chain, every T/5 steps")
    wait_until(lambda: natural_size(chain)[0] > 0, "the chain strip")
    assert "text below names each step" in alt(chain)
