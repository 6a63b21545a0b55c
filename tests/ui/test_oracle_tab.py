"""Tab 2, oracle reconstruction and the model next to the oracle: handlers called directly, their alt text and
captions, and the wiring (keyboard-friendly sliders, the controls handed to the deep links)."""

from __future__ import annotations

import re
from types import ModuleType

import gradio as gr
import numpy as np
import pytest
from ui_fixtures import EXAMPLE_HW, error_text, last, numbers_after, page

from ddpm_core.paths import assets_dir
from ddpm_ui import forward_tab, oracle_tab, state

HANDLERS = {
    "forward_view": forward_tab.forward_view,
    "oracle_view": oracle_tab.oracle_view,
    "error_curve": oracle_tab.error_curve,
}


@pytest.mark.parametrize("handler", ["forward_view", "oracle_view", "error_curve"])
def test_every_handler_refuses_a_non_image(not_an_image: str, handler: str) -> None:
    with pytest.raises(gr.Error, match="not an image we can read"):
        HANDLERS[handler](not_an_image, 10, "linear", 1000, 0)
    with pytest.raises(gr.Error, match="not an image we can read"):
        last(oracle_tab.oracle_chain(not_an_image, "linear", 150, 0))


def test_oracle_view_panels_and_errors(example: str) -> None:
    panels, table = oracle_tab.oracle_view(example, 700, "linear", 1000, 1)
    assert panels.dtype == np.uint8 and panels.shape[1] > 4 * EXAMPLE_HW[1]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    x0_hat_l1 = float(rows[r"oracle $\hat x_0$"].rstrip(" |").split("|")[-1])
    xt_l1 = float(rows["$x_t$"].rstrip(" |").split("|")[-1])
    assert x0_hat_l1 < 1e-5 < 0.1 < xt_l1
    assert "compared with" in table and r"$\mu_{t-1}$" in table


def test_the_page_gets_the_oracle_panels_with_alt_text_giving_the_numbers(example: str) -> None:
    panels, table = oracle_tab.oracle_view(example, 700, "linear", 1000, 1)
    update, same_table = oracle_tab.oracle_view.for_page(example, 700, "linear", 1000, 1)
    assert same_table == table and np.array_equal(update["value"], panels)
    alt = update["alt_text"]
    assert alt.startswith("Four panels at t = 700 of 1000, linear schedule, seed 1:")
    rows = {line.split("|")[1].strip(): line.rstrip(" |").split("|")[-1].strip() for line in table.splitlines()
            if line.startswith("| ")}  # fmt: skip
    assert f"x_t (L1 distance to x_0: {rows['$x_t$']})" in alt
    oracle_l1 = float(re.search(r"the photo back again \(L1 ([0-9.e+-]+)\)", alt).group(1))
    assert oracle_l1 < 1e-5  # knowing ε, x̂₀ = x₀ up to rounding


def test_the_error_curve_alt_text_names_the_marker(example: str) -> None:
    plot = oracle_tab.error_curve(example, 140, "linear", 150, 0)
    update = oracle_tab.error_curve.for_page(example, 140, "linear", 150, 0)
    assert np.array_equal(update["value"], plot)
    alt = update["alt_text"]
    assert "linear schedule, T = 150, seed 0" in alt and "At the marker, t = 140: x_t has L1" in alt
    l1 = float(re.search(r"x_t has L1 ([0-9.e+-]+) and PSNR (-?[0-9.]+) dB", alt).group(1))
    psnr = float(re.search(r"PSNR (-?[0-9.]+) dB\.", alt).group(1))
    early = oracle_tab.error_curve.for_page(example, 10, "linear", 150, 0)["alt_text"]
    assert float(re.search(r"x_t has L1 ([0-9.e+-]+)", early).group(1)) < l1  # more noise, further from x₀
    assert float(re.search(r"PSNR (-?[0-9.]+) dB\.", early).group(1)) > psnr


def test_error_curve_moves_only_the_marker(example: str) -> None:
    early = oracle_tab.error_curve(example, 10, "linear", 150, 0)
    late = oracle_tab.error_curve(example, 140, "linear", 150, 0)
    assert early.shape == late.shape and early.dtype == np.uint8
    differs = (early != late).any(axis=2)
    assert 0 < differs.mean() < 0.05  # the same plot, a different marker


def test_oracle_chain_returns_to_x0(example: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oracle_tab, "CHAIN_SIDE", 48)  # the same code on a smaller copy, to keep the test quick
    strip, summary = last(oracle_tab.oracle_chain(example, "cosine", 150, 2))
    assert strip.dtype == np.uint8 and strip.ndim == 3
    assert numbers_after(summary, "max |·| = **") < 1e-5
    assert "150 reverse steps" in summary and "41×48 copy" in summary
    # The strip's labels as text: it starts at x_{T−1} and ends with the chain's x₀.
    shown = re.search(r"left to right: (.*) and the \$x_0\$ the chain ends with", summary).group(1)
    steps = [int(s) for s in re.findall(r"\$x_\{(\d+)\}\$", shown)]
    assert steps[0] == 149 and steps == sorted(steps, reverse=True) and len(steps) >= 4


@pytest.mark.usefixtures("tiny_live")
def test_model_vs_oracle_and_loss_curve() -> None:
    strip, note = oracle_tab.model_vs_oracle(3, 0, 25, 0)
    assert strip.ndim == 3 and strip.shape[1] > 8 * 28 * 4
    assert "ε error" in note
    with pytest.raises(gr.Error) as excinfo:
        oracle_tab.model_vs_oracle(3, 0, 50, 0)  # the tiny model has T = 50
    assert "between 0 and 49 for this model" in error_text(excinfo)
    plot, caption = last(oracle_tab.model_loss_curve())
    assert plot.ndim == 3 and "held-out digits" in caption and "tiny-digits" in caption


@pytest.mark.usefixtures("tiny_live")
def test_model_vs_oracle_alt_text_matches_the_note() -> None:
    strip, note = oracle_tab.model_vs_oracle(3, 0, 25, 0)
    update, same_note = oracle_tab.model_vs_oracle.for_page(3, 0, 25, 0)
    assert same_note == note and np.array_equal(update["value"], strip)
    alt = update["alt_text"]
    assert "held-out digit 3 (example 0) at t = 25 of the model's 50 steps, seed 0" in alt
    mse = re.search(r"mean squared, per pixel\): \*\*([0-9.]+)\*\*", note).group(1)
    l1 = re.search(r"against x₀: \*\*([0-9.]+)\*\*", note).group(1)
    assert f"mean squared error {mse}" in alt and f"(L1 {l1})" in alt


@pytest.mark.usefixtures("tiny_live")
def test_the_loss_caption_lists_every_value_plotted(monkeypatch: pytest.MonkeyPatch) -> None:
    oracle_tab._LOSS_CURVES.clear()
    ts, losses = np.array([0, 10, 49]), np.array([1.5, 0.25, 0.0123])
    monkeypatch.setattr(oracle_tab, "loss_by_t", lambda *args, **kwargs: (ts, losses, None))
    _, caption = last(oracle_tab.model_loss_curve())
    assert "t = 0: 1.5000 · t = 10: 0.2500 · t = 49: 0.0123." in caption
    assert "($T$ = 50)" in caption and "log scale" in caption
    oracle_tab._LOSS_CURVES.clear()


@pytest.mark.usefixtures("tiny_live")
def test_the_model_step_slider_spans_the_live_models_schedule() -> None:
    update, _, _ = oracle_tab._model_controls(200)  # the shipped model has T = 250; the tiny one T = 50
    assert update["maximum"] == 49 and update["value"] == 49 and "T = 50" in update["label"]
    assert oracle_tab._model_controls(7)[0]["value"] == 7


# ----------------------------------------------------------------------------------------------
# The model section follows the page's dataset
# ----------------------------------------------------------------------------------------------

FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]  # fmt: skip


def held_out_image(file: str, label: int, k: int) -> np.ndarray:
    """Held-out example k of class ``label``, read straight from the shipped file: the last 100 of each class."""
    with np.load(assets_dir() / file) as f:
        images, labels = f["images"], f["labels"]
    return images[np.flatnonzero(labels == label)[-100:][k]]


def shows_tile(strip: np.ndarray, image: np.ndarray, scale: int = 4) -> bool:
    """Whether the RGB strip holds ``image`` (uint8 [H, W]) enlarged ``scale`` times, pixel for pixel, in grey."""
    tile = np.kron(image, np.ones((scale, scale), dtype=np.uint8))
    h, w = tile.shape
    grey = strip[..., 0]
    if not (np.array_equal(grey, strip[..., 1]) and np.array_equal(grey, strip[..., 2])):
        return False
    middle = h // 2  # a row through the picture, more telling than its black edge
    rows = np.lib.stride_tricks.sliding_window_view(grey, w, axis=1)  # [H, W - w + 1, w]
    for r, c in zip(*np.nonzero((rows == tile[middle]).all(axis=2)), strict=True):
        top = r - middle
        if 0 <= top <= grey.shape[0] - h and np.array_equal(grey[top : top + h, c : c + w], tile):
            return True
    return False


@pytest.fixture()
def fashion_page(tiny_live: None) -> object:
    """A page that has chosen the fashion items (tiny stand-in model, T = 50)."""
    request = page("fashion-page")
    assert state.choose_dataset(request, "fashion").name == "tiny-fashion"
    return request


def test_model_vs_oracle_on_a_fashion_page_shows_a_held_out_fashion_item(fashion_page: object) -> None:
    strip, note = oracle_tab.model_vs_oracle(7, 3, 25, 0, request=fashion_page)
    sneaker = held_out_image("fashion_5k.npz", 7, 3)
    assert shows_tile(strip, sneaker)
    assert not shows_tile(strip, held_out_image("mnist_5k.npz", 7, 3))
    assert not shows_tile(strip, held_out_image("fashion_5k.npz", 7, 4))  # the example asked for, not another
    assert "held-out Sneaker (example 3), never seen in training, at t = 25" in note
    update, boot_note = oracle_tab.model_vs_oracle.for_page(9, 0, 25, 0, request=fashion_page)
    assert "held-out Ankle boot (example 0)" in boot_note
    assert "Eight tiles for held-out Ankle boot (example 0) at t = 25 of the model's 50 steps" in update["alt_text"]
    assert shows_tile(update["value"], held_out_image("fashion_5k.npz", 9, 0))
    with pytest.raises(gr.Error) as excinfo:
        oracle_tab.model_vs_oracle(10, 0, 25, 0, request=fashion_page)
    assert "The class must be a whole number between 0 and 9" in error_text(excinfo)


def test_a_digits_page_is_unaffected_by_another_pages_fashion(fashion_page: object) -> None:
    digits_page = page("digits-page")
    strip, note = oracle_tab.model_vs_oracle(7, 3, 25, 0, request=digits_page)
    assert shows_tile(strip, held_out_image("mnist_5k.npz", 7, 3))
    assert not shows_tile(strip, held_out_image("fashion_5k.npz", 7, 3))
    assert "held-out digit 7 (example 3), never seen in training" in note
    with pytest.raises(gr.Error) as excinfo:
        oracle_tab.model_vs_oracle(10, 0, 25, 0, request=digits_page)
    assert "The digit must be a whole number between 0 and 9" in error_text(excinfo)


def test_the_loss_curve_runs_on_the_held_out_images_of_the_pages_dataset(
    fashion_page: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    oracle_tab._LOSS_CURVES.clear()
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def measured(model: object, schedule: object, x0: object, labels: object, **kwargs: object) -> tuple:
        seen.append((np.asarray(x0), np.asarray(labels)))
        return np.array([0, 49]), np.array([0.5, 0.25]), None

    monkeypatch.setattr(oracle_tab, "loss_by_t", measured)
    _, caption = last(oracle_tab.model_loss_curve(request=fashion_page))
    assert "300 held-out fashion items" in caption and "tiny-fashion" in caption
    _, digits_caption = last(oracle_tab.model_loss_curve(request=page("digits-page")))
    assert "300 held-out digits" in digits_caption and "tiny-digits" in digits_caption
    oracle_tab._LOSS_CURVES.clear()
    for (x0, labels), file in zip(seen, ["fashion_5k.npz", "mnist_5k.npz"], strict=True):
        expected = np.stack([held_out_image(file, c, k) for c in range(10) for k in range(30)])
        assert np.array_equal(labels, np.repeat(np.arange(10), 30))
        assert np.array_equal(np.rint((x0[:, 0] + 1) * 127.5).astype(np.uint8), expected)


def test_the_class_slider_and_loss_button_name_the_pages_dataset(fashion_page: object) -> None:
    step, classes, button = oracle_tab._model_controls(200, request=fashion_page)
    assert step["maximum"] == 49 and classes["label"] == "class"
    assert classes["info"] == " · ".join(f"{i} {name}" for i, name in enumerate(FASHION_NAMES))
    assert button["value"] == "Plot the model's loss against t over 300 held-out fashion items"
    _, classes, button = oracle_tab._model_controls(200, request=page("digits-page"))
    assert classes["label"] == "digit" and classes["info"] == "0 to 9"
    assert button["value"] == "Plot the model's loss against t over 300 held-out digits"


CONTROLS = (gr.Slider, gr.Number, gr.Radio, gr.Checkbox, gr.CheckboxGroup, gr.Dropdown, gr.Textbox)


def block(demo: gr.Blocks, elem_id: str) -> gr.components.Component:
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_the_model_t_slider_follows_the_pages_model_card(app_module: ModuleType) -> None:
    """Every event that changes the page's model writes tab 3's card; the card's change resets the t slider."""
    demo = app_module.demo
    slider, card = block(demo, "mvo-t"), block(demo, "model-info")
    triggers = [target for f in demo.fns.values() if slider in f.outputs for target in f.targets]
    assert triggers == [(card._id, "change")]
    model_changers = {"load_model", "load_from_hub", "use_shipped_model", "use_trained_model", "model_info"}
    writes_card = {f.api_name for f in demo.fns.values() if card in f.outputs}
    assert model_changers <= writes_card


def test_no_tab_select_updates_a_control(app_module: ModuleType) -> None:
    """Gradio fires a tab's select again when that select updates a control inside the tab, without end (seen in
    Chromium: the model's t slider, reset on select, drew the oracle views several times a second)."""
    demo = app_module.demo
    tabs = {b._id for b in demo.blocks.values() if isinstance(b, gr.Tab)}
    on_select = [f for f in demo.fns.values() if any(bid in tabs and ev == "select" for bid, ev in f.targets)]
    assert len(on_select) >= 4  # the oracle views, the model strip and the links' tab tracking are found
    for f in on_select:
        controls = [o for o in f.outputs if isinstance(o, CONTROLS)]
        assert not controls, f"{f.fn} updates {controls} on a tab's select"


def test_the_model_sections_controls_follow_the_model_card_alone() -> None:
    """The class slider, the t slider and the loss button change only when the card does (never on a select)."""
    with gr.Blocks() as demo:
        card = gr.Markdown("the page's model", elem_id="model-info")
        with gr.Tabs():
            with gr.Tab("forward"):
                forward = forward_tab.build_tab(demo)
            with gr.Tab("oracle") as tab:
                oracle_tab.build_tab(tab, forward, model_card=card)
    button = next(b for b in demo.blocks.values() if isinstance(b, gr.Button) and "loss against t" in str(b.value))
    assert button.value == "Plot the model's loss against t over 300 held-out digits"  # the page opens on digits
    for control in (block(demo, "mvo-digit"), block(demo, "mvo-t"), button):
        triggers = [target for f in demo.fns.values() if control in f.outputs for target in f.targets]
        assert triggers == [(card._id, "change")], control


def test_the_tab_hands_its_own_controls_to_the_links_and_its_sliders_answer_the_keyboard() -> None:
    with gr.Blocks() as demo:
        link = gr.State(None)
        with gr.Tabs():
            with gr.Tab("forward"):
                forward = forward_tab.build_tab(demo, link=link)
            with gr.Tab("oracle") as tab:
                controls = oracle_tab.build_tab(tab, forward, link=link)
    assert set(controls) == {"schedule", "T", "t", "seed"}
    assert all(controls[name] is not forward[name] for name in controls)  # its own copies
    events = {fn.name: fn for fn in reversed(demo.fns.values())}  # the first event of each name wins
    for name in ("oracle_view_for_page", "error_curve_for_page"):
        assert (link._id, "change") in events[name].targets and (controls["t"]._id, "input") in events[name].targets
    for name in ("oracle_view", "error_curve", "model_vs_oracle"):
        assert events[name].api_name == name and events[name].targets == []  # API clients: plain pictures
    by_id = {block._id: block for block in demo.blocks.values()}
    sliders = [by_id[block_id] for block_id, event in events["model_vs_oracle_for_page"].targets if event == "input"]
    assert sorted(s.elem_id for s in sliders) == ["mvo-digit", "mvo-index", "mvo-t"]  # arrow keys fire no release
    assert events["model_vs_oracle_for_page"].trigger_mode == "always_last"  # a drag: one request at a time
