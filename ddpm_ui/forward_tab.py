"""Tab 1, "Forward noise": drag t and watch q(x_t | x_0) and one step of q(x_t | x_{t−1}) act on a photo."""

from __future__ import annotations

import functools
import math
from typing import Any

import gradio as gr
import numpy as np

from ddpm_core import oracle, pictures
from ddpm_core.image_io import to_uint8
from ddpm_ui.common import (
    DEFAULT_T,
    LATEX,
    NOISE_DISPLAY_SCALE,
    Picture,
    cached_schedule,
    fmt,
    image_controls,
    image_examples,
    image_notes,
    next_seed,
    output_image,
    parse_image_view,
    picture_events,
    picture_view,
    retarget_step,
    sub,
)

NUM_SAMPLES = 3  # draws of x_t shown side by side

INTRO = r"""
### The forward process adds Gaussian noise in small steps

Each step keeps $\sqrt{1-\beta_t}$ of the image and adds noise of variance $\beta_t$:
$q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I)$.
Steps compose, so any $x_t$ can be drawn from $x_0$ in one jump, with $\bar\alpha_t = \prod_{s \le t}(1-\beta_s)$:

$$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\qquad \epsilon \sim \mathcal N(0, I).$$

The mean $\mu_t = \sqrt{\bar\alpha_t}\,x_0$ fades to 0 (plain grey, the middle of $[-1, 1]$) while the
noise grows. With a fixed seed each sample keeps its own $\epsilon$ as you move $t$. Steps run $0 \dots T-1$
here; step $t$ is step $t+1$ in the DDPM paper, and "$x_{t-1}$" at $t = 0$ is $x_0$ itself.
"""


@functools.lru_cache(maxsize=8)
def _schedule_canvas(name: str, T: int) -> pictures.CurveCanvas:
    """ᾱ_t and log-SNR for one schedule, rendered once; the step marker is drawn per request."""
    schedule = cached_schedule(name, T)
    return pictures.render_curves(
        np.arange(T),
        [
            pictures.CurvePanel("ᾱₜ: how much of x₀ is left", "ᾱₜ", {"ᾱₜ": schedule.alphas_cumprod.numpy()}),
            pictures.CurvePanel("log-SNR = log(ᾱₜ / (1 − ᾱₜ))", "log-SNR", {"log-SNR": schedule.log_snr.numpy()}),
        ],
        title=f"{name} schedule, T = {T}",
        size=(6.4, 4.0),
    )


def _numbers(view: oracle.ForwardView, step: int, T: int, seed: int) -> str:
    """The Markdown line of β_t, ᾱ_t and friends at ``step``."""
    ab = view.alpha_bar
    return (
        f"**t = {step}** (paper step {step + 1} of {T}) · "
        f"$\\beta_t$ = {fmt(view.beta)} · $\\bar\\alpha_t$ = {fmt(ab)} · "
        f"$\\sqrt{{\\bar\\alpha_t}}$ = {fmt(math.sqrt(ab))} · "
        f"$\\sqrt{{1-\\bar\\alpha_t}}$ = {fmt(math.sqrt(1 - ab))} · "
        f"SNR = {fmt(ab / (1 - ab))} · seed {seed}"
    )


@picture_view
def forward_view(
    image: Any, t: Any, schedule_name: str = "linear", T: Any = DEFAULT_T, seed: Any = 0
) -> tuple[Picture, Picture, Picture, Picture, Picture, str]:
    """(μ_t, strip of x_t samples, ε, single-step strip, ᾱ/log-SNR plot, each with its alt text; Markdown numbers)."""
    inputs = parse_image_view(image, t, schedule_name, T, seed)
    loaded, schedule, step, seed = inputs.image, inputs.schedule, inputs.step, inputs.seed
    view = oracle.explore_forward(loaded.tensor, schedule, step, seed, num_samples=NUM_SAMPLES)

    samples = to_uint8(view.samples)
    samples_strip = pictures.labelled_strip(
        list(samples), [f"x{sub(step)}, noise draw {k + 1}" for k in range(len(samples))]
    )
    prev_label = "xₜ₋₁ = x₀ (t = 0)" if step == 0 else f"xₜ₋₁ = x{sub(step - 1)} (jump from x₀)"
    step_strip = pictures.labelled_strip(
        [to_uint8(view.x_prev), to_uint8(view.step_noise / NOISE_DISPLAY_SCALE), to_uint8(view.x_step)],
        [prev_label, "ε′ (fresh noise, shown ÷3)", f"x{sub(step)} = √αₜ xₜ₋₁ + √βₜ ε′"],
    )
    alpha_bar, log_snr = float(schedule.alphas_cumprod[step]), float(schedule.log_snr[step])
    plot = _schedule_canvas(schedule.name, schedule.num_steps).with_marker(
        step, [[alpha_bar], [log_snr]], label=f"t = {step}"
    )
    info = _numbers(view, step, schedule.num_steps, seed) + image_notes(loaded)
    at = f"t = {step} of {schedule.num_steps}, {schedule.name} schedule"
    keep, spread = fmt(math.sqrt(alpha_bar)), fmt(math.sqrt(1 - alpha_bar))
    previous = "x_0 itself (at t = 0)" if step == 0 else f"x_{step - 1} drawn from x_0"
    return (
        Picture(
            to_uint8(view.mean),
            f"The mean mu_t = sqrt(alpha-bar_t) x_0 at {at}: the photo with its contrast scaled by {keep}, "
            "fading to plain grey as t grows.",
        ),
        Picture(
            samples_strip,
            f"x_t at {at}: {NUM_SAMPLES} noise draws side by side (seed {seed}), each {keep} times the photo "
            f"plus noise of standard deviation {spread}.",
        ),
        Picture(
            to_uint8(view.noise / NOISE_DISPLAY_SCALE),
            f"The noise epsilon of draw 1 (seed {seed}), shown divided by 3: grey static the size of the photo.",
        ),
        Picture(
            step_strip,
            f"One step of q(x_t | x_t-1) at {at}: {previous}, the fresh noise epsilon-prime (shown divided by 3), "
            f"and x_t = sqrt(alpha_t) x_t-1 + sqrt(beta_t) epsilon-prime with beta_t = {fmt(view.beta)}.",
        ),
        Picture(
            plot,
            f"Two plots against t for the {schedule.name} schedule, T = {schedule.num_steps}: alpha-bar_t, "
            f"falling from 1 towards 0, and log-SNR; the marker at t = {step} is at alpha-bar_t = {fmt(alpha_bar)}, "
            f"log-SNR = {log_snr:.2f}.",
        ),
        info,
    )


def build_tab(demo: gr.Blocks, link: gr.State | None = None) -> dict[str, gr.components.Component]:
    """Lay out tab 1 and wire its events; returns its inputs by query-parameter name (the oracle tab follows them).

    ``link``: this tab's deep-link State (see :mod:`ddpm_ui.links`); when a link sets the controls, its change
    redraws the views (a value set by code fires no ``.input``).
    """
    gr.Markdown(INTRO, latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            image, step, schedule, T, seed, new_noise = image_controls("forward")
            image_examples(image, "forward-examples")
        with gr.Column(scale=2):
            # JPEG: a PNG of this plot costs ~10 ms to encode on every slider move, a JPEG under 1 ms.
            plot = output_image("ᾱₜ and log-SNR, marker at t", fmt="jpeg")
            info = gr.Markdown(latex_delimiters=LATEX)
    with gr.Row():
        mean = output_image("mean μₜ = √ᾱₜ x₀")
        noise = output_image("ε of draw 1 (shown as ε/3, clipped)")
    samples = output_image(f"{NUM_SAMPLES} samples of xₜ ~ q(xₜ | x₀), one noise draw each")
    single = output_image("one step of q(xₜ | xₜ₋₁), starting from an xₜ₋₁ drawn by the jump")

    inputs = [image, step, schedule, T, seed]
    outputs = [mean, samples, noise, single, plot, info]
    # The page draws through forward_view.for_page (pictures with their alt text); API clients call
    # forward_view, which no page event triggers. preprocess=False: our loader is the only code that opens
    # the uploaded file.
    view = {"show_progress": "hidden", "preprocess": False, "concurrency_id": "forward_view"}
    triggers = [demo.load, image.change, step.input, schedule.change, seed.change]
    triggers += [link.change] if link is not None else []
    picture_events(forward_view, triggers, inputs, outputs, trigger_mode="always_last", **view)
    T.change(retarget_step, [T, step], step, api_visibility="private", queue=False).then(
        forward_view.for_page, inputs, outputs, api_visibility="private", **view
    )
    new_noise.click(next_seed, seed, seed, api_visibility="private", queue=False)
    return {"image": image, "t": step, "schedule": schedule, "T": T, "seed": seed}
