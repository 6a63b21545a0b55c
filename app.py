"""DDPM Playground: a Gradio app that teaches denoising diffusion by letting you poke at it.

Run ``python app.py`` (``--host``, ``--port``, ``--share``). Importing this module builds the UI
(``demo``) but computes nothing: every picture is made by a handler when a page asks for it.

The handlers (:func:`forward_view`, :func:`oracle_view`, :func:`error_curve`, :func:`oracle_chain`) are
plain functions returning numpy images and Markdown strings, so tests can call them directly; each one
is also an API endpoint of the same name. Bad input raises :class:`gradio.Error` with a message meant
for people; unexpected failures are logged on the server and reported without a stack trace.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # must be set before gradio is imported

import argparse
import functools
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import numpy as np

from ddpm_core import oracle, pictures
from ddpm_core.images import ImageInputError, LoadedImage, load_image_info, to_uint8
from ddpm_core.schedule import SCHEDULE_NAMES, NoiseSchedule, make_schedule

LOG = logging.getLogger("ddpm_playground")

ROOT = Path(__file__).resolve().parent
DEFAULT_IMAGE = ROOT / "assets" / "grace_hopper.jpg"

IMAGE_SIDE = 256  # uploads are shrunk so their longest side is at most this
T_CHOICES = (1000, 150)
DEFAULT_T = 1000
DEFAULT_STEP = 200
NUM_SAMPLES = 3  # x_t samples shown in the forward tab
CURVE_SIDE = 64  # the error-vs-t curves are computed on a copy this small
CHAIN_SIDE = 128  # the oracle reverse chain runs on a copy this small
MAX_SEED = 2**31 - 1
MAX_FILE_SIZE = "20mb"
NOISE_DISPLAY_SCALE = 3.0  # ε is shown as ε / 3, so ±3σ fills the grey range

LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]

F = TypeVar("F", bound=Callable[..., Any])


# ----------------------------------------------------------------------------------------------
# Input checking shared by the handlers
# ----------------------------------------------------------------------------------------------


def _user_error(message: str) -> gr.Error:
    """An error shown to the user as it is; no stack trace is printed for these."""
    return gr.Error(message, title="Cannot show this", print_exception=False)


def friendly_errors(fn: F) -> F:
    """Turn bad-input errors into readable :class:`gradio.Error`s and hide everything else behind a short note."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ImageInputError, ValueError) as err:
            raise _user_error(str(err)) from None
        except Exception:
            LOG.exception("handler %s failed", fn.__name__)
            raise _user_error("Something went wrong while computing this view. Please try again.") from None

    return wrapper  # type: ignore[return-value]


def _image_path(image: Any) -> Path:
    """The file behind an image input: a path, or Gradio's file payload (a dict with "path")."""
    if image is None or image == "":
        raise ImageInputError("Please upload an image first (or use the example).")
    if isinstance(image, dict):
        image = image.get("path")
    elif hasattr(image, "path"):
        image = image.path
    if not isinstance(image, (str, os.PathLike)) or not str(image):
        raise ImageInputError("Please upload an image first (or use the example).")
    return Path(image)


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, size: int, mtime_ns: int) -> LoadedImage:
    """Decode once per file version; a slider drag then reuses the tensor."""
    return load_image_info(path, max_side=IMAGE_SIDE)


def _load(image: Any) -> tuple[LoadedImage, tuple[str, int, int]]:
    """The decoded image and a key that identifies the file version."""
    path = _image_path(image)
    try:
        stat = path.stat()
    except OSError:
        raise ImageInputError("The uploaded image could not be found; please upload it again.") from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    return _load_cached(*key), key


def _steps_count(T: Any) -> int:
    choices = ", ".join(map(str, T_CHOICES))
    try:
        value = float(T)
    except (TypeError, ValueError):
        raise ValueError(f"T must be one of {choices}.") from None
    if value not in T_CHOICES:
        raise ValueError(f"T must be one of {choices}, not {T}.")
    return int(value)


def _step(t: Any, T: int) -> int:
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise ValueError("The step t must be a number.") from None
    if not math.isfinite(value) or value != int(value):
        raise ValueError("The step t must be a whole number.")
    if not 0 <= value <= T - 1:
        raise ValueError(f"The step t must lie between 0 and {T - 1} when T = {T}.")
    return int(value)


def _seed(seed: Any) -> int:
    try:
        value = float(seed if seed is not None else 0)
    except (TypeError, ValueError):
        raise ValueError("The seed must be a whole number.") from None
    if not math.isfinite(value) or value != int(value) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"The seed must be a whole number between 0 and {MAX_SEED}.")
    return int(value)


@functools.lru_cache(maxsize=8)
def _schedule(name: str, T: int) -> NoiseSchedule:
    return make_schedule(name, T)


def _settings(schedule_name: Any, T: Any) -> tuple[NoiseSchedule, int]:
    if schedule_name not in SCHEDULE_NAMES:
        raise ValueError(f"The schedule must be one of {', '.join(SCHEDULE_NAMES)}.")
    steps = _steps_count(T)
    return _schedule(str(schedule_name), steps), steps


def _notes(loaded: LoadedImage) -> str:
    return f"\n\n*Image: {'; '.join(loaded.notes)}.*" if loaded.notes else ""


_SUBSCRIPTS = str.maketrans("0123456789-", "₀₁₂₃₄₅₆₇₈₉₋")


def _sub(n: int) -> str:
    """Subscript digits for captions: 42 → ₄₂."""
    return str(n).translate(_SUBSCRIPTS)


def _fmt(value: float) -> str:
    """Short number for captions: 4 significant digits, scientific for tiny values."""
    if value == 0:
        return "0"
    return f"{value:.3g}" if abs(value) < 1e-3 else f"{value:.4f}"


# ----------------------------------------------------------------------------------------------
# Tab 1: forward noise
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _schedule_canvas(name: str, T: int) -> pictures.CurveCanvas:
    """ᾱ_t and log-SNR for one schedule, rendered once; the step marker is drawn per request."""
    schedule = _schedule(name, T)
    steps = np.arange(T)
    return pictures.render_curves(
        steps,
        [
            pictures.CurvePanel("ᾱₜ: how much of x₀ is left", "ᾱₜ", {"ᾱₜ": schedule.alphas_cumprod.numpy()}),
            pictures.CurvePanel("log-SNR = log(ᾱₜ / (1 − ᾱₜ))", "log-SNR", {"log-SNR": schedule.log_snr.numpy()}),
        ],
        title=f"{name} schedule, T = {T}",
        size=(6.4, 4.0),
    )


@friendly_errors
def forward_view(
    image: Any, t: Any, schedule_name: str = "linear", T: Any = DEFAULT_T, seed: Any = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Tab 1: (μ_t, strip of x_t samples, ε, single-step strip, ᾱ/log-SNR plot, Markdown with the numbers)."""
    schedule, steps = _settings(schedule_name, T)
    step, seed = _step(t, steps), _seed(seed)
    loaded, _ = _load(image)
    view = oracle.explore_forward(loaded.tensor, schedule, step, seed, num_samples=NUM_SAMPLES)

    samples = to_uint8(view.samples)
    samples_strip = pictures.labelled_strip(
        list(samples), [f"x{_sub(step)}, noise draw {k + 1}" for k in range(len(samples))]
    )
    prev_label = "xₜ₋₁ = x₀ (t = 0)" if step == 0 else f"xₜ₋₁ = x{_sub(step - 1)}, by the jump from x₀"
    step_strip = pictures.labelled_strip(
        [to_uint8(view.x_prev), to_uint8(view.step_noise / NOISE_DISPLAY_SCALE), to_uint8(view.x_step)],
        [prev_label, "ε′ (fresh noise, shown ÷3)", f"x{_sub(step)} = √αₜ xₜ₋₁ + √βₜ ε′"],
    )
    canvas = _schedule_canvas(schedule.name, steps)
    plot = canvas.with_marker(
        step,
        [[float(schedule.alphas_cumprod[step])], [float(schedule.log_snr[step])]],
        label=f"t = {step}",
    )
    ab = view.alpha_bar
    info = (
        f"**t = {step}** (paper step {step + 1} of {steps}) · "
        f"$\\beta_t$ = {_fmt(view.beta)} · $\\bar\\alpha_t$ = {_fmt(ab)} · "
        f"$\\sqrt{{\\bar\\alpha_t}}$ = {_fmt(math.sqrt(ab))} · "
        f"$\\sqrt{{1-\\bar\\alpha_t}}$ = {_fmt(math.sqrt(1 - ab))} · "
        f"SNR = {_fmt(ab / (1 - ab))} · seed {seed}"
        f"{_notes(loaded)}"
    )
    return (
        to_uint8(view.mean),
        samples_strip,
        to_uint8(view.noise / NOISE_DISPLAY_SCALE),
        step_strip,
        plot,
        info,
    )


# ----------------------------------------------------------------------------------------------
# Tab 2: oracle reconstruction
# ----------------------------------------------------------------------------------------------


@friendly_errors
def oracle_view(
    image: Any, t: Any, schedule_name: str = "linear", T: Any = DEFAULT_T, seed: Any = 0
) -> tuple[np.ndarray, str]:
    """Tab 2: (labelled panels x_t, x̂₀, μ̃_{t−1}, μ_{t−1} with their ℓ1 errors, Markdown table of the same)."""
    schedule, steps = _settings(schedule_name, T)
    step, seed = _step(t, steps), _seed(seed)
    loaded, _ = _load(image)
    rec = oracle.reconstruct_oracle(loaded.tensor, schedule, step, seed)
    l1_prior_vs_x0 = oracle.l1(rec.prior_mean, loaded.tensor)
    panels = pictures.labelled_strip(
        [to_uint8(rec.x_t), to_uint8(rec.x0_hat), to_uint8(rec.posterior_mean), to_uint8(rec.prior_mean)],
        [
            f"xₜ (t = {step})\nℓ1 to x₀ = {_fmt(rec.l1_xt_vs_x0)}",
            f"oracle x̂₀\nℓ1 to x₀ = {_fmt(rec.l1_x0_hat_vs_x0)}",
            f"μ̃ₜ₋₁ from x̂₀ and xₜ\nℓ1 to μₜ₋₁ = {_fmt(rec.l1_posterior_vs_prior_mean)}",
            f"μₜ₋₁ = √ᾱₜ₋₁ x₀\nℓ1 to x₀ = {_fmt(l1_prior_vs_x0)}",
        ],
    )
    table = (
        f"**t = {step}**, seed {seed}. ℓ1 is the mean absolute difference per pixel (images in [−1, 1]).\n\n"
        "| panel | formula | compared with | ℓ1 |\n|---|---|---|---|\n"
        f"| $x_t$ | $\\sqrt{{\\bar\\alpha_t}}\\,x_0 + \\sqrt{{1-\\bar\\alpha_t}}\\,\\epsilon$ | $x_0$ | "
        f"{_fmt(rec.l1_xt_vs_x0)} |\n"
        f"| oracle $\\hat x_0$ | $(x_t - \\sqrt{{1-\\bar\\alpha_t}}\\,\\epsilon)/\\sqrt{{\\bar\\alpha_t}}$ | $x_0$ | "
        f"{_fmt(rec.l1_x0_hat_vs_x0)} |\n"
        f"| $\\tilde\\mu_{{t-1}}$ | $\\tilde\\mu_t(x_t, \\hat x_0)$ (eq. 7) | $\\mu_{{t-1}}$ | "
        f"{_fmt(rec.l1_posterior_vs_prior_mean)} |\n"
        f"| $\\tilde\\mu_{{t-1}}$ | same | $x_0$ | {_fmt(rec.l1_posterior_vs_x0)} |\n"
        f"| $\\mu_{{t-1}}$ | $\\sqrt{{\\bar\\alpha_{{t-1}}}}\\,x_0$ | $x_0$ | {_fmt(l1_prior_vs_x0)} |\n\n"
        f"Posterior std $\\sqrt{{\\tilde\\beta_t}}$ = {_fmt(rec.posterior_std)}. "
        "$\\tilde\\mu_{t-1}$ differs from $\\mu_{t-1}$ because it also knows $x_t$, i.e. which way the noise went."
        f"{_notes(loaded)}"
    )
    return panels, table


@functools.lru_cache(maxsize=8)
def _error_canvas(key: tuple[str, int, int], name: str, T: int, seed: int) -> tuple[pictures.CurveCanvas, Any]:
    """Error-vs-t curves for one image version, schedule and seed, rendered once (marker added per request)."""
    loaded = _load_cached(*key)
    curves = oracle.error_curves(loaded.tensor, _schedule(name, T), seed, max_side=CURVE_SIDE)
    floor = 1e-16  # float64 rounding; a log axis cannot show 0
    h, w = curves.image_size
    canvas = pictures.render_curves(
        curves.steps.numpy(),
        [
            pictures.CurvePanel(
                "ℓ1 to x₀ (log scale)",
                "ℓ1",
                {
                    "xₜ": curves.l1_xt.clamp(min=floor).numpy(),
                    "oracle x̂₀": curves.l1_x0_hat.clamp(min=floor).numpy(),
                    "μ̃ₜ₋₁": curves.l1_posterior_mean.clamp(min=floor).numpy(),
                },
                log_y=True,
                note="values below 1e-16 (float64 rounding) drawn at 1e-16",
            ),
            pictures.CurvePanel(
                "PSNR against x₀",
                "dB",
                {
                    "xₜ": curves.capped(curves.psnr_xt).numpy(),
                    "oracle x̂₀": curves.capped(curves.psnr_x0_hat).numpy(),
                    "μ̃ₜ₋₁": curves.capped(curves.psnr_posterior_mean).numpy(),
                },
                ylim=(0.0, curves.psnr_cap_db + 5.0),
                note=f"capped at {curves.psnr_cap_db:.0f} dB: the oracle x̂₀ is exact up to rounding (PSNR ≈ ∞)",
            ),
        ],
        title=f"Errors at every step ({name}, T = {T}; on a {w}×{h} copy, one shared ε)",
        size=(6.4, 4.6),
    )
    return canvas, curves


@friendly_errors
def error_curve(image: Any, t: Any, schedule_name: str = "linear", T: Any = DEFAULT_T, seed: Any = 0) -> np.ndarray:
    """Tab 2: the ℓ1 / PSNR-vs-t plot of x_t, oracle x̂₀ and μ̃_{t−1} against x₀, with a marker at t."""
    schedule, steps = _settings(schedule_name, T)
    step, seed = _step(t, steps), _seed(seed)
    _, key = _load(image)
    canvas, curves = _error_canvas(key, schedule.name, steps, seed)
    return canvas.with_marker(
        step,
        [[float(curves.l1_xt[step])], [min(float(curves.psnr_xt[step]), curves.psnr_cap_db)]],
        label=f"t = {step}",
    )


@friendly_errors
def oracle_chain(
    image: Any, schedule_name: str = "linear", T: Any = DEFAULT_T, seed: Any = 0
) -> tuple[np.ndarray, str]:
    """Tab 2: the reverse chain x_{T−1} → x₀ driven by the oracle ε; (strip every T/5 steps, Markdown summary)."""
    schedule, steps = _settings(schedule_name, T)
    seed = _seed(seed)
    loaded, _ = _load(image)
    chain = oracle.oracle_reverse_chain(loaded.tensor, schedule, seed, num_snapshots=5, max_side=CHAIN_SIDE)
    labels = [f"x{_sub(s)}" if s >= 0 else "x₀ from the chain" for s in chain.snapshot_steps]
    strip = pictures.labelled_strip(list(to_uint8(chain.snapshots)), labels)
    h, w = chain.final.shape[-2:]
    summary = (
        f"Ran all {steps} reverse steps (Algorithm 2, $\\sigma_t^2 = \\beta_t$) in float64 on a {w}×{h} copy, "
        f"seed {seed}, with $\\epsilon$ = `predict_eps(x_t, t, x0)` at every step.\n\n"
        f"Final error against $x_0$: max |·| = **{chain.final_max_error:.2e}**, ℓ1 = {chain.final_l1:.2e}."
    )
    return strip, summary


def _retarget_step(T: Any, t: Any) -> dict:
    """Keep the t slider inside 0 … T−1 when T changes."""
    steps = _steps_count(T)
    try:
        step = min(int(float(t)), steps - 1)
    except (TypeError, ValueError):
        step = 0
    return gr.update(maximum=steps - 1, value=max(0, step))


def _next_seed(seed: Any) -> int:
    try:
        return (int(float(seed)) + 1) % (MAX_SEED + 1)
    except (TypeError, ValueError):
        return 0


# ----------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------

FORWARD_INTRO = r"""
### The forward process adds Gaussian noise in small steps

Each step keeps $\sqrt{1-\beta_t}$ of the image and adds noise of variance $\beta_t$:
$q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I)$.
Steps compose, so any $x_t$ can be drawn from $x_0$ in one jump, with $\bar\alpha_t = \prod_{s \le t}(1-\beta_s)$:

$$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\qquad \epsilon \sim \mathcal N(0, I).$$

The mean $\mu_t = \sqrt{\bar\alpha_t}\,x_0$ fades to black (0) while the noise grows. With a fixed seed
each sample keeps its own $\epsilon$ as you move $t$. Steps run $0 \dots T-1$ here; step $t$ is step
$t+1$ in the DDPM paper, and "$x_{t-1}$" at $t = 0$ is $x_0$ itself.
"""

ORACLE_INTRO = r"""
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


def _controls(prefix: str) -> tuple[gr.Image, gr.Slider, gr.Radio, gr.Radio, gr.Number, gr.Button]:
    """Image, t, schedule, T and seed inputs (one set per tab: a component can only be shown once)."""
    image = gr.Image(
        value=str(DEFAULT_IMAGE),
        type="filepath",
        image_mode=None,
        sources=["upload", "clipboard"],
        label="Image x₀ (any photo; shrunk to 256 px)",
        height=260,
        elem_id=f"{prefix}-image",
    )
    step = gr.Slider(0, DEFAULT_T - 1, value=DEFAULT_STEP, step=1, label="step t", elem_id=f"{prefix}-t")
    schedule = gr.Radio(list(SCHEDULE_NAMES), value="linear", label="β schedule", elem_id=f"{prefix}-schedule")
    steps = gr.Radio(list(T_CHOICES), value=DEFAULT_T, label="T (number of steps)", elem_id=f"{prefix}-T")
    with gr.Row():
        seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="seed", elem_id=f"{prefix}-seed")
        new_noise = gr.Button("New noise", size="sm")
    return image, step, schedule, steps, seed, new_noise


def _output_image(label: str, fmt: str = "jpeg") -> gr.Image:
    return gr.Image(label=label, format=fmt, interactive=False, buttons=["download", "fullscreen"])


def _forward_tab(demo: gr.Blocks) -> dict[str, gr.components.Component]:
    """Tab 1: the forward process at step t. Returns its input components (tab 2 follows them)."""
    gr.Markdown(FORWARD_INTRO, latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            image, step, schedule, steps, seed, new_noise = _controls("forward")
        with gr.Column(scale=2):
            # JPEG: a PNG of this plot costs ~10 ms to encode on every slider move, a JPEG under 1 ms.
            plot = _output_image("ᾱₜ and log-SNR, marker at t", fmt="jpeg")
            info = gr.Markdown(latex_delimiters=LATEX)
    with gr.Row():
        mean = _output_image("mean μₜ = √ᾱₜ x₀")
        noise = _output_image("ε of draw 1 (shown as ε/3, clipped)")
    samples = _output_image(f"{NUM_SAMPLES} samples of xₜ ~ q(xₜ | x₀), one noise draw each")
    single = _output_image("one step of q(xₜ | xₜ₋₁), starting from an xₜ₋₁ drawn by the jump")

    inputs = [image, step, schedule, steps, seed]
    outputs = [mean, samples, noise, single, plot, info]
    gr.on(
        [demo.load, image.change, step.input, schedule.change, seed.change],
        forward_view,
        inputs,
        outputs,
        api_name="forward_view",
        trigger_mode="always_last",
        show_progress="hidden",
        preprocess=False,  # our loader is the only code that opens the uploaded file
    )
    steps.change(_retarget_step, [steps, step], step, api_visibility="private", queue=False).then(
        forward_view, inputs, outputs, api_visibility="private", show_progress="hidden", preprocess=False
    )
    new_noise.click(_next_seed, seed, seed, api_visibility="private", queue=False)
    return {"image": image, "t": step, "schedule": schedule, "T": steps, "seed": seed}


def _oracle_tab(demo: gr.Blocks, tab: gr.Tab, follow: dict[str, gr.components.Component]) -> None:
    """Tab 2: oracle reconstruction at t, errors at every t, and the oracle reverse chain."""
    gr.Markdown(ORACLE_INTRO, latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            image, step, schedule, steps, seed, new_noise = _controls("oracle")
            gr.Markdown("*These follow the Forward noise tab; you can also change them here.*")
        with gr.Column(scale=2):
            curve = _output_image("errors against x₀ at every t, marker at t", fmt="png")
    panels = _output_image("oracle reconstruction at t", fmt="png")
    table = gr.Markdown(latex_delimiters=LATEX)
    with gr.Row():
        run_chain = gr.Button("Run the oracle reverse chain (all T steps)", variant="primary")
    chain_strip = _output_image("oracle reverse chain, every T/5 steps", fmt="png")
    chain_info = gr.Markdown(latex_delimiters=LATEX)

    # Follow tab 1 in the browser (no server round trip); the views refresh when this tab is opened.
    for name, mine in (("image", image), ("t", step), ("schedule", schedule), ("T", steps), ("seed", seed)):
        follow[name].change(None, follow[name], mine, js="(value) => value")

    inputs = [image, step, schedule, steps, seed]
    triggers = [tab.select, image.change, step.input, schedule.change, seed.change]
    common = {"trigger_mode": "always_last", "show_progress": "hidden", "preprocess": False}
    gr.on(triggers, oracle_view, inputs, [panels, table], api_name="oracle_view", **common)
    gr.on(triggers, error_curve, inputs, curve, api_name="error_curve", **common)
    retarget = steps.change(_retarget_step, [steps, step], step, api_visibility="private", queue=False)
    retarget.then(oracle_view, inputs, [panels, table], api_visibility="private", **common)
    retarget.then(error_curve, inputs, curve, api_visibility="private", **common)
    new_noise.click(_next_seed, seed, seed, api_visibility="private", queue=False)
    run_chain.click(
        oracle_chain,
        [image, schedule, steps, seed],
        [chain_strip, chain_info],
        api_name="oracle_chain",
        preprocess=False,
        concurrency_limit=1,
        concurrency_id="oracle_chain",
    )


def build_demo() -> gr.Blocks:
    """The whole app: one gr.Tabs with a function per tab."""
    with gr.Blocks(title="DDPM Playground", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# DDPM Playground\nDenoising diffusion, one equation at a time.")
        with gr.Tabs():
            with gr.Tab("Forward noise", id="forward"):
                forward_inputs = _forward_tab(demo)
            with gr.Tab("Oracle reconstruction", id="oracle") as oracle_tab:
                _oracle_tab(demo, oracle_tab, forward_inputs)
            # Tabs 3 ("Train or load") and 4 ("Sample") go here, each as
            #     with gr.Tab("…", id="…"):
            #         _train_tab(demo) / _sample_tab(demo)
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


def launch_options() -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` shared by ``__main__`` and the tests."""
    return {"max_file_size": MAX_FILE_SIZE, "show_error": True, "footer_links": ["api", "gradio"]}


demo = build_demo()


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="DDPM Playground")
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        help="port (default: $GRADIO_SERVER_PORT or 7860)",
    )
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=int(os.environ.get("DDPM_TORCH_THREADS", "1")),
        help="intra-op threads for torch (default: $DDPM_TORCH_THREADS or 1; 0 keeps torch's default). "
        "The views work on small tensors and Gradio already runs requests side by side, so more threads "
        "mostly add contention; on a busy 2-core machine they made each view over 10× slower.",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    args = _parse_args()
    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options())
