"""Loading a model from the Hugging Face Hub in the browser, offline: a real ``python app.py`` whose Hub cache
(HF_HUB_CACHE, laid out by hand as huggingface_hub lays one out) holds a tiny model, with HF_HUB_OFFLINE=1.
This module starts its own app and leaves the shared one alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from appserver import AppProcess, running_app
from e2e_helpers import need_browser, open_page, open_tab, shipped_model_name
from hub_fixtures import cache_repo

from ddpm_core.checkpoints import CONFIG_FILE, MODEL_FILE, save_checkpoint
from ddpm_core.schedule import make_schedule
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (or fails them under CI) with the reason
    expect = None

pytestmark = pytest.mark.e2e
REPO = "someone/e2e-hub"


@pytest.fixture(scope="module")
def hub_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    need_browser()
    torch.manual_seed(0)
    folder = save_checkpoint(
        tmp_path_factory.mktemp("hub-model") / "e2e-hub", ContextUNet(WIDTH_PRESETS["tiny"]),
        make_schedule("cosine", 50), {"name": "e2e-hub"},
    )  # fmt: skip
    cache = tmp_path_factory.mktemp("hub-cache")
    cache_repo(cache, REPO, {name: (folder / name).read_bytes() for name in (CONFIG_FILE, MODEL_FILE)})
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    with running_app(tmp_path_factory.mktemp("e2e-hub-app"), extra_env=env) as app:
        yield app


def test_a_model_from_the_hub_cache_becomes_this_pages_model(browser: Any, hub_app: AppProcess) -> None:
    shipped = shipped_model_name()
    context, page, errors = open_page(browser, hub_app.url)
    try:
        open_tab(page, "Train or load")
        info, box = page.locator("#model-info"), page.locator("#hub-repo").get_by_role("textbox")
        expect(info).to_contain_text(f"This page's model: {shipped}")

        box.fill("someone/absent")
        page.locator("#hub-load").click()
        toast = page.get_by_test_id("toast-body").filter(has_text="works offline")
        expect(toast).to_be_visible()
        expect(toast).to_contain_text("This page's model is unchanged")
        expect(info).to_contain_text(f"This page's model: {shipped}")

        box.fill(REPO)
        box.press("Enter")  # the box submits like the button
        expect(info).to_contain_text(f"Loaded {REPO} from the Hugging Face Hub for this page.")
        expect(info).to_contain_text("This page's model: e2e-hub")
        expect(info).to_contain_text("T = 50")
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"
    assert hub_app.alive()
