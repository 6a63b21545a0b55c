"""Tab 2, "Oracle reconstruction": knowing the noise, every reverse quantity is exact; then the trained model.

The top half works on the photo of tab 1 (and follows its inputs): the oracle x̂₀, the posterior mean
μ̃_{t−1}, their errors at every t and a whole reverse chain. The bottom half puts this page's model next to
the oracle on held-out images of that model's dataset (digits or fashion items): true against predicted ε, and
the model's loss against t.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import gradio as gr
import numpy as np
import torch

from ddpm_core import oracle, pictures
from ddpm_core.background import Report
from ddpm_core.checkpoints import LoadedModel
from ddpm_core.data import DEFAULT_DATASET, HELD_OUT_PER_CLASS, NUM_CLASSES, dataset_info, to_model_range
from ddpm_core.image_io import to_uint8
from ddpm_core.model_oracle import compare_with_oracle, loss_by_t
from ddpm_ui import state
from ddpm_ui.common import (
    DEFAULT_T,
    LATEX,
    NOISE_DISPLAY_SCALE,
    Picture,
    cached_schedule,
    fmt,
    friendly_errors,
    image_controls,
    image_notes,
    load_image,
    load_image_version,
    next_seed,
    output_image,
    parse_image_view,
    parse_int,
    parse_schedule,
    parse_seed,
    picture_events,
    picture_view,
    retarget_step,
    seed_box,
    step_slider_update,
    sub,
)
from ddpm_ui.heavy import watch

CURVE_SIDE = 64  # the error-vs-t curves are computed on a copy this small
CHAIN_SIDE = 128  # the oracle reverse chain runs on a copy this small
LOSS_CURVE_PER_CLASS = 30  # held-out images per class for the loss-against-t plot (300 in all)
LOSS_CURVE_STEPS = 20  # evenly spaced t at which it is measured
MODEL_DEFAULT_STEP = 100

INTRO = r"""
### If we knew the noise, denoising would be exact

Knowing $x_0$ we also know the $\epsilon$ inside $x_t$, and eq. 4 solved for $x_0$ gives it back:
$\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$. One reverse step then moves to the
mean of $q(x_{t-1} \mid x_t, x_0)$:

$$\tilde\mu_{t-1} = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,\hat x_0
 + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t.$$

A trained network has to *guess* $\epsilon$ from $x_t$ alone; these are the numbers it would reach if it
guessed perfectly. Compare $\tilde\mu_{t-1}$ with $\mu_{t-1} = \sqrt{\bar\alpha_{t-1}}\,x_0$, the mean of
$q(x_{t-1} \mid x_0)$.
"""

MODEL_INTRO = r"""
#### The trained model next to the oracle
The oracle above *knows* $\epsilon$. The network only sees $x_t$, $t$ and the class, and has to guess it.
Pick a class, a held-out example of it from the model's dataset (never seen in training) and a step of the
model's own schedule to compare the two.
"""


# ----------------------------------------------------------------------------------------------
# The oracle on a photo
# ----------------------------------------------------------------------------------------------


@picture_view
def oracle_view(
    image: Any, t: Any, schedule_name: str = "linear", T: Any = DEFAULT_T, seed: Any = 0
) -> tuple[Picture, str]:
    """(labelled panels x_t, x̂₀, μ̃_{t−1}, μ_{t−1} with their ℓ1 errors and alt text, Markdown table of the same)."""
    inputs = parse_image_view(image, t, schedule_name, T, seed)
    loaded, step, seed = inputs.image, inputs.step, inputs.seed
    rec = oracle.reconstruct_oracle(loaded.tensor, inputs.schedule, step, seed)
    l1_prior_vs_x0 = oracle.l1(rec.prior_mean, loaded.tensor)
    panels = pictures.labelled_strip(
        [to_uint8(rec.x_t), to_uint8(rec.x0_hat), to_uint8(rec.posterior_mean), to_uint8(rec.prior_mean)],
        [
            f"xₜ (t = {step})\nℓ1 to x₀ = {fmt(rec.l1_xt_vs_x0)}",
            f"oracle x̂₀\nℓ1 to x₀ = {fmt(rec.l1_x0_hat_vs_x0)}",
            f"μ̃ₜ₋₁ from x̂₀ and xₜ\nℓ1 to μₜ₋₁ = {fmt(rec.l1_posterior_vs_prior_mean)}",
            f"μₜ₋₁ = √ᾱₜ₋₁ x₀\nℓ1 to x₀ = {fmt(l1_prior_vs_x0)}",
        ],
    )
    table = (
        f"**t = {step}**, seed {seed}. ℓ1 is the mean absolute difference per pixel (images in [−1, 1]).\n\n"
        "| panel | formula | compared with | ℓ1 |\n|---|---|---|---|\n"
        f"| $x_t$ | $\\sqrt{{\\bar\\alpha_t}}\\,x_0 + \\sqrt{{1-\\bar\\alpha_t}}\\,\\epsilon$ | $x_0$ | "
        f"{fmt(rec.l1_xt_vs_x0)} |\n"
        f"| oracle $\\hat x_0$ | $(x_t - \\sqrt{{1-\\bar\\alpha_t}}\\,\\epsilon)/\\sqrt{{\\bar\\alpha_t}}$ | $x_0$ | "
        f"{fmt(rec.l1_x0_hat_vs_x0)} |\n"
        f"| $\\tilde\\mu_{{t-1}}$ | $\\tilde\\mu_t(x_t, \\hat x_0)$ (eq. 7) | $\\mu_{{t-1}}$ | "
        f"{fmt(rec.l1_posterior_vs_prior_mean)} |\n"
        f"| $\\tilde\\mu_{{t-1}}$ | same | $x_0$ | {fmt(rec.l1_posterior_vs_x0)} |\n"
        f"| $\\mu_{{t-1}}$ | $\\sqrt{{\\bar\\alpha_{{t-1}}}}\\,x_0$ | $x_0$ | {fmt(l1_prior_vs_x0)} |\n\n"
        f"Posterior std $\\sqrt{{\\tilde\\beta_t}}$ = {fmt(rec.posterior_std)}. "
        "$\\tilde\\mu_{t-1}$ differs from $\\mu_{t-1}$ because it also knows $x_t$, i.e. which way the noise went."
        f"{image_notes(loaded)}"
    )
    alt = (
        f"Four panels at t = {step} of {inputs.schedule.num_steps}, {inputs.schedule.name} schedule, seed {seed}: "
        f"x_t (L1 distance to x_0: {fmt(rec.l1_xt_vs_x0)}); the oracle's x-hat_0, the photo back again "
        f"(L1 {fmt(rec.l1_x0_hat_vs_x0)}); the posterior mean mu-tilde_t-1 (L1 to mu_t-1: "
        f"{fmt(rec.l1_posterior_vs_prior_mean)}); and mu_t-1 = sqrt(alpha-bar_t-1) x_0 (L1 to x_0: "
        f"{fmt(l1_prior_vs_x0)})."
    )
    return Picture(panels, alt), table


@functools.lru_cache(maxsize=8)
def _error_canvas(key: tuple[str, int, int], name: str, T: int, seed: int) -> tuple[pictures.CurveCanvas, Any]:
    """Error-vs-t curves for one image version, schedule and seed, rendered once (marker added per request)."""
    loaded = load_image_version(*key)
    curves = oracle.error_curves(loaded.tensor, cached_schedule(name, T), seed, max_side=CURVE_SIDE)
    floor = 1e-16  # float64 rounding; a log axis cannot show 0
    h, w = curves.image_size
    three = {"xₜ": curves.l1_xt, "oracle x̂₀": curves.l1_x0_hat, "μ̃ₜ₋₁": curves.l1_posterior_mean}
    psnr = {"xₜ": curves.psnr_xt, "oracle x̂₀": curves.psnr_x0_hat, "μ̃ₜ₋₁": curves.psnr_posterior_mean}
    canvas = pictures.render_curves(
        curves.steps.numpy(),
        [
            pictures.CurvePanel(
                "ℓ1 to x₀ (log scale)",
                "ℓ1",
                {k: v.clamp(min=floor).numpy() for k, v in three.items()},
                log_y=True,
                note="values below 1e-16 (float64 rounding) drawn at 1e-16",
            ),
            pictures.CurvePanel(
                "PSNR against x₀",
                "dB",
                {k: curves.capped(v).numpy() for k, v in psnr.items()},
                ylim=(0.0, curves.psnr_cap_db + 5.0),
                note=f"capped at {curves.psnr_cap_db:.0f} dB: the oracle x̂₀ is exact up to rounding (PSNR ≈ ∞)",
            ),
        ],
        title=f"Errors at every t ({name}, T = {T}, {w}×{h} copy)",
        size=(6.4, 4.6),
    )
    return canvas, curves


@picture_view
def error_curve(image: Any, t: Any, schedule_name: str = "linear", T: Any = DEFAULT_T, seed: Any = 0) -> Picture:
    """The ℓ1 / PSNR-vs-t plot of x_t, oracle x̂₀ and μ̃_{t−1} against x₀, marker at t; the alt text gives its values."""
    inputs = parse_image_view(image, t, schedule_name, T, seed)
    canvas, curves = _error_canvas(inputs.key, inputs.schedule.name, inputs.schedule.num_steps, inputs.seed)
    step = inputs.step
    l1, psnr = float(curves.l1_xt[step]), min(float(curves.psnr_xt[step]), curves.psnr_cap_db)
    plot = canvas.with_marker(step, [[l1], [psnr]], label=f"t = {step}")
    alt = (
        f"Two plots against t for the {inputs.schedule.name} schedule, T = {inputs.schedule.num_steps}, seed "
        f"{inputs.seed}: the L1 distance to x_0 (log scale) and the PSNR against x_0 of x_t, the oracle's x-hat_0 "
        f"and mu-tilde_t-1. x_t drifts away from x_0 as t grows while the oracle's x-hat_0 stays exact (PSNR "
        f"drawn at the {curves.psnr_cap_db:.0f} dB cap). At the marker, t = {step}: x_t has L1 {fmt(l1)} and "
        f"PSNR {psnr:.1f} dB."
    )
    return Picture(plot, alt)


@friendly_errors
def oracle_chain(
    image: Any, schedule_name: str = "linear", T: Any = DEFAULT_T, seed: Any = 0, request: gr.Request | None = None,
    progress: gr.Progress = gr.Progress(),
) -> Iterator[tuple[Any, Any]]:  # fmt: skip
    """The reverse chain x_{T−1} → x₀ driven by the oracle ε; (strip every T/5 steps, Markdown summary)."""
    schedule = parse_schedule(schedule_name, T)
    seed = parse_seed(seed)
    loaded, _ = load_image(image)
    chain = yield from watch(
        request,
        lambda report: oracle.oracle_reverse_chain(
            loaded.tensor, schedule, seed, num_snapshots=5, max_side=CHAIN_SIDE, callback=report
        ),
        2, progress, "reverse steps",
    )  # fmt: skip
    labels = [f"x{sub(s)}" if s >= 0 else "x₀ from the chain" for s in chain.snapshot_steps]
    strip = pictures.labelled_strip(list(to_uint8(chain.snapshots)), labels)
    h, w = chain.final.shape[-2:]
    summary = (
        f"Ran all {schedule.num_steps} reverse steps (Algorithm 2, $\\sigma_t^2 = \\beta_t$) in float64 on a "
        f"{w}×{h} copy, seed {seed}, with $\\epsilon$ = `predict_eps(x_t, t, x0)` at every step.\n\n"
        f"Final error against $x_0$: max |·| = **{chain.final_max_error:.2e}**, ℓ1 = {chain.final_l1:.2e}.\n\n"
        f"The strip shows, left to right: {', '.join(f'$x_{{{s}}}$' for s in chain.snapshot_steps if s >= 0)} "
        "and the $x_0$ the chain ends with."
    )
    yield strip, summary


# ----------------------------------------------------------------------------------------------
# This page's model next to the oracle
# ----------------------------------------------------------------------------------------------


@picture_view
def model_vs_oracle(
    digit: Any, index: Any, t: Any, seed: Any, request: gr.Request | None = None
) -> tuple[Picture, str]:
    """True vs predicted ε, oracle vs model x̂₀ and the error maps at step t; a note naming the image, with the errors.

    The image is held-out example ``index`` of class ``digit`` (0-9) of the page's model's dataset.
    """
    loaded = state.model_for(request)
    info = dataset_info(loaded.dataset)
    label = parse_int(digit, f"The {info.class_word}", 0, NUM_CLASSES - 1)
    held = state.data(loaded.dataset).held_out
    of_class = np.flatnonzero(held.labels == label)
    k = parse_int(index, "The held-out example", 0, len(of_class) - 1)
    T = loaded.schedule.num_steps
    step = parse_int(t, "The step t", 0, T - 1, note=" for this model")
    x0 = to_model_range(held.images[of_class[k] : of_class[k] + 1])
    seed = parse_seed(seed)
    view = compare_with_oracle(loaded.model, loaded.schedule, x0, label, step, seed=seed)

    def grey(x: torch.Tensor, scale: float = 1.0) -> np.ndarray:
        return to_uint8(x / scale)[0]

    eps_err = (view.eps_model - view.eps_true).abs()
    x0_err = (view.x0_model.clamp(-1, 1) - view.x0).abs()
    shown = NOISE_DISPLAY_SCALE
    tiles = [
        grey(view.x0), grey(view.x_t), grey(view.eps_true, shown), grey(view.eps_model, shown),
        grey(eps_err * 2 - 1, shown / 2), grey(view.x0), grey(view.x0_model), grey(x0_err - 1),
    ]  # fmt: skip
    captions = [
        "x₀", f"x_t (t={step})", "true ε", "model ε_θ", "|ε − ε_θ|", "oracle x̂₀ = x₀", "model x̂₀", "|x̂₀ − x₀|",
    ]  # fmt: skip
    strip = pictures.labelled_strip(tiles, captions, scale=4, font_size=13)
    shown_image = f"held-out {info.one_of(label)} (example {k})"
    note = (
        f"A {shown_image}, never seen in training, at t = {step}. "
        f"ε error (mean squared, per pixel): **{view.eps_mse:.4f}**; ℓ1 of the model's x̂₀ against x₀: "
        f"**{view.x0_l1:.4f}** (the oracle's is 0). Error maps: black = 0, white = 1.5 for ε and 1 for x̂₀."
    )
    alt = (
        f"Eight tiles for {shown_image} at t = {step} of the model's {T} steps, seed "
        f"{seed}: x_0; x_t; the true noise epsilon; the model's guess epsilon-theta; the error map of the guess "
        f"(mean squared error {view.eps_mse:.4f}); the oracle's x-hat_0, equal to x_0; the model's x-hat_0; and "
        f"its error map (L1 {view.x0_l1:.4f})."
    )
    return Picture(strip, alt), note


_LOSS_CURVES: OrderedDict[tuple[str, str], tuple[np.ndarray, str]] = OrderedDict()  # a few recent models' curves
_LOSS_CURVES_KEPT = 4
_LOSS_LOCK = threading.Lock()


def _loss_curve(loaded: LoadedModel, report: Report) -> tuple[np.ndarray, str]:
    """The loss-against-t plot on held-out images of the model's dataset, and its caption with every value shown."""
    held = state.data(loaded.dataset).held_out
    pick = np.concatenate([np.flatnonzero(held.labels == c)[:LOSS_CURVE_PER_CLASS] for c in range(NUM_CLASSES)])
    ts, losses, _ = loss_by_t(
        loaded.model,
        loaded.schedule,
        to_model_range(held.images[pick]),
        torch.as_tensor(held.labels[pick]),
        num_t=LOSS_CURVE_STEPS,
        callback=report,
    )
    title = f"ε-prediction loss on {len(pick)} held-out {dataset_info(loaded.dataset).items}"
    panel = pictures.CurvePanel(title, "mean ‖ε − ε_θ‖² per pixel", {"loss": losses}, log_y=True)
    T = loaded.schedule.num_steps
    caption = (
        f"**{title}** (model {loaded.name}): the mean $\\lVert\\epsilon - \\epsilon_\\theta\\rVert^2$ per pixel "
        f"(log scale) against $t$ ($T$ = {T}). The values plotted: "
        + " · ".join(f"t = {int(t)}: {fmt(float(loss))}" for t, loss in zip(ts, losses, strict=True))
        + "."
    )
    return pictures.render_curves(ts, [panel], xlabel=f"t (T = {T})").image, caption


@friendly_errors
def model_loss_curve(request: gr.Request | None = None, progress: gr.Progress = gr.Progress()) -> Iterator[Any]:
    """This page's model's L_simple (eq. 14) against t over held-out images of its dataset: (plot, caption).

    Kept for a few recent models.
    """
    loaded = state.model_for(request)
    key = (str(loaded.path), loaded.name)  # a checkpoint folder holds one model for as long as it exists
    with _LOSS_LOCK:
        cached = _LOSS_CURVES.get(key)
    if cached is None:
        cached = yield from watch(request, lambda report: _loss_curve(loaded, report), 2, progress, "steps t")
        with _LOSS_LOCK:
            _LOSS_CURVES[key] = cached
            while len(_LOSS_CURVES) > _LOSS_CURVES_KEPT:
                _LOSS_CURVES.popitem(last=False)
    yield cached


def _class_slider(dataset: str) -> dict:
    """The class slider's label and the line under it that names the classes (digits need no names)."""
    info = dataset_info(dataset)
    if info.numbered:
        return {"label": info.class_word, "info": f"0 to {NUM_CLASSES - 1}"}
    names = " · ".join(f"{label} {name}" for label, name in enumerate(info.class_names))
    return {"label": info.class_word, "info": names}


def _loss_button_text(dataset: str) -> str:
    """The loss button's words, naming what the curve averages over."""
    count = NUM_CLASSES * LOSS_CURVE_PER_CLASS
    return f"Plot the model's loss against t over {count} held-out {dataset_info(dataset).items}"


def _model_controls(t: Any, request: gr.Request | None = None) -> tuple[dict, dict, dict]:
    """The model section's controls for this page's model: (t slider, class slider, loss button).

    The t slider spans the model's own schedule (0 … T−1), whatever checkpoint it uses; the class slider and
    the button name the classes and the images of the model's dataset.
    """
    loaded = state.model_for(request)
    T = loaded.schedule.num_steps
    step = step_slider_update(T, t, fallback=MODEL_DEFAULT_STEP, label=f"step t (model's schedule, T = {T})")
    return step, gr.update(**_class_slider(loaded.dataset)), gr.update(value=_loss_button_text(loaded.dataset))


# ----------------------------------------------------------------------------------------------
# Layout and events
# ----------------------------------------------------------------------------------------------


def _model_section(tab: gr.Tab, model_card: gr.components.Component | None) -> None:
    """Below the oracle: this page's model's ε and x̂₀ against the truth on its dataset, and its loss against t.

    The t slider spans the page's model's schedule, and the class slider and loss button name the classes and
    images of its dataset; they are refreshed whenever ``model_card`` (the page's model card, written by every
    event that changes the page's model or dataset, and on load) changes. Not on the tab's select: an update
    of a control inside a tab from that tab's select makes Gradio fire the select again, without end.
    """
    gr.Markdown(MODEL_INTRO, latex_delimiters=LATEX)
    with gr.Row():
        # A slider rather than a dropdown of names: arrow keys step through the classes, and API clients keep
        # sending the class as a number 0-9.
        digit = gr.Slider(0, NUM_CLASSES - 1, value=3, step=1, elem_id="mvo-digit", **_class_slider(DEFAULT_DATASET))
        index = gr.Slider(0, HELD_OUT_PER_CLASS - 1, value=0, step=1, label="held-out example", elem_id="mvo-index")
        step = gr.Slider(0, MODEL_DEFAULT_STEP, value=MODEL_DEFAULT_STEP, step=1, label="step t (model's schedule)",
                         elem_id="mvo-t")  # fmt: skip
        seed = seed_box("mvo-seed")
    strip = output_image("model vs oracle", fmt="png")
    note = gr.Markdown()
    loss_button = gr.Button(_loss_button_text(DEFAULT_DATASET))
    loss_plot = output_image(
        "ε-loss against t", fmt="png", alt_text="Plot of the model's loss against t; the text below lists its values."
    )
    loss_caption = gr.Markdown(latex_delimiters=LATEX)
    inputs, outputs = [digit, index, step, seed], [strip, note]
    # .input, not .release: arrow keys on a focused slider fire no release. always_last keeps a mouse drag to
    # one request at a time per page, the last position drawn when the drag ends (as tab 1's t slider does).
    picture_events(
        model_vs_oracle, [digit.input, index.input, step.input, seed.submit], inputs, outputs,
        trigger_mode="always_last", show_progress="minimal",
    )  # fmt: skip
    if model_card is not None:
        model_card.change(_model_controls, step, [step, digit, loss_button], api_visibility="private", queue=False)
    tab.select(
        model_vs_oracle.for_page, inputs, outputs, api_visibility="private", show_progress="hidden",
        trigger_mode="always_last", concurrency_id="model_vs_oracle",
    )  # fmt: skip
    loss_button.click(model_loss_curve, None, [loss_plot, loss_caption], api_name="model_loss_curve",
                      concurrency_limit=2, concurrency_id="sampling")  # fmt: skip


def build_tab(
    tab: gr.Tab,
    follow: dict[str, gr.components.Component],
    link: gr.State | None = None,
    model_card: gr.components.Component | None = None,
) -> dict[str, gr.components.Component]:
    """Lay out tab 2 and wire its events; returns its own inputs by query-parameter name.

    ``follow`` are tab 1's inputs, which this tab's copy tracks; ``link`` is this tab's deep-link State (see
    :mod:`ddpm_ui.links`), whose change redraws the views after a link set the controls; ``model_card`` is the
    card of this page's model, which the model section's controls follow (its schedule, its dataset's classes).
    """
    gr.Markdown(INTRO, latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            image, step, schedule, T, seed, new_noise = image_controls("oracle")
            gr.Markdown("*These follow the Forward noise tab; you can also change them here.*")
        with gr.Column(scale=2):
            curve = output_image("errors against x₀ at every t, marker at t", fmt="png")
    panels = output_image("oracle reconstruction at t", fmt="png")
    table = gr.Markdown(latex_delimiters=LATEX)
    with gr.Row():
        run_chain = gr.Button("Run the oracle reverse chain (all T steps)", variant="primary")
    chain_strip = output_image(
        "oracle reverse chain, every T/5 steps",
        fmt="png",
        alt_text="The oracle's reverse chain, from pure noise back to the photo; the text below names each step shown.",
    )
    chain_info = gr.Markdown(latex_delimiters=LATEX)

    # Follow tab 1 in the browser (no server round trip); the views refresh when this tab is opened.
    for name, mine in (("image", image), ("t", step), ("schedule", schedule), ("T", T), ("seed", seed)):
        follow[name].change(None, follow[name], mine, js="(value) => value")

    # The page draws through oracle_view.for_page and error_curve.for_page (pictures with their alt text); API
    # clients call oracle_view and error_curve, which no page event triggers, sharing each one's concurrency limit.
    inputs = [image, step, schedule, T, seed]
    triggers = [tab.select, image.change, step.input, schedule.change, seed.change]
    triggers += [link.change] if link is not None else []
    common = {"show_progress": "hidden", "preprocess": False}
    retarget = T.change(retarget_step, [T, step], step, api_visibility="private", queue=False)
    for view, outputs in ((oracle_view, [panels, table]), (error_curve, curve)):
        mine = {**common, "concurrency_id": view.__name__, "trigger_mode": "always_last"}
        picture_events(view, triggers, inputs, outputs, **mine)
        retarget.then(view.for_page, inputs, outputs, api_visibility="private", **mine)
    new_noise.click(next_seed, seed, seed, api_visibility="private", queue=False)
    run_chain.click(
        oracle_chain,
        [image, schedule, T, seed],
        [chain_strip, chain_info],
        api_name="oracle_chain",
        preprocess=False,
        concurrency_limit=1,
        concurrency_id="oracle_chain",
    )
    _model_section(tab, model_card)
    return {"schedule": schedule, "T": T, "t": step, "seed": seed}
