"""Loading a checkpoint in the browser: it becomes that page's model only; a second page keeps the shipped one.
This module starts its own ``python app.py`` and leaves the shared one alone."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from appserver import ROOT, AppProcess, running_app
from e2e_helpers import need_browser, open_page, open_tab, shipped_model_name

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (or fails them under CI) with the reason
    expect = None

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-step tiny model (T = 50) made with the training command line."""
    out = tmp_path_factory.mktemp("tiny") / "e2e-tiny"
    command = [sys.executable, "-m", "ddpm_core.cli.train", "--steps", "3", "--preset", "tiny", "--T", "50"]
    subprocess.run([*command, "--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="module")
def own_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    need_browser()
    with running_app(tmp_path_factory.mktemp("e2e-upload-app")) as app:
        yield app


def test_load_a_bad_then_a_good_checkpoint_and_sample_from_it(
    browser: Any, own_app: AppProcess, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(b"\x00" * 8 + b"definitely not tensors" * 100)
    shipped = shipped_model_name()
    context, page, errors = open_page(browser, own_app.url)
    try:
        open_tab(page, "Train or load")
        info, upload = page.locator("#model-info"), page.locator("#ckpt-upload")
        expect(info).to_contain_text(f"This page's model: {shipped}")

        # A corrupt weights file: a readable error, and the page's model stays.
        upload.locator("input[type=file]").set_input_files([str(corrupt), str(tiny_checkpoint / "config.json")])
        expect(upload).to_contain_text("config")
        page.locator("#ckpt-load").click()
        toast = page.get_by_test_id("toast-body").filter(has_text="That checkpoint was not loaded")
        expect(toast).to_be_visible()
        expect(toast).to_contain_text("This page's model is unchanged")
        expect(toast).not_to_contain_text("Traceback")
        expect(info).to_contain_text(f"This page's model: {shipped}")

        # The real thing.
        upload.get_by_role("button", name="Clear").click()
        files = [str(tiny_checkpoint / "model.safetensors"), str(tiny_checkpoint / "config.json")]
        upload.locator("input[type=file]").set_input_files(files)
        page.locator("#ckpt-load").click()
        expect(info).to_contain_text("Loaded for this page.")
        expect(info).to_contain_text("This page's model: e2e-tiny")
        expect(info).to_contain_text("T = 50")
        expect(info).to_contain_text("3 steps")

        # Another visitor's page (its own browser context, its own session) still has the shipped model.
        other_context, other, other_errors = open_page(browser, own_app.url)
        try:
            open_tab(other, "Train or load")
            expect(other.locator("#model-info")).to_contain_text(f"This page's model: {shipped}")
            expect(other.locator("#model-info")).to_contain_text("shared by every visitor")
            expect(other.locator("#train-board")).to_contain_text("trainer is free")
        finally:
            other_context.close()
        assert not other_errors, f"JavaScript errors in the other page: {other_errors}"

        # The Sample tab now uses it.
        open_tab(page, "Sample")
        page.locator("#sample-go").click()
        expect(page.locator("#sample-summary")).to_contain_text("10 digits")
        expect(page.locator("#sample-sheet img")).to_be_visible()

        # The model-vs-oracle t slider spans this model's schedule (T = 50), not the shipped one's.
        open_tab(page, "Oracle reconstruction")
        slider = page.locator("#mvo-t")
        expect(slider).to_contain_text("T = 50")
        expect(slider.locator("input[type=range]")).to_have_attribute("max", "49")
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"
    assert own_app.alive()
