"""The four tabs, used through a real browser against ``python app.py``, the way a person would use them.

Run just these with ``python -m pytest -m e2e tests/e2e``. They never depend on how good the shipped
digit model is: they check that pictures appear, change when the inputs change, and carry the numbers the
inputs ask for.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import (
    fetch,
    image_src,
    natural_size,
    open_tab,
    output_image,
    set_number,
    shipped_model_name,
    text_of,
    wait_until,
)
from PIL import Image

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (or fails them under CI) with the reason
    expect = None

pytestmark = pytest.mark.e2e

MEAN_LABEL = "mean μₜ = √ᾱₜ x₀"
SAMPLES_LABEL = "3 samples of xₜ ~ q(xₜ | x₀), one noise draw each"
EXAMPLE_SIZE = (218, 256)  # the preloaded photo (512 × 600) shrunk to a longest side of 256


def forward_info(page):
    return page.locator("[data-testid=markdown]:visible").filter(has_text="paper step").first


def contrast(path: Path) -> float:
    """Spread of the pixel values around mid-grey: μ_t = √ᾱ_t x₀ loses contrast as t grows."""
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    return float(np.abs(pixels - 127.5).mean())


def oracle_table(page):
    return page.locator("[data-testid=markdown]:visible").filter(has=page.locator("table")).first


def oracle_l1(page) -> dict[str, float]:
    """The ℓ1 column of the oracle table's first two rows: x_t against x₀ and the oracle x̂₀ against x₀."""
    rows = oracle_table(page).locator("tbody tr")
    assert "oracle" in text_of(rows.nth(1).locator("td").first)
    return {name: float(text_of(rows.nth(i).locator("td").last)) for i, name in enumerate(("x_t", "oracle"))}


def test_every_tab_opens_with_its_content(page) -> None:
    expect(page.get_by_role("tab", name="Forward noise")).to_have_attribute("aria-selected", "true")
    expect(forward_info(page)).to_contain_text("paper step 201 of 1000")  # computed on page load
    wait_until(lambda: natural_size(output_image(page, MEAN_LABEL)) == EXAMPLE_SIZE, "the mean image")

    open_tab(page, "Oracle reconstruction")
    expect(page.locator("#oracle-t")).to_be_visible()
    expect(oracle_table(page)).to_contain_text("compared with")  # computed when the tab opens

    open_tab(page, "Train or load")
    expect(page.locator("#model-info")).to_contain_text("This page's model")
    expect(page.locator("#train-start")).to_be_enabled()

    open_tab(page, "Sample")
    expect(page.locator("#sample-go")).to_be_visible()
    expect(page.locator("#sample-classes input[type=checkbox]:checked")).to_have_count(10)

    open_tab(page, "Forward noise")
    expect(page.locator("#forward-t")).to_be_visible()


def test_forward_upload_then_drag_t(page, tmp_path: Path) -> None:
    # A 200 × 160 picture of our own: small enough that the app keeps its size.
    yy, xx = np.mgrid[0:160, 0:200]
    picture = np.stack([xx * 255 // 199, yy * 255 // 159, ((xx // 20 + yy // 20) % 2) * 255], axis=-1)
    upload = tmp_path / "my-upload.png"
    Image.fromarray(picture.astype(np.uint8)).save(upload)

    mean, samples = output_image(page, MEAN_LABEL), output_image(page, SAMPLES_LABEL)
    wait_until(lambda: natural_size(mean) == EXAMPLE_SIZE, "the example's mean image")
    page.locator("#forward-image input[type=file]").set_input_files(str(upload))
    expect(page.locator("#forward-image img")).to_have_attribute("src", re.compile(r"my-upload\.png$"))
    # The pictures are recomputed from the upload: same size as the upload, and no resize note any more.
    wait_until(lambda: natural_size(mean) == (200, 160), "the mean image of the upload")
    expect(forward_info(page)).to_contain_text("paper step 201 of 1000")
    expect(forward_info(page)).not_to_contain_text("resized")
    before = {"mean": image_src(mean), "samples": image_src(samples)}
    fetch(page, before["mean"], tmp_path / "mean-before.png")

    # Drag the t slider's thumb from t = 200 to about 70 % of the track with the mouse.
    track = page.locator("#forward-t input[type=range]")
    box = track.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 200 / 999, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=12)
    page.mouse.up()
    t = int(page.locator("#forward-t input[type=number]").input_value())
    assert 550 < t < 850, f"the drag should have moved t to about 700, not {t}"

    expect(forward_info(page)).to_contain_text(f"paper step {t + 1} of 1000")
    wait_until(lambda: image_src(mean) not in (None, before["mean"]), "a new mean image")
    wait_until(lambda: image_src(samples) not in (None, before["samples"]), "new noisy samples")
    assert natural_size(mean) == (200, 160)
    fetch(page, image_src(mean), tmp_path / "mean-after.png")
    # μ_t = √ᾱ_t x₀: √ᾱ is 0.81 at t = 200 and below 0.45 beyond t = 550 (linear schedule, T = 1000).
    ratio = contrast(tmp_path / "mean-after.png") / contrast(tmp_path / "mean-before.png")
    assert ratio < 0.6, f"the mean image should fade as t grows (contrast ratio {ratio:.2f})"


def test_oracle_tab_shows_l1_and_runs_the_chain(page) -> None:
    open_tab(page, "Oracle reconstruction")
    expect(oracle_table(page)).to_contain_text("t = 200, seed 0")
    at_200 = oracle_l1(page)
    assert at_200["oracle"] < 1e-6  # knowing ε, x̂₀ is exact up to rounding
    assert at_200["x_t"] > 0.05

    set_number(page, "oracle-t", 900)
    expect(oracle_table(page)).to_contain_text("t = 900, seed 0")
    at_900 = oracle_l1(page)
    assert at_900["oracle"] < 1e-6
    assert at_900["x_t"] > at_200["x_t"]  # more noise, further from x₀

    page.get_by_role("button", name="Run the oracle reverse chain (all T steps)").click()
    summary = page.locator("[data-testid=markdown]:visible").filter(has_text="Final error against")
    expect(summary).to_be_visible()
    max_error = float(re.search(r"max \|·\| = ([0-9.e+-]+)", text_of(summary)).group(1))
    assert max_error < 1e-6
    chain = output_image(page, "oracle reverse chain, every T/5 steps")
    wait_until(lambda: natural_size(chain)[0] > 5 * 100, "the chain strip")


def test_train_a_tiny_model_then_start_and_stop_another(page) -> None:
    open_tab(page, "Train or load")
    status, start = page.locator("#train-status"), page.locator("#train-start")
    expect(page.locator("#train-recipe input")).to_have_value("fast")
    expect(page.locator("#train-preset input")).to_have_value("small")
    page.locator("#train-recipe input").click()
    page.get_by_role("option", name="classic", exact=True).click()
    expect(page.locator("#train-preset input")).to_have_value("base")  # the recipe fills in its own settings
    page.locator("#train-recipe input").click()
    page.get_by_role("option", name="fast", exact=True).click()
    expect(page.locator("#train-preset input")).to_have_value("small")
    page.locator("#train-preset input").click()
    page.get_by_role("option", name="tiny", exact=True).click()
    expect(page.locator("#train-preset input")).to_have_value("tiny")
    page.locator("#train-minutes input").fill("1")
    page.locator("#train-steps input").fill("20")

    start.click()
    expect(status).to_contain_text("Training…")
    expect(start).to_be_disabled()  # one click, one run
    expect(status).to_contain_text("Training finished at step 20")
    expect(status).to_contain_text(re.compile(r"guided accuracy \d+%"))
    expect(start).to_be_enabled()
    expect(page.locator("#train-preview img")).to_be_visible()
    expect(page.locator("#train-loss canvas, #train-loss svg").first).to_be_visible()
    expect(page.locator("#train-accuracy canvas, #train-accuracy svg").first).to_be_visible()

    page.locator("#train-steps input").fill("0")  # now only the one-minute budget: it must be stopped
    start.click()
    expect(status).to_contain_text(re.compile(r"Training… step \d+, loss \d"))
    page.locator("#train-stop").click()
    expect(status).to_contain_text(re.compile(r"Training stopped at step \d+"))
    expect(start).to_be_enabled()
    # This page's model is untouched until someone clicks "Use the trained model".
    expect(page.locator("#model-info")).to_contain_text(f"This page's model: {shipped_model_name()}")


def test_sample_at_two_guidance_weights(page, tmp_path: Path) -> None:
    open_tab(page, "Sample")
    sheet, gif = page.locator("#sample-sheet img"), page.locator("#sample-gif img")
    summary = page.locator("#sample-summary")
    seen = {}
    for w in (0, 5):
        set_number(page, "sample-w", w)
        page.locator("#sample-go").click()
        expect(summary).to_contain_text(f"w = {w},")
        expect(summary).to_contain_text("10 digits")
        expect(gif).to_have_attribute("src", re.compile(r"\.gif$"))
        expect(page.get_by_role("cell", name=f"digits-w{w}-dpmpp-seed0.npz")).to_be_visible()
        seen[w] = (fetch(page, image_src(sheet), tmp_path / f"sheet-w{w}.png").read_bytes(), image_src(gif))
        with Image.open(fetch(page, seen[w][1], tmp_path / f"anim-w{w}.gif")) as anim:
            assert anim.format == "GIF" and anim.n_frames > 5
        with Image.open(tmp_path / f"sheet-w{w}.png") as picture:
            assert picture.format == "PNG" and min(picture.size) >= 3 * 28  # at least one digit, scaled ×3
    assert seen[0][0] != seen[5][0], "the two guidance weights gave the same picture"
    assert seen[0][1] != seen[5][1]


LIVE_WATCH = """() => {
  window.__liveSrcs = [];
  const grid = document.querySelector('#live-grid');
  const record = () => {
    const img = grid.querySelector('img');
    const src = img && img.getAttribute('src');
    const last = window.__liveSrcs[window.__liveSrcs.length - 1];
    if (src && (!last || last[1] !== src)) window.__liveSrcs.push([performance.now(), src]);
  };
  new MutationObserver(record).observe(grid, {subtree: true, childList: true, attributes: true});
  record();
}"""


def test_drag_live_guidance_and_the_digits_follow(page, tmp_path: Path) -> None:
    """Dragging w re-renders the grid during the drag; after release it shows the final w's digits."""
    open_tab(page, "Sample")
    note, grid = page.locator("#live-note"), page.locator("#live-grid img")
    expect(note).to_contain_text("w = 3, seed 0: 10 digits")  # drawn when the page loaded
    start_src = image_src(grid)
    start_png = fetch(page, start_src, tmp_path / "live-start.png")
    page.evaluate(LIVE_WATCH)
    # Drag the thumb from w = 3 (60 % of the 0…5 track) to about w = 1 over about three seconds, as a hand would.
    track = page.locator("#live-w input[type=range]")
    box = track.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.6, y)
    page.mouse.down()
    drag_start = page.evaluate("performance.now()")
    for i in range(1, 41):
        page.mouse.move(box["x"] + box["width"] * (0.6 - 0.4 * i / 40), y)
        page.wait_for_timeout(75)
    drag_end = page.evaluate("performance.now()")
    page.mouse.up()
    final_w = float(page.locator("#live-w input[type=number]").input_value())
    assert 0.5 <= final_w <= 1.5, f"the drag should have moved w to about 1, not {final_w}"
    expect(note).to_contain_text(f"w = {final_w:g}, seed 0: 10 digits")
    changes = [t for t, src in page.evaluate("window.__liveSrcs") if drag_start < t <= drag_end and src != start_src]
    seconds = (drag_end - drag_start) / 1000
    print(f"\nlive guidance: {len(changes)} new grids during a {seconds:.1f} s drag ({len(changes) / seconds:.1f}/s)")
    assert len(changes) >= 3, f"the grid changed only {len(changes)} times during the drag"

    # The picture after release is the student's digits at the final w (as the app draws them in-process).
    from ddpm_ui import sample_tab

    shown = np.asarray(Image.open(fetch(page, image_src(grid), tmp_path / "live-end.png")).convert("L"), dtype=int)
    (expected,), _ = sample_tab.live_digits([[str(c) for c in range(10)]], [final_w], [0])  # a batch of one
    at_start = np.asarray(Image.open(start_png).convert("L"), dtype=int)
    assert shown.shape == expected.shape
    assert np.abs(shown - expected.astype(int)).mean() < 2.0, "the final grid is not the final w's digits"
    assert np.abs(shown - at_start).mean() > 5.0, "the final grid is still the starting w's digits"

    # New noise: the next seed, and the grid follows it at the same w.
    end_src = image_src(grid)
    page.locator("#live-new-noise").click()
    expect(note).to_contain_text(f"w = {final_w:g}, seed 1: 10 digits")
    wait_until(lambda: image_src(grid) not in (None, end_src), "the grid for the new seed")
