"""Browser helpers shared by the browser tests and ``screenshots.py``: finding Chromium, opening the app and
reading what the page shows."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 120_000  # the machine is slow and shared: generous, and Playwright returns as soon as it can
VIEWPORT = {"width": 1280, "height": 900}


def shipped_model_name() -> str:
    """The name the app shows for the shipped digit model (it may be retrained; its name is in its config)."""
    config = json.loads((ROOT / "checkpoints" / "digits-base" / "config.json").read_text(encoding="utf-8"))
    return str(config.get("name") or "digits-base")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium") or shutil.which("chromium-browser")
        hint = f" (there is one at {found}: set E2E_CHROMIUM={found})" if found else ""
        return f"no Chromium at {CHROMIUM}{hint}; install it with `sudo .ci/install-browser`"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing; pip install -r requirements-dev.txt"
    return None


def need_browser() -> None:
    """Skip (on a developer machine) or fail (under CI) when the browser tests cannot run."""
    import pytest

    problem = browser_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"CI=true but the browser tests cannot run: {problem}", pytrace=False)
    pytest.skip(problem)


def open_page(browser: Any, url: str) -> tuple[Any, Any, list[str]]:
    """A fresh browser context with the app loaded: (context, page, list collecting the page's JS errors)."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url, wait_until="load")
    page.locator("#forward-t").wait_for(state="visible")
    return context, page, errors


def wait_until(predicate: Callable[[], Any], what: str, timeout_s: float = TIMEOUT_MS / 1000) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.25)


def output_image(page: Any, label: str) -> Any:
    """The <img> inside the image block whose label is exactly ``label``."""
    block_label = page.get_by_test_id("block-label").filter(has_text=re.compile(r"^\s*" + re.escape(label) + r"\s*$"))
    return page.locator(".block").filter(has=block_label).locator("img").first


def image_src(img: Any) -> str | None:
    """The src of an <img> locator, or None while there is no such element."""
    return img.get_attribute("src", timeout=2000) if img.count() else None


def natural_size(img: Any) -> tuple[int, int]:
    """(width, height) of the picture an <img> shows; (0, 0) until it has loaded."""
    if not img.count():
        return (0, 0)
    width, height = img.evaluate("el => [el.complete ? el.naturalWidth : 0, el.complete ? el.naturalHeight : 0]")
    return int(width), int(height)


def fetch(page: Any, src: str, dest: Path) -> Path:
    """Download what the page shows (through the page's own session) to ``dest``."""
    response = page.request.get(src)
    assert response.ok, f"GET {src} answered {response.status}"
    dest.write_bytes(response.body())
    return dest


def set_number(page: Any, elem_id: str, value: float) -> None:
    """Type into the number box of the slider or number field ``elem_id`` and press Enter, as a user would."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def open_tab(page: Any, name: str) -> None:
    """Click a tab and wait until it is the selected one."""
    from playwright.sync_api import expect

    tab = page.get_by_role("tab", name=name)
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")


def text_of(locator: Any) -> str:
    """Visible text with runs of white space folded (KaTeX spreads formulas over many lines)."""
    return " ".join(locator.inner_text().split())
