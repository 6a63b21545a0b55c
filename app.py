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
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import numpy as np
import pandas as pd
import torch

from ddpm_core import data as digits
from ddpm_core import oracle, pictures
from ddpm_core.checkpoints import CheckpointError, LoadedModel, load_checkpoint, load_uploaded, zip_checkpoint
from ddpm_core.classifier import DigitClassifier, classify, diversity, load_classifier
from ddpm_core.images import ImageInputError, LoadedImage, load_image_info, to_uint8
from ddpm_core.live import JobStatus, LiveModel, TrainingBusyError, TrainingJob, runs_root
from ddpm_core.model_oracle import compare_with_oracle, loss_by_t
from ddpm_core.runtime import Execution, default_precision, default_runtime
from ddpm_core.sampling import (
    SampleResult,
    SamplerSettings,
    SamplingCancelled,
    StepInfo,
    Trajectory,
    sample,
    sampling_execution,
    validate_labels,
    validate_settings,
)
from ddpm_core.schedule import SCHEDULE_NAMES, NoiseSchedule, make_schedule
from ddpm_core.training import TrainConfig
from ddpm_core.unet import WIDTH_PRESETS

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
    prev_label = "xₜ₋₁ = x₀ (t = 0)" if step == 0 else f"xₜ₋₁ = x{_sub(step - 1)} (jump from x₀)"
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
        title=f"Errors at every t ({name}, T = {T}, {w}×{h} copy)",
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
# Tabs 3 and 4: the digit model (shared by every user of this server)
# ----------------------------------------------------------------------------------------------

LIVE = LiveModel()
JOB = TrainingJob()
CLASS_CHOICES = [str(c) for c in range(10)]
MAX_PER_CLASS = 8
MAX_SWEEP_WS = 8
GRID_SCALE = 3
OK_COLOR, BAD_COLOR = (22, 120, 50), (200, 30, 30)
MAX_TRAIN_MINUTES = 30
TRAIN_POLL_S = 1.0
FRESH_CHOICE, RESUME_CHOICE = "start fresh", "continue training the live model"
GIF_FRAMES = 25  # at most about this many frames per denoising GIF
GIF_SCALE = 2
WORKDIR_MAX_AGE_S = 3600.0  # generated files and uploads are kept this long (like Gradio's own cache)
STREAM_EVERY_S = 0.3  # how often a running sampler's x̂₀ is streamed to the page
DEFAULT_W = 2.0


@functools.cache
def _digit_data() -> digits.DigitData:
    return digits.load_digits("bundled")


@functools.cache
def _classifier() -> DigitClassifier:
    return load_classifier()


def _live() -> LoadedModel:
    try:
        return LIVE.get()
    except CheckpointError as err:
        raise _user_error(f"The shipped model could not be loaded ({err}). Upload or train one in tab 3.") from None


def _workdir(kind: str) -> Path:
    """A fresh private folder under the app's runs root for one request's files (old ones are cleared)."""
    parent = runs_root() / kind
    _clear_old_folders(parent)
    folder = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    return folder


def _clear_old_folders(parent: Path, max_age_s: float = WORKDIR_MAX_AGE_S) -> None:
    """Delete request folders older than ``max_age_s``, except the one the live model was loaded from."""
    if not parent.is_dir():
        return
    live = LIVE.peek()
    keep = live.path.resolve() if live is not None and live.path is not None else None
    cutoff = time.time() - max_age_s
    for folder in parent.iterdir():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff and folder.resolve() != keep:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # another request removed it first
            continue


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = metrics.get("by_w") or []
    if not rows:
        return "_No quality measurements stored with this model._"
    lines = [
        f"Measured with the project's classifier, {metrics.get('sampler', {}).get('name', '?')} "
        f"{metrics.get('sampler', {}).get('steps', '?')} steps"
        f" ({metrics.get('sampler', {}).get('spacing', 'linspace')} spacing); real-vs-real Fréchet floor "
        f"{metrics.get('real_vs_real_frechet_distance', '?')}.",
        "",
        "| w | accuracy | Fréchet distance | samples |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['w']:g} | {100 * r['accuracy']:.1f}% | {r['frechet_distance']:.2f} | {r['samples']} |" for r in rows
    ]
    return "\n".join(lines)


def model_info() -> str:
    """Markdown describing the live model: name, size, schedule, training, data and measured quality."""
    s = _live().summary()
    steps = s["training_steps"]
    minutes = s["training_minutes"]
    trained = f"{steps:,} steps" if steps is not None else "unknown steps"
    if minutes is not None:
        trained += f" in {minutes:g} min"
    return (
        f"**Live model: `{s['name']}`** — {s['parameters']:,} parameters, channels {s['channels']}, "
        f"{s['schedule']}; trained {trained} on {s['data'] or 'unknown data'}.\n\n"
        + _metrics_table(s["metrics"])
        + f"\n\n**On this machine** the network runs in {_default_execution().describe()}."
    )


def warm_up() -> None:
    """Load the shipped model and choose its precision and runtime in the background, once the server starts.

    The choice is timed (about 0.4 s, plus about 0.2 s to export the ONNX graph), so the first person to
    sample does not wait for it. A failure here is only logged: the first request will try again.
    """
    try:
        LOG.info("network on this machine: %s", _default_execution().describe())
    except Exception:
        LOG.exception("warm-up failed; the first request will load the model instead")


def _default_execution() -> Execution:
    """How the live model runs for ten guided digits (timed once per process, then cached)."""
    return sampling_execution(_live().model, 10, SamplerSettings())


@friendly_errors
def load_model(files: Any) -> str:
    """Load an uploaded checkpoint (model.safetensors + config.json, or a zip) and make it live."""
    paths = [_file_path(f) for f in (files or [])]
    try:
        loaded = load_uploaded(paths, _workdir("uploads"))
    except CheckpointError as err:
        raise _user_error(f"That checkpoint was not loaded: {err}. The live model is unchanged.") from None
    LIVE.swap(loaded)
    return "Loaded. " + model_info()


def _file_path(f: Any) -> str:
    if isinstance(f, dict):
        return str(f.get("path") or "")
    return str(getattr(f, "path", f) or "")


@friendly_errors
def download_model() -> str:
    """A zip of the live model's folder (model.safetensors + config.json)."""
    loaded = _live()
    if loaded.path is None:
        raise ValueError("The live model has no folder on disk to download.")
    return str(zip_checkpoint(loaded.path, _workdir("downloads") / f"{loaded.name}.zip"))


def _loss_frame(status: JobStatus) -> pd.DataFrame:
    return pd.DataFrame({"step": status.steps_seen, "loss": status.losses})


def _training_message(status: JobStatus) -> str:
    if status.error:
        return f"**Training failed:** {status.error}"
    loss = f"{status.losses[-1]:.4f}" if status.losses and math.isfinite(status.losses[-1]) else "—"
    if status.running:
        return (
            f"Training… step **{status.step}**, loss {loss}, {100 * status.fraction:.0f}% of the budget, "
            f"{status.elapsed_s:.0f} s elapsed, about {status.eta_s:.0f} s left."
            + (f"\n\nTraining in {status.execution}." if status.execution else "")
        )
    if status.checkpoint is None:
        return "No training run yet."
    how = "stopped" if status.stopped_early else "finished"
    return (
        f"Training {how} at step **{status.step}** (loss {loss}); checkpoint saved. "
        "Use it as the live model or download it below."
    )


def _preview_image(status: JobStatus) -> np.ndarray | None:
    if status.preview is None:
        return None
    return pictures.image_grid(status.preview, nrow=10, scale=4, pad=2, pad_value=40)


def _train_config(minutes: Any, steps: Any, preset: str, batch: Any, lr: Any, drop: Any, seed: Any) -> TrainConfig:
    minutes_f = float(minutes) if minutes not in (None, "") else 0.0
    steps_i = int(float(steps)) if steps not in (None, "") else 0
    if minutes_f <= 0 and steps_i <= 0:
        raise ValueError("Give the run a time budget (minutes) or a number of steps.")
    if minutes_f > MAX_TRAIN_MINUTES:
        raise ValueError(f"In the app a run may last at most {MAX_TRAIN_MINUTES} minutes; use the CLI for more.")
    return TrainConfig(
        preset=preset,
        batch_size=int(float(batch)),
        lr=float(lr),
        max_minutes=minutes_f if minutes_f > 0 else None,
        max_steps=steps_i if steps_i > 0 else None,
        context_drop_prob=float(drop),
        seed=int(float(seed)),
        checkpoint_every_s=30.0,
        report_every=5,
    )


def train_model(
    minutes: Any,
    steps: Any,
    preset: str,
    batch: Any,
    lr: Any,
    drop: Any,
    seed: Any,
    start_from: str,
    progress: gr.Progress = gr.Progress(),
) -> Iterator[tuple[str, pd.DataFrame, np.ndarray | None]]:
    """Start a training run and stream its status, loss curve and preview grid until it ends."""
    try:
        config = _train_config(minutes, steps, preset, batch, lr, drop, seed)
        config.validate()
    except (ValueError, TypeError) as err:
        raise _user_error(str(err)) from None
    resume = None
    if start_from == RESUME_CHOICE:
        live = _live()
        resume = load_checkpoint(live.path, with_training_state=True) if live.path else live
    try:
        JOB.start(config, _digit_data(), resume)
    except TrainingBusyError as err:
        raise _user_error(str(err).capitalize() + ".") from None
    while True:
        status = JOB.status()
        progress(status.fraction, desc=f"step {status.step}")
        yield _training_message(status), _loss_frame(status), _preview_image(status)
        if not status.running:
            break
        time.sleep(TRAIN_POLL_S)


def stop_training() -> str:
    """Ask the running job to stop; it saves its last checkpoint within a step."""
    if not JOB.running:
        return "No training run is going."
    JOB.stop()
    return "Stopping after the current step…"


@friendly_errors
def use_trained_model() -> str:
    """Make the last trained checkpoint the live model."""
    try:
        loaded = JOB.load_result()
    except (TrainingBusyError, FileNotFoundError) as err:
        raise _user_error(str(err).capitalize() + ".") from None
    LIVE.swap(loaded)
    return "The trained model is now live. " + model_info()


@friendly_errors
def download_trained_model() -> str:
    """A zip of the last trained checkpoint."""
    status = JOB.status()
    if status.running or status.checkpoint is None:
        raise ValueError("No finished training run to download yet.")
    return str(zip_checkpoint(status.checkpoint, _workdir("downloads") / f"{status.checkpoint.name}.zip"))


# --- tab 4 ---


def _labels(classes: Any, per_class: Any) -> torch.Tensor:
    chosen = sorted({int(c) for c in (classes or [])})
    if not chosen:
        raise ValueError("Choose at least one digit class.")
    k = int(float(per_class))
    if not 1 <= k <= MAX_PER_CLASS:
        raise ValueError(f"Samples per class must lie in 1…{MAX_PER_CLASS}.")
    return validate_labels(chosen).repeat_interleave(k)


def _sampler_settings(w: Any, sampler: str, steps: Any, eta: Any, seed: Any) -> SamplerSettings:
    return SamplerSettings(w=float(w), sampler=sampler, steps=int(float(steps)), eta=float(eta), seed=_seed(seed))


def _classes_as_columns(n: int, per_class: int) -> np.ndarray:
    """Display order for class-major samples: one column per class, one row per sample of it."""
    return np.arange(n).reshape(n // per_class, per_class).T.reshape(-1)


def _verdict_sheet(images: np.ndarray, labels: np.ndarray, ncol: int) -> tuple[np.ndarray, float]:
    verdict = classify(_classifier(), digits.to_model_range(images))
    ok = verdict.predicted == labels
    captions = [f"{p} · {100 * c:.0f}%" for p, c in zip(verdict.predicted, verdict.confidence, strict=True)]
    colors = [OK_COLOR if good else BAD_COLOR for good in ok]
    return pictures.captioned_grid(images, captions, colors, ncol=ncol, scale=GRID_SCALE), float(ok.mean())


def sample_digits(
    classes: Any,
    per_class: Any,
    w: Any,
    sampler: str,
    steps: Any,
    eta: Any,
    seed: Any,
    progress: gr.Progress = gr.Progress(),
) -> Iterator[tuple[Any, Any, Any, str]]:
    """Sample, streaming the model's current x̂₀ while it works; then the verdict sheet, GIF and files."""
    try:
        labels = _labels(classes, per_class)
        settings = _sampler_settings(w, sampler, steps, eta, seed)
        loaded = _live()
        validate_settings(settings, loaded.schedule)
    except ValueError as err:
        raise _user_error(str(err)) from None
    k = int(float(per_class))
    order, columns = _classes_as_columns(len(labels), k), len(labels) // k
    total = loaded.schedule.num_steps if settings.sampler == "ddpm" else settings.steps
    trajectory = Trajectory(every=max(1, total // GIF_FRAMES))
    cancel = threading.Event()
    latest: dict[str, Any] = {}

    def on_step(info: StepInfo) -> None:
        if cancel.is_set():
            raise SamplingCancelled
        trajectory(info)
        latest["info"] = info

    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = sample(loaded.model, loaded.schedule, labels, settings, callback=on_step)
        except SamplingCancelled:
            outcome["cancelled"] = True
        except Exception as exc:  # reported below, never as a stack trace in the page
            LOG.exception("sampling failed")
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="ddpm-sampling", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(STREAM_EVERY_S)
            info = latest.get("info")
            if info is not None and thread.is_alive():
                progress((info.index + 1, info.total), desc="denoising", unit="steps")
                x0 = digits.to_uint8(info.pred_x0)[order]
                preview = pictures.image_grid(x0, nrow=columns, scale=GRID_SCALE, pad=1)
                yield preview, None, None, f"step {info.index + 1} of {info.total}: the model's current x̂₀"
    finally:
        if thread.is_alive():  # the page cancelled us (Cancel button or closed tab): stop the sampler too
            cancel.set()
    if "error" in outcome:
        raise _user_error("Sampling failed unexpectedly; please try again.")
    if "result" not in outcome:
        return
    result: SampleResult = outcome["result"]
    images = digits.to_uint8(result.images)
    labels_np = result.labels.numpy()
    sheet, accuracy = _verdict_sheet(images[order], labels_np[order], columns)
    folder = _workdir("samples")
    stem = f"digits-w{settings.w:g}-{settings.sampler}-seed{settings.seed}"
    png = pictures.save_png(sheet, folder / f"{stem}.png")
    npz = folder / f"{stem}.npz"
    np.savez_compressed(npz, images=images, labels=labels_np.astype(np.int64))
    frames = pictures.denoising_frames(
        [digits.to_uint8(x)[order] for x in trajectory.xs],
        [digits.to_uint8(x)[order] for x in trajectory.pred_x0s],
        columns,
        scale=GIF_SCALE,
    )
    gif = pictures.save_gif(frames, folder / f"{stem}.gif", fps=12, hold_last=1.5)
    summary = (
        f"{len(images)} digits in **{result.seconds:.2f} s** ({result.network_evaluations} network passes, "
        f"{settings.sampler}, w = {settings.w:g}, seed {settings.seed}). The classifier reads "
        f"**{100 * accuracy:.0f}%** as the class asked for (green: agrees, red: disagrees). "
        f"The GIF has {len(frames)} frames: x_t on the left, the model's x̂₀ on the right.\n\n"
        f"Network: {result.execution.describe()}."
    )
    yield sheet, str(gif), [str(png), str(gif), str(npz)], summary


def _parse_ws(text: Any) -> list[float]:
    try:
        ws = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError("Write the guidance weights as numbers separated by commas, e.g. 0, 1, 3, 5.") from None
    if not ws or len(ws) > MAX_SWEEP_WS:
        raise ValueError(f"Give between 1 and {MAX_SWEEP_WS} guidance weights.")
    return ws


@friendly_errors
def guidance_sweep(
    classes: Any, per_class: Any, ws_text: Any, sampler: str, steps: Any, eta: Any, seed: Any,
    progress: gr.Progress = gr.Progress(),
) -> tuple[np.ndarray, np.ndarray, str]:  # fmt: skip
    """The same starting noise at several w: a sheet (rows = w, columns = class) and accuracy/diversity vs w."""
    ws = _parse_ws(ws_text)
    labels = _labels(classes, per_class)
    loaded = _live()
    base = _sampler_settings(ws[0], sampler, steps, eta, seed)
    for w in ws:
        validate_settings(replace(base, w=w), loaded.schedule)
    noise = torch.randn(len(labels), 1, 28, 28, generator=torch.Generator().manual_seed(base.seed))
    k = int(float(per_class))
    first_of_class = np.arange(0, len(labels), k)
    rows, captions, accuracy, spread = [], [], [], []
    for w in progress.tqdm(ws, desc="sweeping w"):
        result = sample(loaded.model, loaded.schedule, labels, replace(base, w=w), noise=noise)
        verdict = classify(_classifier(), result.images)
        accuracy.append(float((verdict.predicted == result.labels.numpy()).mean()))
        spread.append(diversity(verdict.features, result.labels.numpy()))
        rows.append(digits.to_uint8(result.images)[first_of_class])
        captions.append(f"w = {w:g}: {100 * accuracy[-1]:.0f}% read correctly, diversity {spread[-1]:.2f}")
    sheet = pictures.labelled_rows(rows, captions, scale=GRID_SCALE)
    order = np.argsort(ws)
    plot = pictures.render_curves(
        np.array(ws)[order],
        [
            pictures.CurvePanel(
                "classifier accuracy", "accuracy", {"accuracy": np.array(accuracy)[order]}, ylim=(0, 1.02)
            ),
            pictures.CurvePanel(
                "diversity (mean feature distance within a class)", "diversity", {"diversity": np.array(spread)[order]}
            ),
        ],
        xlabel="guidance weight w",
    ).image
    table = "| w | accuracy | diversity |\n|---|---|---|\n" + "\n".join(
        f"| {w:g} | {100 * a:.0f}% | {d:.2f} |" for w, a, d in zip(ws, accuracy, spread, strict=True)
    )
    note = (
        f"Same starting noise for every row ({len(labels)} digits per w, {k} per class; the sheet shows the "
        "first of each class). Higher w usually raises accuracy and lowers diversity.\n\n" + table
    )
    return sheet, plot, note


COMPARISONS: tuple[tuple[str, int], ...] = (("ddpm", 0), ("ddim", 50), ("ddim", 10), ("dpmpp", 15), ("dpmpp", 6))


@friendly_errors
def compare_samplers(classes: Any, w: Any, seed: Any, progress: gr.Progress = gr.Progress()) -> tuple[np.ndarray, str]:
    """DDPM over all T, DDIM and DPM-Solver++ at several step counts, all from the same x_T."""
    labels = _labels(classes, 1)
    loaded = _live()
    noise = torch.randn(len(labels), 1, 28, 28, generator=torch.Generator().manual_seed(_seed(seed)))
    rows, captions, lines = [], [], []
    for name, steps in progress.tqdm(COMPARISONS, desc="sampling"):
        settings = SamplerSettings(w=float(w), sampler=name, steps=steps or 1, seed=_seed(seed))  # type: ignore[arg-type]
        validate_settings(settings, loaded.schedule)
        result = sample(loaded.model, loaded.schedule, labels, settings, noise=noise)
        verdict = classify(_classifier(), result.images)
        acc = float((verdict.predicted == result.labels.numpy()).mean())
        rows.append(digits.to_uint8(result.images))
        label = f"{name.upper()} {result.network_evaluations} steps"
        captions.append(f"{label}: {result.seconds:.2f} s, {100 * acc:.0f}% read correctly")
        lines.append(f"| {label} | {result.seconds:.2f} s | {100 * acc:.0f}% |")
    note = (
        "Every row starts from the same $x_T$. DDPM adds fresh noise at each of its T steps; DDIM with "
        "η = 0 and DPM-Solver++ are deterministic given $x_T$.\n\n| sampler | time | accuracy |\n|---|---|---|\n"
        + "\n".join(lines)
    )
    return pictures.labelled_rows(rows, captions, scale=GRID_SCALE), note


# --- model vs oracle (tab 2, when a model is live) ---

EPS_DISPLAY = 3.0  # ε maps are shown as ε/3 like tab 1
LOSS_CURVE_PER_CLASS = 30  # held-out digits per class for the loss-against-t plot (300 in all)
LOSS_CURVE_STEPS = 20  # evenly spaced t at which it is measured


@friendly_errors
def model_vs_oracle(digit: Any, index: Any, t: Any, seed: Any) -> tuple[np.ndarray, str]:
    """For a held-out digit at step t: true vs predicted ε, oracle vs model x̂₀, and the error maps."""
    loaded = _live()
    label, k = int(float(digit)), int(float(index))
    held = _digit_data().held_out
    of_class = np.flatnonzero(held.labels == label)
    if not 0 <= label <= 9 or not 0 <= k < len(of_class):
        raise ValueError(f"Choose a digit 0–9 and an example 0–{len(of_class) - 1}.")
    step = int(float(t))
    if not 0 <= step < loaded.schedule.num_steps:
        raise ValueError(f"t must lie in 0…{loaded.schedule.num_steps - 1} for this model.")
    x0 = digits.to_model_range(held.images[of_class[k] : of_class[k] + 1])
    view = compare_with_oracle(loaded.model, loaded.schedule, x0, label, step, seed=_seed(seed))

    def grey(x: torch.Tensor, scale: float = 1.0) -> np.ndarray:
        return digits.to_uint8(x / scale)[0]

    eps_err = (view.eps_model - view.eps_true).abs()
    x0_err = (view.x0_model.clamp(-1, 1) - view.x0).abs()
    tiles = [
        grey(view.x0), grey(view.x_t), grey(view.eps_true, EPS_DISPLAY), grey(view.eps_model, EPS_DISPLAY),
        grey(eps_err * 2 - 1, EPS_DISPLAY / 2), grey(view.x0), grey(view.x0_model), grey(x0_err - 1),
    ]  # fmt: skip
    captions = [
        "x₀", f"x_t (t={step})", "true ε", "model ε_θ", "|ε − ε_θ|", "oracle x̂₀ = x₀", "model x̂₀", "|x̂₀ − x₀|",
    ]  # fmt: skip
    strip = pictures.labelled_strip(tiles, captions, scale=4, font_size=13)
    note = (
        f"ε error (mean squared, per pixel): **{view.eps_mse:.4f}**; ℓ1 of the model's x̂₀ against x₀: "
        f"**{view.x0_l1:.4f}** (the oracle's is 0). Error maps: black = 0, white = 1.5 for ε and 1 for x̂₀."
    )
    return strip, note


@functools.lru_cache(maxsize=4)
def _loss_curve_for(version: int) -> np.ndarray:
    loaded = _live()
    held = _digit_data().held_out
    pick = np.concatenate([np.flatnonzero(held.labels == c)[:LOSS_CURVE_PER_CLASS] for c in range(10)])
    ts, losses, _ = loss_by_t(
        loaded.model,
        loaded.schedule,
        digits.to_model_range(held.images[pick]),
        torch.as_tensor(held.labels[pick]),
        num_t=LOSS_CURVE_STEPS,
    )
    panel = pictures.CurvePanel(
        f"ε-prediction loss on {len(pick)} held-out digits", "mean ‖ε − ε_θ‖² per pixel", {"loss": losses}, log_y=True
    )
    return pictures.render_curves(ts, [panel], xlabel=f"t (T = {loaded.schedule.num_steps})").image


@friendly_errors
def model_loss_curve() -> np.ndarray:
    """The live model's L_simple (eq. 14) against t over the held-out digits."""
    _live()
    return _loss_curve_for(LIVE.version)


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


MODEL_ORACLE_INTRO = r"""
#### The trained model next to the oracle
The oracle above *knows* $\epsilon$. The network only sees $x_t$, $t$ and the class, and has to guess it.
Pick a held-out digit (never seen in training) and a step of the model's own schedule to compare the two.
"""

TRAIN_INTRO = r"""
### A class-conditional ε-model for digits
The network $\epsilon_\theta(x_t, t, c)$ learns to predict the noise in $x_t$, minimising
$\lVert \epsilon - \epsilon_\theta(x_t, t, c) \rVert^2$ (eq. 14). Now and then the class $c$ is replaced by
"no class", so the same network also learns the unconditional $\epsilon_\theta(x_t, t, \varnothing)$ that
guidance needs. Training here uses the 4,000 real MNIST digits that ship with the app and this server's CPU;
one run at a time for everyone using this server. The live model (what the Sample tab uses) changes only
when you load one or click *Use the trained model*.
"""

SAMPLE_INTRO = r"""
### Sampling with classifier-free guidance
Each step asks the network twice, with and without the class, and mixes the answers:
$$\tilde\epsilon = w\,\epsilon_\theta(x_t, c) + (1-w)\,\epsilon_\theta(x_t, \varnothing).$$
$w = 0$ ignores the class, $w = 1$ is the plain conditional model, $w > 1$ pushes harder toward the class
(sharper, more readable, less varied digits). Papers often write $(1+w')\,\epsilon_c - w'\,\epsilon_\varnothing$:
that is the same thing with $w = 1 + w'$. Under each digit: what the project's classifier reads and how sure it is.
"""

SAMPLER_CHOICES = [("DPM-Solver++ (2M)", "dpmpp"), ("DDIM", "ddim"), ("DDPM, all T steps", "ddpm")]


def _model_oracle_section() -> None:
    """Tab 2, below the oracle: the live model's ε and x̂₀ against the truth, and its loss against t."""
    gr.Markdown(MODEL_ORACLE_INTRO, latex_delimiters=LATEX)
    with gr.Row():
        digit = gr.Slider(0, 9, value=3, step=1, label="digit", elem_id="mvo-digit")
        index = gr.Slider(0, 99, value=0, step=1, label="held-out example", elem_id="mvo-index")
        step = gr.Slider(0, 249, value=100, step=1, label="step t (model's schedule, T = 250)", elem_id="mvo-t")
        seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="seed", elem_id="mvo-seed")
    strip = _output_image("model vs oracle", fmt="png")
    note = gr.Markdown()
    loss_button = gr.Button("Plot the model's loss against t over 300 held-out digits")
    loss_plot = _output_image("ε-loss against t", fmt="png")
    inputs = [digit, index, step, seed]
    gr.on(
        [b.release for b in (digit, index, step)] + [seed.submit],
        model_vs_oracle, inputs, [strip, note],
        api_name="model_vs_oracle", trigger_mode="always_last", show_progress="minimal",
    )  # fmt: skip
    loss_button.click(model_loss_curve, None, loss_plot, api_name="model_loss_curve", concurrency_limit=1)


def _train_tab(demo: gr.Blocks) -> None:
    """Tab 3: which model is live, load/download a checkpoint, or train one with live progress."""
    gr.Markdown(TRAIN_INTRO, latex_delimiters=LATEX)
    info = gr.Markdown(elem_id="model-info")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("#### Load or download a checkpoint")
            upload = gr.File(
                file_count="multiple", file_types=[".safetensors", ".json", ".zip"], type="filepath",
                label="model.safetensors + config.json, or one .zip of the folder", elem_id="ckpt-upload",
            )  # fmt: skip
            load_button = gr.Button("Load and make live", elem_id="ckpt-load")
            download_button = gr.Button("Download the live model (.zip)")
            download_file = gr.File(label="live model", interactive=False)
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("#### Train")
            with gr.Row():
                minutes = gr.Number(1, minimum=0, maximum=MAX_TRAIN_MINUTES, label="minutes (0 = no limit)",
                                    elem_id="train-minutes")  # fmt: skip
                steps = gr.Number(0, precision=0, minimum=0, label="steps (0 = no limit)", elem_id="train-steps")
            with gr.Row():
                preset = gr.Dropdown(list(WIDTH_PRESETS), value="small", label="width", elem_id="train-preset")
                batch = gr.Slider(16, 256, value=128, step=16, label="batch size")
            with gr.Row():
                lr = gr.Number(2e-3, minimum=1e-6, maximum=1.0, label="learning rate")
                drop = gr.Slider(0, 0.5, value=0.15, step=0.05, label="context-drop probability")
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="seed")
                start_from = gr.Radio([FRESH_CHOICE, RESUME_CHOICE], value=FRESH_CHOICE, label="start")
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
    status = gr.Markdown(elem_id="train-status")
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", title="training loss", height=260, elem_id="train-loss")
        preview = gr.Image(label="preview: one digit per class, EMA weights", format="png", interactive=False,
                           elem_id="train-preview")  # fmt: skip
    with gr.Row():
        use = gr.Button("Use the trained model", elem_id="train-use")
        download_trained = gr.Button("Download the trained model (.zip)")
    trained_file = gr.File(label="trained model", interactive=False)

    demo.load(model_info, None, info, api_name="model_info")
    load_button.click(load_model, upload, info, api_name="load_model", concurrency_limit=1)
    download_button.click(download_model, None, download_file, api_name="download_model")
    run = start.click(lambda: gr.update(interactive=False), None, start, queue=False, api_visibility="private")
    run = run.then(
        train_model, [minutes, steps, preset, batch, lr, drop, seed, start_from], [status, loss_plot, preview],
        api_name="train_model", concurrency_limit=4, concurrency_id="train",
    )  # fmt: skip
    run.then(lambda: gr.update(interactive=True), None, start, queue=False, api_visibility="private")
    stop.click(stop_training, None, status, api_name="stop_training", concurrency_limit=None)
    use.click(use_trained_model, None, info, api_name="use_trained_model", concurrency_limit=1)
    download_trained.click(download_trained_model, None, trained_file, api_name="download_trained_model")


def _sample_tab() -> None:
    """Tab 4: guided sampling with a verdict sheet and GIF, a guidance sweep and a sampler comparison."""
    gr.Markdown(SAMPLE_INTRO, latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            classes = gr.CheckboxGroup(CLASS_CHOICES, value=CLASS_CHOICES, label="digits", elem_id="sample-classes")
            per_class = gr.Slider(1, MAX_PER_CLASS, value=1, step=1, label="samples per digit")
            w = gr.Slider(0, 8, value=DEFAULT_W, step=0.1, label="guidance weight w", elem_id="sample-w")
            sampler = gr.Radio(SAMPLER_CHOICES, value="dpmpp", label="sampler", elem_id="sample-sampler")
            steps = gr.Slider(1, 250, value=SamplerSettings.steps, step=1, label="steps (DDIM and DPM-Solver++)")
            eta = gr.Slider(0, 1, value=0, step=0.05, label="DDIM η (0 deterministic, 1 DDPM-like)")
            seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="seed")
            with gr.Row():
                go = gr.Button("Sample", variant="primary", elem_id="sample-go")
                cancel = gr.Button("Cancel", elem_id="sample-cancel")
        with gr.Column(scale=2):
            sheet = gr.Image(label="samples with the classifier's verdict", format="png", interactive=False,
                             elem_id="sample-sheet")  # fmt: skip
            summary = gr.Markdown(elem_id="sample-summary")
            gif = gr.Image(label="denoising: x_t (left) and the model's x̂₀ (right)", type="filepath",
                           interactive=False, elem_id="sample-gif")  # fmt: skip
            files = gr.File(label="downloads: PNG, GIF, npz", file_count="multiple", interactive=False)
    with gr.Accordion("Guidance sweep: the same noise at several w", open=False):
        with gr.Row():
            ws = gr.Textbox("0, 1, 2, 3, 5, 8", label="w values (comma-separated)", elem_id="sweep-ws")
            sweep_per_class = gr.Slider(2, MAX_PER_CLASS, value=4, step=1, label="samples per digit (for diversity)")
            sweep_go = gr.Button("Sweep", elem_id="sweep-go")
        sweep_sheet = _output_image("rows: w, columns: digits", fmt="png")
        with gr.Row():
            sweep_plot = _output_image("accuracy and diversity against w", fmt="png")
            sweep_note = gr.Markdown()
    with gr.Accordion("Same noise, different samplers", open=False):
        compare_go = gr.Button("Compare DDPM, DDIM and DPM-Solver++", elem_id="compare-go")
        compare_sheet = _output_image("one row per sampler", fmt="png")
        compare_note = gr.Markdown(latex_delimiters=LATEX)

    event = go.click(
        sample_digits, [classes, per_class, w, sampler, steps, eta, seed], [sheet, gif, files, summary],
        api_name="sample_digits", concurrency_limit=2, concurrency_id="sampling",
    )  # fmt: skip
    cancel.click(None, None, None, cancels=[event])
    sweep_inputs = [classes, sweep_per_class, ws, sampler, steps, eta, seed]
    sweep_go.click(
        guidance_sweep, sweep_inputs, [sweep_sheet, sweep_plot, sweep_note],
        api_name="guidance_sweep", concurrency_limit=2, concurrency_id="sampling",
    )  # fmt: skip
    compare_go.click(
        compare_samplers, [classes, w, seed], [compare_sheet, compare_note],
        api_name="compare_samplers", concurrency_limit=2, concurrency_id="sampling",
    )  # fmt: skip


def build_demo() -> gr.Blocks:
    """The whole app: one gr.Tabs with a function per tab."""
    with gr.Blocks(title="DDPM Playground", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# DDPM Playground\nDenoising diffusion, one equation at a time.")
        with gr.Tabs():
            with gr.Tab("Forward noise", id="forward"):
                forward_inputs = _forward_tab(demo)
            with gr.Tab("Oracle reconstruction", id="oracle") as oracle_tab:
                _oracle_tab(demo, oracle_tab, forward_inputs)
                _model_oracle_section()
            with gr.Tab("Train or load", id="train"):
                _train_tab(demo)
            with gr.Tab("Sample", id="sample"):
                _sample_tab()
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
    try:  # a mistyped DDPM_PLAYGROUND_PRECISION / _RUNTIME stops the launch, not every later request
        default_precision(), default_runtime()
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    threading.Thread(target=warm_up, name="ddpm-warm-up", daemon=True).start()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options())
