"""Tab 2, oracle reconstruction and the model next to the oracle: handlers called directly."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from ui_fixtures import EXAMPLE_HW, error_text, last, numbers_after

from ddpm_ui import forward_tab, oracle_tab

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


@pytest.mark.usefixtures("tiny_live")
def test_model_vs_oracle_and_loss_curve() -> None:
    strip, note = oracle_tab.model_vs_oracle(3, 0, 25, 0)
    assert strip.ndim == 3 and strip.shape[1] > 8 * 28 * 4
    assert "ε error" in note
    with pytest.raises(gr.Error) as excinfo:
        oracle_tab.model_vs_oracle(3, 0, 50, 0)  # the tiny model has T = 50
    assert "between 0 and 49 for this model" in error_text(excinfo)
    assert last(oracle_tab.model_loss_curve()).ndim == 3


@pytest.mark.usefixtures("tiny_live")
def test_the_model_step_slider_spans_the_live_models_schedule() -> None:
    update = oracle_tab._model_step_slider(200)  # the shipped model has T = 250; the tiny one T = 50
    assert update["maximum"] == 49 and update["value"] == 49 and "T = 50" in update["label"]
    assert oracle_tab._model_step_slider(7)["value"] == 7
