"""common.picture_view and picture_events: one view; an API handler with plain pictures, a page twin with alt text."""

from __future__ import annotations

import inspect

import gradio as gr
import numpy as np
import pytest

from ddpm_ui.common import InputError, Picture, picture_events, picture_view

PIXELS = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)


@picture_view
def toy(n: int, request: gr.Request | None = None) -> tuple[Picture, str, Picture]:
    """A toy view."""
    if n < 0:
        raise InputError("n must not be negative.")
    return Picture(PIXELS * n, f"picture {n}"), f"note {n}", Picture("/tmp/anim.gif", "a GIF")


@picture_view
def one(n: int) -> Picture:
    """A view with one output."""
    return Picture(PIXELS + n, f"only {n}")


STOPPED: list[str] = []


@picture_view
def streaming(n: int) -> object:
    """A view that streams n previews, then its result."""
    try:
        for k in range(n):
            yield Picture(PIXELS + k, f"preview {k}"), None
        yield Picture(PIXELS, "done"), "finished"
    finally:
        STOPPED.append("closed")


def test_the_api_handler_returns_the_pictures_alone() -> None:
    picture, note, gif = toy(2)
    assert np.array_equal(picture, PIXELS * 2) and note == "note 2" and gif == "/tmp/anim.gif"
    assert np.array_equal(one(1), PIXELS + 1)  # a single output stays single


def test_the_page_twin_sets_each_alt_text_in_the_same_update() -> None:
    picture, note, gif = toy.for_page(2)
    assert picture["__type__"] == "update" and picture["alt_text"] == "picture 2"
    assert np.array_equal(picture["value"], PIXELS * 2) and note == "note 2"
    assert gif == {"__type__": "update", "value": "/tmp/anim.gif", "alt_text": "a GIF"}
    assert one.for_page(1)["alt_text"] == "only 1"


def test_names_and_signatures_are_what_gradio_reads() -> None:
    assert (toy.__name__, toy.for_page.__name__) == ("toy", "toy_for_page")
    for handler in (toy, toy.for_page):  # Gradio finds gr.Request (and gr.Progress) through the signature
        assert list(inspect.signature(handler).parameters) == ["n", "request"]
    assert inspect.isgeneratorfunction(streaming) and inspect.isgeneratorfunction(streaming.for_page)


def test_both_handlers_turn_errors_into_messages() -> None:
    for handler in (toy, toy.for_page):
        with pytest.raises(gr.Error) as excinfo:
            handler(-1)
        assert excinfo.value.message == "n must not be negative."


def test_a_streaming_view_is_mapped_value_by_value_and_closing_the_twin_closes_it() -> None:
    api = list(streaming(2))
    assert [len(value) for value in api] == [2, 2, 2] and api[-1][1] == "finished"
    assert all(isinstance(value[0], np.ndarray) for value in api)
    page = streaming.for_page(3)
    first = next(page)
    assert first[0]["alt_text"] == "preview 0" and np.array_equal(first[0]["value"], PIXELS)
    STOPPED.clear()
    page.close()  # what Gradio does when the page cancels or goes away
    assert STOPPED == ["closed"]  # the view's own clean-up ran (a heavy view stops its work there)


def test_picture_events_wires_an_api_endpoint_without_triggers_and_a_private_twin() -> None:
    with gr.Blocks() as demo:
        number, button = gr.Number(), gr.Button()
        image, text, gif = gr.Image(), gr.Markdown(), gr.Image()
        page = picture_events(toy, [button.click], number, [image, text, gif], concurrency_limit=2)
        picture_events(one, [number.change], number, image, concurrency_id="shared", trigger_mode="always_last")
    by_name = {fn.name: fn for fn in demo.fns.values()}
    api, twin = by_name["toy"], by_name["toy_for_page"]
    assert page.fn is twin.fn  # the page's event is returned, to chain or to cancel
    assert api.api_name == "toy" and api.targets == [] and api.api_visibility == "public"
    assert twin.api_visibility == "private" and twin.targets == [(button._id, "click")]
    assert api.concurrency_id == twin.concurrency_id == "toy" and api.concurrency_limit == twin.concurrency_limit == 2
    assert by_name["one"].concurrency_id == by_name["one_for_page"].concurrency_id == "shared"
    assert by_name["one_for_page"].trigger_mode == "always_last"
