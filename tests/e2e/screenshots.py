"""Take the README screenshots of the four tabs, filled with real content, from a real browser.

    python tests/e2e/screenshots.py [--out assets/screenshots]

Starts ``python app.py`` on a free port (with a throw-away home folder), drives Debian's Chromium with
Playwright at 1280 px wide and writes one full-page PNG per tab: ``forward.png`` (t = 300), ``oracle.png``
(with the reverse chain run and the model-vs-oracle strip), ``train.png`` (this page's model card and a
45-second training run) and
``sample.png`` (live guidance with the teacher beside the student, then two digits per class with the
denoising GIF). Each file is kept under ``--max-kb`` by
reducing it to a 256-colour palette and, only if that is not enough, scaling it down.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from appserver import ROOT, running_app
from e2e_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    browser_problem,
    natural_size,
    open_page,
    open_tab,
    set_number,
    wait_until,
)


def all_images_loaded(page: Any) -> bool:
    return page.evaluate(
        """() => [...document.querySelectorAll('img')]
                 .filter(img => img.offsetParent !== null)
                 .every(img => img.complete && img.naturalWidth > 0)"""
    )


def shrink(picture: Image.Image, max_kb: int) -> tuple[bytes, Image.Image]:
    """PNG bytes under ``max_kb`` if possible: full colour, then fewer palette colours, then smaller."""
    attempts = [(1.0, None), (1.0, 256), (1.0, 128), (1.0, 64)] + [(0.85**k, 128) for k in range(1, 6)]
    for scale, colors in attempts:
        candidate = picture
        if scale < 1.0:
            size = (round(picture.width * scale), round(picture.height * scale))
            candidate = candidate.resize(size, Image.Resampling.LANCZOS)
        if colors:
            candidate = candidate.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buffer = io.BytesIO()
        candidate.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= max_kb * 1024:
            break
    return buffer.getvalue(), candidate


def save(page: Any, path: Path, max_kb: int, settle_ms: int = 500) -> None:
    """A full-page screenshot once every picture has loaded, kept under ``max_kb``."""
    wait_until(lambda: all_images_loaded(page), "every picture on the page to load")
    page.wait_for_timeout(settle_ms)  # let the last layout shift settle
    picture = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    data, kept = shrink(picture, max_kb)
    path.write_bytes(data)
    print(f"{path}: {kept.width}×{kept.height}, {len(data) // 1024} KB")


def forward(page: Any, out: Path, max_kb: int) -> None:
    set_number(page, "forward-t", 300)
    page.locator("[data-testid=markdown]").filter(has_text="paper step 301 of 1000").first.wait_for()
    save(page, out / "forward.png", max_kb)


def oracle(page: Any, out: Path, max_kb: int) -> None:
    open_tab(page, "Oracle reconstruction")
    page.locator("[data-testid=markdown]").filter(has_text="t = 300, seed 0").first.wait_for()
    page.get_by_role("button", name="Run the oracle reverse chain (all T steps)").click()
    page.locator("[data-testid=markdown]").filter(has_text="Final error against").first.wait_for()
    page.locator("#mvo-seed input").fill("0")
    page.locator("#mvo-seed input").press("Enter")  # the model-vs-oracle strip for a held-out 3 at t = 100
    page.locator("[data-testid=markdown]").filter(has_text="ε error (mean squared").first.wait_for()
    save(page, out / "oracle.png", max_kb)


def train(page: Any, out: Path, max_kb: int) -> None:
    open_tab(page, "Train or load")
    page.locator("#model-info").filter(has_text="This page's model").wait_for()
    # a short real run, so the picture shows the loss curve and a preview grid, not empty panels
    set_number(page, "train-minutes", 0.75)
    page.locator("#train-start").click()
    page.locator("#train-status").filter(has_text="finished at step").wait_for()
    save(page, out / "train.png", max_kb)


def sample(page: Any, out: Path, max_kb: int) -> None:
    open_tab(page, "Sample")
    page.locator("#live-note").filter(has_text="10 digits in").wait_for()
    page.locator("#live-teacher").click()
    page.get_by_text("Both rows start from the same").wait_for()
    per_digit = page.get_by_label("number input for samples per digit")
    per_digit.fill("2")
    per_digit.press("Enter")
    page.locator("#sample-go").click()
    page.locator("#sample-summary").filter(has_text="20 digits in").wait_for()
    gif = page.locator("#sample-gif img")
    wait_until(lambda: natural_size(gif)[0] > 0, "the GIF")
    # Headless Chromium advances a GIF only while it paints frames: paint the GIF for a while, so the
    # screenshot lands in the last frame's 1.5 s hold (15 frames at 12 fps) rather than on pure noise.
    gif.scroll_into_view_if_needed()
    for _ in range(12):
        gif.screenshot()
        page.wait_for_timeout(100)
    save(page, out / "sample.png", max_kb, settle_ms=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshots", help="folder for the PNGs")
    parser.add_argument("--max-kb", type=int, default=400, help="largest file size in KB")
    args = parser.parse_args(argv)
    problem = browser_problem()
    if problem:
        print(f"cannot take screenshots: {problem}", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ddpm-screenshots-") as home, running_app(Path(home)) as app:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            context, page, errors = open_page(browser, app.url)
            page.set_default_timeout(TIMEOUT_MS)
            for step in (forward, oracle, train, sample):
                step(page, args.out, args.max_kb)
            context.close()
            browser.close()
        if errors:
            print(f"JavaScript errors in the page: {errors}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
