"""Fixtures for the browser tests: a real ``python app.py`` process and Debian's Chromium driven by Playwright.

Nothing is downloaded: Playwright drives the system Chromium at ``/usr/bin/chromium`` (override with
``E2E_CHROMIUM``); ``.ci/install-browser`` installs it on a fresh Debian machine. Without a browser the
tests are skipped with the reason, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # appserver and e2e_helpers live next to this file

from appserver import AppProcess, running_app
from e2e_helpers import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, need_browser, open_page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module (Playwright's event loop does not outlive the module)."""
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """``python app.py`` with its own home folder for one test module; the shipped model stays live."""
    need_browser()  # before spending time on a server the tests could not use
    with running_app(tmp_path_factory.mktemp("e2e-app")) as app:
        yield app
        assert app.alive(), f"the app died during the browser tests:\n{app.log_tail()}"


@pytest.fixture()
def page(browser: Any, live_app: AppProcess) -> Iterator[Any]:
    """A fresh browser context with the app loaded; fails the test if the page threw JavaScript errors."""
    context, page, errors = open_page(browser, live_app.url)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"
