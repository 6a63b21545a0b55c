"""Tab 4, "Sample": digits per class under a classifier-free-guidance slider, with the classifier's verdict.

The main button streams the model's current x̂₀ while it samples, then shows a verdict sheet, a two-track
denoising GIF and the files. Two accordions below: the same noise at several w (a guidance sweep), and
the same noise through every sampler.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import gradio as gr
import numpy as np
import torch

from ddpm_core import pictures
from ddpm_core.classifier import classify, diversity
from ddpm_core.data import to_model_range
from ddpm_core.image_io import to_uint8
from ddpm_core.sampling import (
    MID_INTERVAL,
    NO_INTERVAL,
    BackgroundSampling,
    SamplerSettings,
    Trajectory,
    sample,
    sampling_steps,
    starting_noise,
    validate_labels,
    validate_settings,
)
from ddpm_ui import state
from ddpm_ui.common import (
    GRID_SCALE,
    LATEX,
    LOG,
    friendly_errors,
    output_image,
    parse_seed,
    request_folder,
    seed_box,
    user_error,
)

CLASS_CHOICES = [str(c) for c in range(10)]
SAMPLER_CHOICES = [("DPM-Solver++ (2M)", "dpmpp"), ("DDIM", "ddim"), ("DDPM, all T steps", "ddpm")]
DEFAULT_W = SamplerSettings.w
MAX_PER_CLASS = 8
MAX_SWEEP_WS = 8
OK_COLOR, BAD_COLOR = (22, 120, 50), (200, 30, 30)
GIF_SCALE = 2
STREAM_EVERY_S = 0.3  # how often a running sampler's x̂₀ is streamed to the page
COMPARISONS: tuple[tuple[str, int], ...] = (("ddpm", 0), ("ddim", 50), ("ddim", 10), ("dpmpp", 15), ("dpmpp", 6))

INTRO = r"""
### Sampling with classifier-free guidance
Each step asks the network twice, with and without the class, and mixes the answers:
$$\tilde\epsilon = w\,\epsilon_\theta(x_t, c) + (1-w)\,\epsilon_\theta(x_t, \varnothing).$$
$w = 0$ ignores the class, $w = 1$ is the plain conditional model, $w > 1$ pushes harder toward the class
(sharper, more readable, less varied digits). Papers often write $(1+w')\,\epsilon_c - w'\,\epsilon_\varnothing$:
that is the same thing with $w = 1 + w'$. Under each digit: what the project's classifier reads and how sure it is.
"""


def _labels(classes: Any, per_class: Any) -> torch.Tensor:
    chosen = sorted({int(c) for c in (classes or [])})
    if not chosen:
        raise ValueError("Choose at least one digit class.")
    k = int(float(per_class))
    if not 1 <= k <= MAX_PER_CLASS:
        raise ValueError(f"Samples per class must lie in 1…{MAX_PER_CLASS}.")
    return validate_labels(chosen).repeat_interleave(k)


def _sampler_settings(
    w: Any, sampler: str, sampler_steps: Any, eta: Any, seed: Any, mid_guidance: Any = True
) -> SamplerSettings:
    return SamplerSettings(
        w=float(w), sampler=sampler, steps=int(float(sampler_steps)), eta=float(eta), seed=parse_seed(seed),
        guidance_interval=MID_INTERVAL if mid_guidance else NO_INTERVAL,
    )  # type: ignore[arg-type]  # fmt: skip


def _classes_as_columns(n: int, per_class: int) -> np.ndarray:
    """Display order for class-major samples: one column per class, one row per sample of it."""
    return np.arange(n).reshape(n // per_class, per_class).T.reshape(-1)


def _verdict_sheet(images: np.ndarray, labels: np.ndarray, ncol: int) -> tuple[np.ndarray, float]:
    """The uint8 digits with the classifier's reading under each (green: as asked, red: not), and the accuracy.

    The classifier reads the digits as saved (uint8), so the verdict is the one a download would get.
    """
    verdict = classify(state.classifier(), to_model_range(images))
    ok = verdict.correct(labels)
    captions = [f"{p} · {100 * c:.0f}%" for p, c in zip(verdict.predicted, verdict.confidence, strict=True)]
    colors = [OK_COLOR if good else BAD_COLOR for good in ok]
    sheet = pictures.captioned_grid(images, captions, colors, ncol=ncol, scale=GRID_SCALE)
    return sheet, float(ok.mean())


def sample_digits(
    classes: Any,
    per_class: Any,
    w: Any,
    sampler: str,
    sampler_steps: Any,
    eta: Any,
    seed: Any,
    mid_guidance: Any = True,
    progress: gr.Progress = gr.Progress(),
) -> Iterator[tuple[Any, Any, Any, str]]:
    """Sample, streaming the model's current x̂₀ while it works; then the verdict sheet, GIF and files."""
    try:
        labels = _labels(classes, per_class)
        settings = _sampler_settings(w, sampler, sampler_steps, eta, seed, mid_guidance)
        loaded = state.live()
        validate_settings(settings, loaded.schedule)
    except ValueError as err:
        raise user_error(str(err)) from None
    k = int(float(per_class))
    order, columns = _classes_as_columns(len(labels), k), len(labels) // k
    trajectory = Trajectory.for_frames(sampling_steps(settings, loaded.schedule))
    job = BackgroundSampling(loaded.model, loaded.schedule, labels, settings, callback=trajectory)
    try:
        for info in job.updates(STREAM_EVERY_S):
            progress((info.index + 1, info.total), desc="denoising", unit="steps")
            preview = pictures.image_grid(to_uint8(info.pred_x0)[order], nrow=columns, scale=GRID_SCALE, pad=1)
            yield preview, None, None, f"step {info.index + 1} of {info.total}: the model's current x̂₀"
    finally:
        job.cancel()  # the page went away (Cancel button or closed tab): stop the sampler too; no-op once done
    try:
        result = job.outcome()
    except Exception:
        LOG.exception("sampling failed")
        raise user_error("Sampling failed unexpectedly; please try again.") from None
    if result is None:
        return
    images, labels_np = to_uint8(result.images), result.labels.numpy()
    sheet, accuracy = _verdict_sheet(images[order], labels_np[order], columns)
    folder = request_folder("samples")
    stem = f"digits-w{settings.w:g}-{settings.sampler}-seed{settings.seed}"
    png = pictures.save_png(sheet, folder / f"{stem}.png")
    npz = folder / f"{stem}.npz"
    np.savez_compressed(npz, images=images, labels=labels_np.astype(np.int64))
    frames = pictures.denoising_frames(
        [to_uint8(x)[order] for x in trajectory.xs], [to_uint8(x)[order] for x in trajectory.pred_x0s],
        columns, scale=GIF_SCALE,
    )  # fmt: skip
    gif = pictures.save_gif(frames, folder / f"{stem}.gif", fps=12, hold_last=1.5)
    summary = (
        f"{len(images)} digits in **{result.seconds:.2f} s** ({result.network_evaluations} network passes, "
        f"{settings.sampler}, w = {settings.w:g}{_interval_text(settings)}, seed {settings.seed}). "
        "The classifier reads "
        f"**{100 * accuracy:.0f}%** as the class asked for (green: agrees, red: disagrees). "
        f"The GIF has {len(frames)} frames: x_t on the left, the model's x̂₀ on the right.\n\n"
        f"Network: {result.execution.describe()}."
    )
    yield sheet, str(gif), [str(png), str(gif), str(npz)], summary


def _interval_text(settings: SamplerSettings) -> str:
    lo, hi = settings.guidance_interval
    return "" if settings.guidance_interval == NO_INTERVAL else f", guided only where {lo:g} < σ ≤ {hi:g}"


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
    classes: Any, per_class: Any, ws_text: Any, sampler: str, sampler_steps: Any, eta: Any, seed: Any,
    mid_guidance: Any = True, progress: gr.Progress = gr.Progress(),
) -> tuple[np.ndarray, np.ndarray, str]:  # fmt: skip
    """The same starting noise at several w: a sheet (rows = w, columns = class) and accuracy/diversity vs w."""
    ws = _parse_ws(ws_text)
    labels = _labels(classes, per_class)
    loaded = state.live()
    base = _sampler_settings(ws[0], sampler, sampler_steps, eta, seed, mid_guidance)
    for w in ws:
        validate_settings(replace(base, w=w), loaded.schedule)
    noise = starting_noise(loaded.model, len(labels), base.seed)
    k = int(float(per_class))
    first_of_class = np.arange(0, len(labels), k)
    rows, captions, accuracy, spread = [], [], [], []
    for w in progress.tqdm(ws, desc="sweeping w"):
        result = sample(loaded.model, loaded.schedule, labels, replace(base, w=w), noise=noise)
        verdict = classify(state.classifier(), result.images)
        accuracy.append(verdict.accuracy(result.labels))
        spread.append(diversity(verdict.features, result.labels.numpy()))
        rows.append(to_uint8(result.images)[first_of_class])
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


@friendly_errors
def compare_samplers(classes: Any, w: Any, seed: Any, progress: gr.Progress = gr.Progress()) -> tuple[np.ndarray, str]:
    """DDPM over all T, DDIM and DPM-Solver++ at several step counts, all from the same x_T."""
    labels = _labels(classes, 1)
    loaded = state.live()
    seed = parse_seed(seed)
    noise = starting_noise(loaded.model, len(labels), seed)
    rows, captions, lines = [], [], []
    for name, steps in progress.tqdm(COMPARISONS, desc="sampling"):
        settings = SamplerSettings(w=float(w), sampler=name, steps=steps or 1, seed=seed)  # type: ignore[arg-type]
        validate_settings(settings, loaded.schedule)
        result = sample(loaded.model, loaded.schedule, labels, settings, noise=noise)
        acc = classify(state.classifier(), result.images).accuracy(result.labels)
        rows.append(to_uint8(result.images))
        label = f"{name.upper()} {result.network_evaluations} steps"
        captions.append(f"{label}: {result.seconds:.2f} s, {100 * acc:.0f}% read correctly")
        lines.append(f"| {label} | {result.seconds:.2f} s | {100 * acc:.0f}% |")
    note = (
        "Every row starts from the same $x_T$. DDPM adds fresh noise at each of its T steps; DDIM with "
        "η = 0 and DPM-Solver++ are deterministic given $x_T$.\n\n| sampler | time | accuracy |\n|---|---|---|\n"
        + "\n".join(lines)
    )
    return pictures.labelled_rows(rows, captions, scale=GRID_SCALE), note


def build_tab() -> None:
    """Lay out tab 4 and wire its events."""
    gr.Markdown(INTRO, latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            classes = gr.CheckboxGroup(CLASS_CHOICES, value=CLASS_CHOICES, label="digits", elem_id="sample-classes")
            per_class = gr.Slider(1, MAX_PER_CLASS, value=1, step=1, label="samples per digit")
            w = gr.Slider(0, 8, value=DEFAULT_W, step=0.1, label="guidance weight w", elem_id="sample-w")
            sampler = gr.Radio(SAMPLER_CHOICES, value="dpmpp", label="sampler", elem_id="sample-sampler")
            sampler_steps = gr.Slider(1, 250, value=SamplerSettings.steps, step=1,
                                      label="sampler steps (DDIM and DPM-Solver++)")  # fmt: skip
            eta = gr.Slider(0, 1, value=0, step=0.05, label="DDIM η (0 deterministic, 1 DDPM-like)")
            mid_guidance = gr.Checkbox(
                True, label=f"guide only at middle noise levels ({MID_INTERVAL[0]:g} < σ ≤ {MID_INTERVAL[1]:g})",
                info="Kynkäänniemi et al. 2024: guidance at high noise costs variety, at low noise it does little",
                elem_id="sample-mid-guidance",
            )  # fmt: skip
            seed = seed_box()
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
        sweep_sheet = output_image("rows: w, columns: digits", fmt="png")
        with gr.Row():
            sweep_plot = output_image("accuracy and diversity against w", fmt="png")
            sweep_note = gr.Markdown()
    with gr.Accordion("Same noise, different samplers", open=False):
        compare_go = gr.Button("Compare DDPM, DDIM and DPM-Solver++", elem_id="compare-go")
        compare_sheet = output_image("one row per sampler", fmt="png")
        compare_note = gr.Markdown(latex_delimiters=LATEX)

    sampling = {"concurrency_limit": 2, "concurrency_id": "sampling"}
    event = go.click(
        sample_digits, [classes, per_class, w, sampler, sampler_steps, eta, seed, mid_guidance],
        [sheet, gif, files, summary], api_name="sample_digits", **sampling,
    )  # fmt: skip
    cancel.click(None, None, None, cancels=[event])
    sweep_go.click(
        guidance_sweep, [classes, sweep_per_class, ws, sampler, sampler_steps, eta, seed, mid_guidance],
        [sweep_sheet, sweep_plot, sweep_note], api_name="guidance_sweep", **sampling,
    )  # fmt: skip
    compare_go.click(
        compare_samplers, [classes, w, seed], [compare_sheet, compare_note], api_name="compare_samplers", **sampling
    )
