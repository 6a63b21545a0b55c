"""Deep links in a real browser: a link opens its tab with its values and draws the view for them, a bad
link opens anyway with a note, and "Copy link to this view" gives a link that reopens the same view.

Run just these with ``python -m pytest -m e2e tests/e2e/test_deep_links.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_helpers import open_tab, set_number, text_of, wait_until

from ddpm_core.sampling import SamplerSettings

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (or fails them under CI) with the reason
    expect = None

pytestmark = pytest.mark.e2e


@pytest.fixture()
def visit(browser: Any, live_app: Any) -> Iterator[Any]:
    """``visit(query)``: a fresh page (its own session) opened at ``query``; fails on JavaScript errors."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_at(query: str) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda err: errors.append(str(err)))
        url = query if query.startswith("http") else live_app.url + query
        page.goto(url, wait_until="load")
        page.locator("#copy-link").wait_for(state="visible")
        return page

    yield open_at
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def selected_tab(page: Any, name: str) -> None:
    expect(page.get_by_role("tab", name=name, exact=True)).to_have_attribute("aria-selected", "true")


def forward_info(page: Any) -> Any:
    return page.locator("[data-testid=markdown]:visible").filter(has_text="paper step").first


def alpha_bar_shown(page: Any) -> float:
    """ᾱ_t from the Forward tab's line of numbers: "t = … · β_t = … · ᾱ_t = … · …"."""
    part = text_of(forward_info(page)).split(" · ")[2]
    return float(re.findall(r"= ([0-9.]+(?:e-?[0-9]+)?)", part)[-1])


def cosine_alpha_bar(t: int, T: int, s: float = 0.008) -> float:
    """Nichol & Dhariwal (2021), eq. 17: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s) · π/2)."""

    def f(u: float) -> float:
        return math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2

    return f(t) / f(0)


def visible_sample_seed(page: Any) -> list[str]:
    """The main Sample seed box (the one labelled "seed" outside the live-guidance block)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input[type=number]')]
            .filter(el => el.offsetParent !== null && !el.closest('#live-seed')
                    && el.closest('label') && el.closest('label').innerText.trim() === 'seed')
            .map(el => el.value)"""
    )


def link_box(page: Any) -> Any:
    return page.locator("#view-link textarea, #view-link input").first


def test_forward_link_sets_the_controls_and_draws_that_view(visit) -> None:
    page = visit("?tab=forward&schedule=cosine&T=1000&t=500")
    selected_tab(page, "Forward noise")
    expect(page.locator("#forward-t input[type=number]")).to_have_value("500")
    expect(page.locator("#forward-schedule input[value=cosine]")).to_be_checked()
    expect(page.locator("#forward-T input[value='1000']")).to_be_checked()
    expect(forward_info(page)).to_contain_text("t = 500 (paper step 501 of 1000)")
    # The numbers are the cosine schedule's (ᾱ ≈ 0.49 halfway), not the linear one's (ᾱ ≈ 0.08 there).
    assert abs(alpha_bar_shown(page) - cosine_alpha_bar(501, 1000)) < 0.01
    expect(page.locator("#link-note")).to_be_hidden()


def test_setting_T_does_not_clamp_the_links_t(visit) -> None:
    # T changes from 1000 to 150, which retargets t; the link's t = 100 must survive (not the old 200 clamped to 149).
    page = visit("?tab=forward&T=150&t=100")
    expect(page.locator("#forward-T input[value='150']")).to_be_checked()
    expect(forward_info(page)).to_contain_text("t = 100 (paper step 101 of 150)")
    expect(page.locator("#forward-t input[type=number]")).to_have_value("100")


def test_setting_T_on_the_oracle_tab_does_not_clamp_the_links_t(visit) -> None:
    # The same link on the oracle tab, whose controls mount only when the link selects it: t = 100 must survive
    # T's retarget (not the default 200 clamped to 149), in the slider and in the views drawn for it.
    page = visit("?tab=oracle&schedule=cosine&T=150&t=100")
    selected_tab(page, "Oracle reconstruction")
    expect(page.locator("#oracle-T input[value='150']")).to_be_checked()
    expect(page.locator("#oracle-schedule input[value=cosine]")).to_be_checked()
    table = page.locator("[data-testid=markdown]:visible").filter(has=page.locator("table")).first
    expect(table).to_contain_text("t = 100, seed 0")
    expect(page.locator("#oracle-t input[type=number]")).to_have_value("100")


def test_oracle_link_draws_the_oracle_tab(visit) -> None:
    page = visit("?tab=oracle&t=300&seed=5")
    selected_tab(page, "Oracle reconstruction")
    expect(page.locator("#oracle-t input[type=number]")).to_have_value("300")
    table = page.locator("[data-testid=markdown]:visible").filter(has=page.locator("table")).first
    expect(table).to_contain_text("t = 300, seed 5")


def test_sample_link_sets_w_and_seed(visit) -> None:
    page = visit("?tab=sample&w=5&seed=3")
    selected_tab(page, "Sample")
    expect(page.locator("#sample-w input[type=number]")).to_have_value("5")
    wait_until(lambda: visible_sample_seed(page) == ["3"], "the Sample seed box to show 3")
    expect(page.locator("#link-note")).to_be_hidden()


def test_live_guidance_link_redraws_the_live_digits(visit) -> None:
    page = visit("?tab=sample&live_w=2&digits=1,7")
    selected_tab(page, "Sample")
    expect(page.locator("#live-w input[type=number]")).to_have_value("2")
    expect(page.locator("#live-note")).to_contain_text("w = 2, seed 0")
    expect(page.locator("#sample-classes input[type=checkbox]:checked")).to_have_count(2)


def test_a_bad_link_opens_anyway_with_a_note(visit) -> None:
    page = visit("?tab=sample&w=99&digits=1,x&oops=1&seed=4")
    selected_tab(page, "Sample")
    note = page.locator("#link-note")
    expect(note).to_contain_text("Part of this link was not used")
    expect(note).to_contain_text("w must be a number between 0 and 8")
    expect(note).to_contain_text("oops")
    wait_until(lambda: visible_sample_seed(page) == ["4"], "the good part of the link (seed 4)")
    default_w = f"{SamplerSettings.w:g}"
    expect(page.locator("#sample-w input[type=number]")).to_have_value(default_w)  # the bad w left the default
    expect(page.locator("#sample-classes input[type=checkbox]:checked")).to_have_count(10)

    page = visit("?tab=gallery&t=50")
    selected_tab(page, "Forward noise")
    expect(page.locator("#link-note")).to_contain_text("no such tab")
    expect(forward_info(page)).to_contain_text("t = 50 (paper step 51 of 1000)")


def test_copy_link_reopens_the_same_view(visit, live_app) -> None:
    page = visit("")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    expect(forward_info(page)).to_contain_text("paper step 201 of 1000")
    page.locator("#forward-schedule input[value=cosine]").check()
    set_number(page, "forward-t", 700)
    expect(forward_info(page)).to_contain_text("t = 700 (paper step 701 of 1000)")
    page.locator("#copy-link").click()
    expect(link_box(page)).to_have_value(re.compile(r"^http"))
    url = link_box(page).input_value()
    assert url == f"{live_app.url.rstrip('/')}/?tab=forward&t=700&schedule=cosine"
    assert page.evaluate("navigator.clipboard.readText()") == url

    again = visit(url)
    selected_tab(again, "Forward noise")
    expect(again.locator("#forward-schedule input[value=cosine]")).to_be_checked()
    expect(forward_info(again)).to_contain_text("t = 700 (paper step 701 of 1000)")
    assert abs(alpha_bar_shown(again) - cosine_alpha_bar(701, 1000)) < 0.01

    # The link follows the tab the page shows.
    open_tab(page, "Sample")
    set_number(page, "sample-w", 6)  # the default is SamplerSettings.w
    expect(page.locator("#sample-w input[type=number]")).to_have_value("6")
    page.locator("#copy-link").click()
    expect(link_box(page)).to_have_value(re.compile(r"\?tab=sample&w=6$"))
    sample = visit(link_box(page).input_value())
    selected_tab(sample, "Sample")
    expect(sample.locator("#sample-w input[type=number]")).to_have_value("6")
