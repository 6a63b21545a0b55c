"""Every picture the page shows has an alt text: fixed where it is built, or set with each picture it draws.

What each view's alt text says is tested with its tab; this checks that no picture was left without one.
"""

from __future__ import annotations

from types import ModuleType

import gradio as gr

# The live grid's event is batched (several people at once), so its alt text follows its note instead.
SETS_ALT_TEXT = {"live_alt_text"}


def name_of(fn: object) -> str:
    return getattr(fn, "__name__", "")


def test_every_output_picture_has_an_alt_text(app_module: ModuleType) -> None:
    demo = app_module.demo
    pictures = [b for b in demo.blocks.values() if isinstance(b, gr.Image) and not b.interactive]
    assert len(pictures) >= 15  # the four tabs' pictures are all found
    for picture in pictures:
        writers = [f for f in demo.fns.values() if picture in f.outputs and f.targets]  # events the page fires
        assert writers, f"nothing on the page draws {picture.label!r}"
        if picture.alt_text:
            continue
        with_alt = [f for f in writers if name_of(f.fn).endswith("_for_page") or name_of(f.fn) in SETS_ALT_TEXT]
        assert with_alt, f"{picture.label!r} has no alt text and no event of the page sets one"


def test_the_api_handlers_keep_plain_pictures(app_module: ModuleType) -> None:
    """Each page twin has an API event of the same name that nothing on the page fires (it returns pixels only)."""
    fns = list(app_module.demo.fns.values())
    twins = {name_of(f.fn).removesuffix("_for_page") for f in fns if name_of(f.fn).endswith("_for_page")}
    assert {"forward_view", "sample_digits", "guidance_sweep"} <= twins
    api = {f.api_name: f for f in fns if f.api_name}
    for name in twins:
        assert name in api, f"{name}_for_page has no API event"
        assert not api[name].targets, f"the page fires the API event {name}"
