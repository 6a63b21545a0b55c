"""Tab 1, forward noise: the handler called directly, with good and bad input, its alt text, the example photos,
the slider helpers and the controls the tab hands to the deep links."""

from __future__ import annotations

import math
import re

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from ui_fixtures import EXAMPLE_HW, numbers_after

from ddpm_ui import common, forward_tab

NEW_EXAMPLES = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")  # cut from scikit-image's sample data


def linear_alpha_bar(t: int, T: int = 1000) -> float:
    """ᾱ_t of DDPM's linear schedule written out (β from 1e-4 to 0.02 over T = 1000; Ho et al. 2020, §4)."""
    assert T == 1000
    return float(np.prod(1 - np.linspace(1e-4, 0.02, T)[: t + 1]))


def test_example_image_and_its_licence_note_ship() -> None:
    assert common.DEFAULT_IMAGE.is_file()
    assert Image.open(common.DEFAULT_IMAGE).size == (512, 600)
    readme = (common.DEFAULT_IMAGE.parent / "README.md").read_text()
    assert "grace_hopper.jpg" in readme and "public domain" in readme.lower()


@pytest.mark.parametrize("name", NEW_EXAMPLES)
def test_the_new_example_photos_are_small_and_their_licences_written_down(name: str) -> None:
    path = common.DEFAULT_IMAGE.parent / name
    assert path in common.EXAMPLE_IMAGES.values()
    assert path.stat().st_size < 30_000
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (128, 128) and image.mode == "RGB"
    readme = (path.parent / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
    assert "public domain" in row or "CC0" in row
    assert "skimage/data" in readme and "scikit-image" in readme


@pytest.mark.parametrize("label", list(common.EXAMPLE_IMAGES))
def test_every_example_photo_loads_and_draws(label: str) -> None:
    path = common.EXAMPLE_IMAGES[label]
    _, key = common.load_image(str(path))  # a shipped file under assets/: the loader accepts it
    assert key[0] == str(path.resolve())
    mean, *_, info = forward_tab.forward_view(str(path), 10, "linear", 1000, 0)
    with Image.open(path) as image:
        width, height = image.size
    scale = min(1.0, common.IMAGE_SIDE / max(width, height))  # only photos over 256 px are shrunk
    assert mean.shape[:2] == (round(height * scale), round(width * scale))
    assert ("resized" in info) == (scale < 1)


def test_the_examples_are_buttons_named_in_words() -> None:
    with gr.Blocks():
        image = gr.Image(type="filepath")
        examples = common.image_examples(image, "test-examples")
    assert examples.dataset.elem_id == "test-examples"
    assert examples.example_labels == ["Grace Hopper", "astronaut", "cat", "coffee"]
    assert [row[0] for row in examples.examples] == [str(p) for p in common.EXAMPLE_IMAGES.values()]


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


def test_the_page_gets_the_same_pictures_with_alt_text_giving_the_numbers(example: str) -> None:
    t, seed = 250, 3
    plain = forward_tab.forward_view(example, t, "linear", 1000, seed)
    page = forward_tab.forward_view.for_page(example, t, "linear", 1000, seed)
    assert page[-1] == plain[-1]  # the Markdown is the same
    for update, pixels in zip(page[:5], plain[:5], strict=True):
        assert update["__type__"] == "update" and np.array_equal(update["value"], pixels)
    mean, samples, noise, single, plot = (update["alt_text"] for update in page[:5])
    alpha_bar = linear_alpha_bar(t)
    beta = 1e-4 + (0.02 - 1e-4) * t / 999
    at = "t = 250 of 1000, linear schedule"
    assert at in mean and at in samples and at in single
    assert float(re.search(r"scaled by ([0-9.]+),", mean).group(1)) == pytest.approx(math.sqrt(alpha_bar), abs=1e-4)
    assert float(re.search(r"each ([0-9.]+) times", samples).group(1)) == pytest.approx(math.sqrt(alpha_bar), abs=1e-4)
    spread = float(re.search(r"standard deviation ([0-9.]+)\.", samples).group(1))
    assert spread == pytest.approx(math.sqrt(1 - alpha_bar), abs=1e-4)
    assert "3 noise draws" in samples and "seed 3" in samples and "seed 3" in noise
    assert "x_249 drawn from x_0" in single
    assert float(re.search(r"beta_t = ([0-9.]+)\.", single).group(1)) == pytest.approx(beta, abs=1e-4)
    marker = re.search(r"marker at t = 250 is at alpha-bar_t = ([0-9.]+), log-SNR = (-?[0-9.]+)\.", plot)
    assert float(marker.group(1)) == pytest.approx(alpha_bar, abs=1e-4)
    assert float(marker.group(2)) == pytest.approx(math.log(alpha_bar / (1 - alpha_bar)), abs=0.01)
    # At t = 0 the step starts from x_0 itself.
    assert "x_0 itself" in forward_tab.forward_view.for_page(example, 0, "linear", 1000, seed)[3]["alt_text"]


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


def wired(demo: gr.Blocks, name: str) -> list:
    """The events of ``demo`` that run the handler called ``name``."""
    return [fn for fn in demo.fns.values() if fn.name == name]


def test_the_tab_hands_its_controls_to_the_links_and_redraws_when_a_link_sets_them() -> None:
    with gr.Blocks() as demo:
        link = gr.State(None)
        controls = forward_tab.build_tab(demo, link=link)
    assert set(controls) == {"image", "t", "schedule", "T", "seed"}
    assert isinstance(controls["t"], gr.Slider) and (controls["t"].minimum, controls["t"].maximum) == (0, 999)
    assert controls["schedule"].choices == [("linear", "linear"), ("cosine", "cosine")]
    page_view = wired(demo, "forward_view_for_page")[0]  # [1] runs after T has moved t into range
    triggers = set(page_view.targets)
    assert (link._id, "change") in triggers and (controls["t"]._id, "input") in triggers  # keyboard too
    assert page_view.api_visibility == "private" and page_view.trigger_mode == "always_last"
    (api,) = wired(demo, "forward_view")
    assert api.api_name == "forward_view" and api.targets == []  # for API clients only: plain pictures
    assert api.concurrency_id == page_view.concurrency_id  # one limit for both

    with gr.Blocks() as unlinked:  # without a link State the tab is wired as before
        forward_tab.build_tab(unlinked)
    page_view = wired(unlinked, "forward_view_for_page")[0]
    assert len(page_view.targets) == len(triggers) - 1
    assert not any(isinstance(unlinked.blocks.get(block_id), gr.State) for block_id, _ in page_view.targets)
