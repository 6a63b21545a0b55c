"""Tab 1, forward noise: the handler called directly, with good and bad input, and the slider helpers."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from ui_fixtures import EXAMPLE_HW, numbers_after

from ddpm_ui import common, forward_tab


def test_example_image_and_its_licence_note_ship() -> None:
    assert common.DEFAULT_IMAGE.is_file()
    assert Image.open(common.DEFAULT_IMAGE).size == (512, 600)
    readme = (common.DEFAULT_IMAGE.parent / "README.md").read_text()
    assert "grace_hopper.jpg" in readme and "public domain" in readme.lower()


def test_forward_view_outputs(example: str) -> None:
    mean, samples, noise, single, plot, info = forward_tab.forward_view(example, 250, "linear", 1000, 3)
    for picture in (mean, samples, noise, single, plot):
        assert isinstance(picture, np.ndarray) and picture.dtype == np.uint8 and picture.ndim == 3
    assert mean.shape == (*EXAMPLE_HW, 3) and noise.shape == (*EXAMPLE_HW, 3)
    assert samples.shape[1] > 3 * EXAMPLE_HW[1]  # three samples side by side
    assert "t = 250" in info and "seed 3" in info and "resized from 512×600 to 218×256" in info
    alpha_bar = numbers_after(info, r"$\bar\alpha_t$ =")
    assert 0.0 < alpha_bar < 1.0
    # The mean image is √ᾱ_t x₀: at t = 250 it is darker than x₀ but not black.
    x0 = forward_tab.forward_view(example, 0, "linear", 1000, 3)[0].astype(float)
    ratio = (mean.astype(float) - 127.5).std() / (x0 - 127.5).std()
    assert ratio == pytest.approx(alpha_bar**0.5, abs=0.03)


def test_forward_view_is_reproducible_and_seed_matters(example: str) -> None:
    a = forward_tab.forward_view(example, 140, "cosine", 150, 11)
    b = forward_tab.forward_view({"path": example}, 140.0, "cosine", "150", 11.0)  # Gradio's payload and JSON types
    assert all(np.array_equal(x, y) for x, y in zip(a[:5], b[:5], strict=True))
    other = forward_tab.forward_view(example, 140, "cosine", 150, 12)
    assert not np.array_equal(a[1], other[1])  # new noise
    assert np.array_equal(a[0], other[0])  # same mean


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, 10, "linear", 1000, 0), "upload an image"),
        (("", 10, "linear", 1000, 0), "upload an image"),
        (({"path": None}, 10, "linear", 1000, 0), "upload an image"),
        (("EXAMPLE", 1000, "linear", 1000, 0), "between 0 and 999"),
        (("EXAMPLE", 200, "linear", 150, 0), "between 0 and 149"),
        (("EXAMPLE", -1, "linear", 1000, 0), "between 0 and 999"),
        (("EXAMPLE", 2.5, "linear", 1000, 0), "whole number"),
        (("EXAMPLE", "soon", "linear", 1000, 0), "must be a number"),
        (("EXAMPLE", 10, "quadratic", 1000, 0), "schedule must be one of"),
        (("EXAMPLE", 10, "linear", 500, 0), "T must be one of"),
        (("EXAMPLE", 10, "linear", "many", 0), "T must be one of"),
        (("EXAMPLE", 10, "linear", 1000, -1), "seed must be a whole number"),
        (("EXAMPLE", 10, "linear", 1000, 0.5), "seed must be a whole number"),
        (("/no/such/file.png", 10, "linear", 1000, 0), "not one the app received"),
    ],
)
def test_forward_view_bad_input_raises_readable_errors(example: str, args: tuple, message: str) -> None:
    args = tuple(example if a == "EXAMPLE" else a for a in args)
    with pytest.raises(gr.Error) as info:
        forward_tab.forward_view(*args)
    assert message in info.value.message
    assert "Traceback" not in info.value.message


def test_unexpected_failures_are_reported_without_details(example: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("internal detail /srv/secret/path")

    monkeypatch.setattr(forward_tab.oracle, "explore_forward", broken)
    with pytest.raises(gr.Error) as info:
        forward_tab.forward_view(example, 10, "linear", 1000, 0)
    assert "went wrong" in info.value.message and "secret" not in info.value.message


def test_t_slider_follows_T() -> None:
    update = common.retarget_step(150, 800)
    assert update["maximum"] == 149 and update["value"] == 149
    update = common.retarget_step("1000", 40)
    assert update["maximum"] == 999 and update["value"] == 40
    assert common.next_seed(41) == 42 and common.next_seed(None) == 0
