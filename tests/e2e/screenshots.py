"""Take the README screenshots of the tabs, filled with real content, from a real browser.

    python tests/e2e/screenshots.py [--out assets/screenshots] [--only NAME[,NAME]]

Starts ``python app.py`` on a free port (with a throw-away home folder), drives Debian's Chromium with
Playwright at 1280 px wide and writes one PNG per shot: ``forward.png`` (t = 300), ``oracle.png`` (with the
reverse chain run and the model-vs-oracle strip), ``train.png`` (this page's model card and a 45-second
training run), ``sample.png`` (live guidance with the teacher beside the student, then two digits per class
with the denoising GIF) and ``fashion.png`` (the Sample tab switched to Fashion-MNIST, two items per class with
their class-named verdicts and the GIF, from the sampler's heading down: live guidance is digits only).
``--only fashion`` (or ``--only forward,sample``) retakes some shots and leaves the other files alone; the
shots run in the order above, on one page. Each file is kept under ``--max-kb`` by reducing it to a
256-colour palette and, only if that is not enough, scaling it down.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageSequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from appserver import ROOT, running_app
from e2e_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    browser_problem,
    image_src,
    natural_size,
    open_page,
    open_tab,
    set_number,
    wait_until,
)

GIF = "#sample-gif img"  # the Sample tab's denoising GIF


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


# Where an <img> paints its picture (x, y, width, height), in page coordinates or (false) within the element:
# Gradio shows pictures with object-fit: scale-down.
PICTURE_BOX_JS = """(el, onPage) => {
    const box = el.getBoundingClientRect();
    const scale = Math.min(box.width / el.naturalWidth, box.height / el.naturalHeight, 1);
    const [w, h] = [el.naturalWidth * scale, el.naturalHeight * scale];
    const [x, y] = onPage ? [box.left + window.scrollX, box.top + window.scrollY] : [0, 0];
    return [x + (box.width - w) / 2, y + (box.height - h) / 2, w, h];
}"""


def gif_frames(page: Any, gif: Any) -> list[np.ndarray]:
    """The frames of the GIF an <img> shows, each in grey and shrunk 8× (enough to tell them apart)."""
    response = page.request.get(image_src(gif))
    with Image.open(io.BytesIO(response.body())) as movie:
        size = (max(1, movie.width // 8), max(1, movie.height // 8))
        return [
            np.asarray(frame.convert("L").resize(size), dtype=np.float32) for frame in ImageSequence.Iterator(movie)
        ]


def frame_shown(picture: Image.Image, box: list[float], frames: list[np.ndarray]) -> int:
    """Which of ``frames`` the part ``box`` (x, y, width, height) of a screenshot shows: the nearest one."""
    x, y, w, h = box
    size = (frames[0].shape[1], frames[0].shape[0])
    seen = np.asarray(picture.crop((round(x), round(y), round(x + w), round(y + h))).convert("L").resize(size))
    return int(np.argmin([np.abs(frame - seen).mean() for frame in frames]))


def paint_until_last_frame(page: Any, gif: Any, frames: list[np.ndarray], timeout_s: float = 30) -> None:
    """Paint the GIF until it shows its last frame (which it holds for 1.5 s).

    Headless Chromium advances a GIF only while it paints frames, so screenshots of the GIF alone (about a tenth
    of a second each) play it until its last frame comes up.
    """

    def at_last_frame() -> bool:
        picture = Image.open(io.BytesIO(gif.screenshot()))
        return frame_shown(picture, gif.evaluate(PICTURE_BOX_JS, False), frames) == len(frames) - 1

    wait_until(at_last_frame, "the GIF's last frame", timeout_s)


def save(
    page: Any, path: Path, max_kb: int, settle_ms: int = 500, top: Any = None, gif: Any = None, tries: int = 5
) -> None:
    """A full-page screenshot once every picture has loaded, kept under ``max_kb``: from ``top``'s upper edge down
    (if given), with ``gif`` (if given) caught in its last frame, retaken up to ``tries`` times until it is."""
    wait_until(lambda: all_images_loaded(page), "every picture on the page to load")
    page.wait_for_timeout(settle_ms)  # let the last layout shift settle
    frames = gif_frames(page, gif) if gif is not None else []
    for attempt in range(1, tries + 1):
        if frames:
            paint_until_last_frame(page, gif, frames)
        picture = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
        if not frames or frame_shown(picture, gif.evaluate(PICTURE_BOX_JS, True), frames) == len(frames) - 1:
            break
        if attempt == tries:
            print(f"{path}: the GIF is not in its last frame after {tries} tries; keeping the last", file=sys.stderr)
    if top is not None:
        y = top.evaluate("el => el.getBoundingClientRect().top + window.scrollY")
        picture = picture.crop((0, max(0, round(y) - 8), picture.width, picture.height))
    data, kept = shrink(picture, max_kb)
    path.write_bytes(data)
    print(f"{path}: {kept.width}×{kept.height}, {len(data) // 1024} KB")


def forward_at_300(page: Any) -> None:
    """The forward tab at t = 300 (the oracle tab takes its image and t from there)."""
    open_tab(page, "Forward noise")
    set_number(page, "forward-t", 300)
    page.locator("[data-testid=markdown]").filter(has_text="paper step 301 of 1000").first.wait_for()


def forward(page: Any, out: Path, max_kb: int) -> None:
    forward_at_300(page)
    save(page, out / "forward.png", max_kb)


def oracle(page: Any, out: Path, max_kb: int) -> None:
    forward_at_300(page)  # already so after the forward shot; needed when this shot is taken alone
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


def sample_two_per_class(page: Any, items: str) -> None:
    """Run the Sample tab's main sampler with two samples per class and wait for its new verdict sheet and GIF,
    ``items`` is the dataset's plural ("digits") as the summary writes it."""
    sheet, gif = page.locator("#sample-sheet img"), page.locator(GIF)
    before = image_src(sheet), image_src(gif)  # a previous shot may have left its own pictures there
    set_number(page, "sample-per-class", 2)
    page.locator("#sample-go").click()
    page.locator("#sample-summary").filter(has_text=f"20 {items} in").wait_for()
    for img, old, what in ((sheet, before[0], "the verdict sheet"), (gif, before[1], "the GIF")):
        wait_until(lambda img=img, old=old: image_src(img) not in (None, old) and natural_size(img)[0] > 0, what)


def sample(page: Any, out: Path, max_kb: int) -> None:
    open_tab(page, "Sample")
    page.locator("#live-note").filter(has_text="10 digits in").wait_for()
    page.locator("#live-teacher").click()
    page.get_by_text("Both rows start from the same").wait_for()
    sample_two_per_class(page, "digits")
    save(page, out / "sample.png", max_kb, gif=page.locator(GIF))


def fashion(page: Any, out: Path, max_kb: int) -> None:
    open_tab(page, "Sample")
    page.locator("#sample-dataset").get_by_text("Fashion-MNIST", exact=True).click()
    # the tab has followed the page's new dataset once the boxes and the slider name fashion classes
    page.locator("#sample-classes").filter(has_text="Ankle boot").wait_for()
    page.locator("#sample-per-class").filter(has_text="samples per class").wait_for()
    sample_two_per_class(page, "fashion items")
    intro = page.locator("[data-testid=markdown]").filter(has_text="Sampling with classifier-free guidance").first
    save(page, out / "fashion.png", max_kb, top=intro, gif=page.locator(GIF))


SHOTS: dict[str, Callable[[Any, Path, int], None]] = {
    "forward": forward, "oracle": oracle, "train": train, "sample": sample, "fashion": fashion,
}  # fmt: skip


def shot_names(text: str) -> list[str]:
    """The shots named in ``--only`` ("fashion" or "forward,sample"), checked, in the order they are taken."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - SHOTS.keys())
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"name shots among {', '.join(SHOTS)} (got {text!r})")
    return [name for name in SHOTS if name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshots", help="folder for the PNGs")
    parser.add_argument("--max-kb", type=int, default=400, help="largest file size in KB")
    parser.add_argument("--only", type=shot_names, default=list(SHOTS), metavar="NAME[,NAME]",
                        help=f"take only these shots, of {', '.join(SHOTS)} (default: all)")  # fmt: skip
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
            for name in args.only:
                SHOTS[name](page, args.out, args.max_kb)
            context.close()
            browser.close()
        if errors:
            print(f"JavaScript errors in the page: {errors}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
