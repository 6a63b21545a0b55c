"""Tabs 1 and 2: the handlers called directly, with good and bad input."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import gradio as gr
import numpy as np
import pytest
from PIL import Image

# The example photo is 512 × 600; shrunk to a longest side of 256 it is 218 × 256 (W × H).
EXAMPLE_HW = (256, 218)


def numbers_after(text: str, label: str) -> float:
    """The first number after ``label`` in ``text``."""
    match = re.search(re.escape(label) + r"[^0-9]*([0-9.]+(?:e[-+]?[0-9]+)?)", text)
    assert match, f"{label!r} not found in {text!r}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def example(app_module: ModuleType) -> str:
    return str(app_module.DEFAULT_IMAGE)


@pytest.fixture()
def not_an_image(tmp_path: Path) -> str:
    path = tmp_path / "holiday.png"
    path.write_text("definitely not pixels")
    return str(path)


def test_example_image_and_its_licence_note_ship(app_module: ModuleType) -> None:
    assert app_module.DEFAULT_IMAGE.is_file()
    assert Image.open(app_module.DEFAULT_IMAGE).size == (512, 600)
    readme = (app_module.DEFAULT_IMAGE.parent / "README.md").read_text()
    assert "grace_hopper.jpg" in readme and "public domain" in readme.lower()


def test_forward_view_outputs(app_module: ModuleType, example: str) -> None:
    mean, samples, noise, single, plot, info = app_module.forward_view(example, 250, "linear", 1000, 3)
    for picture in (mean, samples, noise, single, plot):
        assert isinstance(picture, np.ndarray) and picture.dtype == np.uint8 and picture.ndim == 3
    assert mean.shape == (*EXAMPLE_HW, 3) and noise.shape == (*EXAMPLE_HW, 3)
    assert samples.shape[1] > 3 * EXAMPLE_HW[1]  # three samples side by side
    assert "t = 250" in info and "seed 3" in info and "resized from 512×600 to 218×256" in info
    alpha_bar = numbers_after(info, r"$\bar\alpha_t$ =")
    assert 0.0 < alpha_bar < 1.0
    # The mean image is √ᾱ_t x₀: at t = 250 it is darker than x₀ but not black.
    x0 = app_module.forward_view(example, 0, "linear", 1000, 3)[0].astype(float)
    ratio = (mean.astype(float) - 127.5).std() / (x0 - 127.5).std()
    assert ratio == pytest.approx(alpha_bar**0.5, abs=0.03)


def test_forward_view_is_reproducible_and_seed_matters(app_module: ModuleType, example: str) -> None:
    a = app_module.forward_view(example, 140, "cosine", 150, 11)
    b = app_module.forward_view({"path": example}, 140.0, "cosine", "150", 11.0)  # Gradio's payload and JSON types
    assert all(np.array_equal(x, y) for x, y in zip(a[:5], b[:5], strict=True))
    other = app_module.forward_view(example, 140, "cosine", 150, 12)
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
        (("/no/such/file.png", 10, "linear", 1000, 0), "could not be found"),
    ],
)
def test_forward_view_bad_input_raises_readable_errors(
    app_module: ModuleType, example: str, args: tuple, message: str
) -> None:
    args = tuple(example if a == "EXAMPLE" else a for a in args)
    with pytest.raises(gr.Error) as info:
        app_module.forward_view(*args)
    assert message in info.value.message
    assert "Traceback" not in info.value.message


@pytest.mark.parametrize("handler", ["forward_view", "oracle_view", "error_curve"])
def test_every_handler_refuses_a_non_image(app_module: ModuleType, not_an_image: str, handler: str) -> None:
    with pytest.raises(gr.Error, match="not an image we can read"):
        getattr(app_module, handler)(not_an_image, 10, "linear", 1000, 0)
    with pytest.raises(gr.Error, match="not an image we can read"):
        app_module.oracle_chain(not_an_image, "linear", 150, 0)


def test_unexpected_failures_are_reported_without_details(
    app_module: ModuleType, example: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("internal detail /srv/secret/path")

    monkeypatch.setattr(app_module.oracle, "explore_forward", broken)
    with pytest.raises(gr.Error) as info:
        app_module.forward_view(example, 10, "linear", 1000, 0)
    assert "went wrong" in info.value.message and "secret" not in info.value.message


def test_oracle_view_panels_and_errors(app_module: ModuleType, example: str) -> None:
    panels, table = app_module.oracle_view(example, 700, "linear", 1000, 1)
    assert panels.dtype == np.uint8 and panels.shape[1] > 4 * EXAMPLE_HW[1]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    x0_hat_l1 = float(rows[r"oracle $\hat x_0$"].rstrip(" |").split("|")[-1])
    xt_l1 = float(rows["$x_t$"].rstrip(" |").split("|")[-1])
    assert x0_hat_l1 < 1e-5 < 0.1 < xt_l1
    assert "compared with" in table and r"$\mu_{t-1}$" in table


def test_error_curve_moves_only_the_marker(app_module: ModuleType, example: str) -> None:
    early = app_module.error_curve(example, 10, "linear", 150, 0)
    late = app_module.error_curve(example, 140, "linear", 150, 0)
    assert early.shape == late.shape and early.dtype == np.uint8
    differs = (early != late).any(axis=2)
    assert 0 < differs.mean() < 0.05  # the same plot, a different marker


def test_oracle_chain_returns_to_x0(app_module: ModuleType, example: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "CHAIN_SIDE", 48)  # the same code on a smaller copy, to keep the test quick
    strip, summary = app_module.oracle_chain(example, "cosine", 150, 2)
    assert strip.dtype == np.uint8 and strip.ndim == 3
    assert numbers_after(summary, "max |·| = **") < 1e-5
    assert "150 reverse steps" in summary and "41×48 copy" in summary


def test_t_slider_follows_T(app_module: ModuleType) -> None:
    update = app_module._retarget_step(150, 800)
    assert update["maximum"] == 149 and update["value"] == 149
    update = app_module._retarget_step("1000", 40)
    assert update["maximum"] == 999 and update["value"] == 40
    assert app_module._next_seed(41) == 42 and app_module._next_seed(None) == 0


def test_the_four_tabs_in_order(app_module: ModuleType) -> None:
    tabs = [block for block in app_module.demo.blocks.values() if isinstance(block, gr.Tab)]
    assert [tab.label for tab in tabs] == ["Forward noise", "Oracle reconstruction", "Train or load", "Sample"]


def test_command_line_honours_gradio_environment(app_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    args = app_module._parse_args([])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8080")
    args = app_module._parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    args = app_module._parse_args(["--host", "10.0.0.1", "--port", "9000", "--share"])
    assert (args.host, args.port, args.share) == ("10.0.0.1", 9000, True)


def test_launch_and_queue_settings(app_module: ModuleType) -> None:
    options = app_module.launch_options()
    assert options["max_file_size"] == "20mb" and options["show_error"] is True
    assert app_module.demo.analytics_enabled is False
    queue = app_module.demo._queue  # no public accessor; checked so a refactor cannot drop the limits silently
    assert queue.max_size == 64 and queue.default_concurrency_limit == 2
