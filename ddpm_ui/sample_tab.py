"""Tab 4, "Sample": images per class under a classifier-free-guidance slider, with the classifier's verdict.

At the top, live guidance: a few-step student distilled from the shipped digit model takes w as an input, so
dragging the w slider re-renders the same ten digits (same starting noise) as it moves; everyone dragging
at once shares one batch (Gradio's ``batch=True``). One click shows the teacher's full sampler beside it.
The student knows digits only; on a page that samples Fashion-MNIST the section says so and still draws digits.
Below, the page's dataset (digits or Fashion-MNIST; the same choice as in tab 3) and three presets that fill
the sampler controls; the main button streams the model's current x̂₀ while it samples, then shows a verdict
sheet, a two-track denoising GIF and the files. Two accordions: the same noise at several w (a guidance sweep),
and the same noise through every sampler; on digits both include the student.

Every class is named with its dataset's words: "7" for digits, "Sneaker" for Fashion-MNIST (short names on
the pictures, full ones in the text). The page's dataset lives in :mod:`ddpm_ui.state`; this tab sets it only
through the dataset radio's ``.input`` and follows it through the model card's ``.change`` (tab 3's card,
rewritten whenever the page's model or dataset changes).

Accessibility: every verdict carries a ✓ or ✗ besides its colour, and every button-driven picture has its
verdicts or captions as text beside it (a Markdown table) and an alt text that follows the picture: the
handlers are :func:`~ddpm_ui.common.picture_view`s, whose page twins set each picture's alt text in the same
update (the API endpoints return the pictures alone). The live grid, drawn by a batched event, takes its alt
text from its note instead (:func:`live_alt_text`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr
import numpy as np
import torch

from ddpm_core import pictures
from ddpm_core.background import Progress, Report
from ddpm_core.checkpoints import LoadedModel
from ddpm_core.classifier import classify, diversity
from ddpm_core.data import DATASETS, DEFAULT_DATASET, DIGITS, DatasetInfo, dataset_info, to_model_range
from ddpm_core.distillation import student_w_range
from ddpm_core.image_io import to_uint8
from ddpm_core.sampling import (
    MID_INTERVAL,
    NO_INTERVAL,
    SAMPLERS,
    W_MAX,
    W_MIN,
    SampleRequest,
    SampleResult,
    SamplerSettings,
    StepInfo,
    Trajectory,
    network_images_needed,
    sample,
    sample_together,
    sampling_steps,
    starting_noise,
    validate_labels,
    validate_settings,
)
from ddpm_core.unet import takes_guidance
from ddpm_ui import model_card as page_card
from ddpm_ui import state
from ddpm_ui.common import (
    GRID_SCALE,
    INVALID_INPUT,
    LATEX,
    LOG,
    InputError,
    Picture,
    class_choices,
    dataset_radio,
    friendly_errors,
    next_seed,
    output_image,
    parse_float,
    parse_int,
    parse_seed,
    picture_events,
    picture_view,
    readable_message,
    request_folder,
    seed_box,
)
from ddpm_ui.heavy import check_work, watch

CLASS_CHOICES = [str(c) for c in range(10)]
SAMPLER_CHOICES = [("DPM-Solver++ (2M)", "dpmpp"), ("DDIM", "ddim"), ("DDPM, all T steps", "ddpm")]
DEFAULT_W = DIGITS.default_w  # the page starts on digits; choosing a dataset moves w to that dataset's default_w
MAX_PER_CLASS = 8
MAX_SAMPLER_STEPS = 1000  # the most any schedule here has (validate_settings checks against T)
MAX_SWEEP_WS = 8
OK_COLOR, BAD_COLOR = (22, 120, 50), (200, 30, 30)
OK_MARK, BAD_MARK = "✓", "✗"  # U+2713, U+2717: DejaVu Sans draws both (headless machines have no emoji font)
GIF_SCALE = 2
COMPARISONS: tuple[tuple[str, int], ...] = (("ddpm", 0), ("ddim", 50), ("ddim", 10), ("dpmpp", 15), ("dpmpp", 6))
LIVE_DEFAULT_W = 3.0
LIVE_MAX_BATCH = 16  # requests (people) sampled together in one batch
LIVE_SCALE = 3
STUDENT_LABEL = "distilled student"
MODEL_LABEL = "this page's model"


@dataclass(frozen=True)
class Preset:
    """A named setting of the Sample controls; ``gr.Examples`` fills them in and nothing runs until Sample."""

    label: str
    w: float
    sampler: str
    steps: int
    eta: float
    mid_guidance: bool
    per_class: int
    why: str  # one line for the page: what it shows, with the measured numbers


# Measured on the shipped digit model (README, "Digits model" and "Live guidance"; 1,000 samples per w, seed 1234):
# guided at every step, w = 3 gives 99.9% read correctly but a Fréchet distance of 6.04 (typical, alike
# digits); guided only where 1 < σ ≤ 2, w = 2 gives 99.1% at 3.19, near the real-vs-real floor of 2.38.
# 200 samples (seed 1) agree: mean within-class feature distance 5.79 sharp against 7.11 diverse; full
# DDPM at w = 4 read 100% correctly with 301 network passes per digit (T = 250, the guided steps
# twice) against 11 for DPM-Solver++'s 10 steps.
# The labels keep their names (links and the keyboard test use them); the lines say which numbers are digits'.
PRESETS: tuple[Preset, ...] = (
    Preset("sharp digits", 3.0, "dpmpp", 10, 0.0, False, 4,
           "w = 3 at every step: bold, typical samples, alike within a class (on digits, 99.9% read correctly)"),
    Preset("diverse digits", 2.0, "dpmpp", 10, 0.0, True, 4,
           "w = 2 at middle noise only: varied samples, closest to real ones (on digits, 99.1% read correctly)"),
    Preset("full DDPM", DEFAULT_W, "ddpm", SamplerSettings.steps, 1.0, True, 1,
           f"the paper's ancestral sampler over all T steps at w = {DEFAULT_W:g}: ~27× the network passes"),
)  # fmt: skip
PRESETS_NOTE = "The percentages were measured on the shipped digit model; the presets work the same on Fashion-MNIST."

LIVE_INTRO = r"""
### Live guidance: drag w
A student network, distilled from the shipped digit model, takes $w$ as an input and gives the guided
$\tilde\epsilon_w$ in **one** pass, in STEPS steps instead of the teacher's 10 steps × 2 passes
([Meng et al. 2023](https://arxiv.org/abs/2210.03142)). So the same ten starting noises can be redrawn while
you drag: watch each digit get thicker, more typical and less varied as $w$ grows.
"""

INTRO = r"""
### Sampling with classifier-free guidance
Each step asks the network twice, with and without the class, and mixes the answers:
$$\tilde\epsilon = w\,\epsilon_\theta(x_t, c) + (1-w)\,\epsilon_\theta(x_t, \varnothing).$$
$w = 0$ ignores the class, $w = 1$ is the plain conditional model, $w > 1$ pushes harder toward the class
(sharper, more readable, less varied samples). Papers often write $(1+w')\,\epsilon_c - w'\,\epsilon_\varnothing$:
that is the same thing with $w = 1 + w'$. Under each sample: what the project's classifier of that dataset reads
and how sure it is. The dataset is the page's, the same choice as in tab 3.
""" + (
    "Choosing a dataset moves $w$ to where its shipped model's samples are read as asked at least 95% of the time: "
    + ", ".join(f"{d.default_w:g} for {d.title}" for d in DATASETS.values())
    + ".\n"
)

LIVE_DIGITS_ONLY = (
    "*Live guidance is distilled for digits: its student learnt from the shipped digit model only, so this "
    "section draws digits even though this page samples **{title}** below.*"
)


def _classes(classes: Any, info: DatasetInfo = DIGITS) -> list[int]:
    """The classes ticked on the page (the strings "0" … "9", whatever the dataset calls them), checked."""
    noun = "digit class" if info.numbered else "class"
    if classes is not None and not isinstance(classes, (list, tuple)):
        raise InputError(f"The {noun}es are a list of the labels 0–9.")
    chosen = sorted({parse_int(c, f"Each {noun}", 0, 9) for c in (classes or [])})
    if not chosen:
        raise InputError(f"Choose at least one {noun}.")
    return chosen


def _labels(classes: Any, per_class: Any, info: DatasetInfo = DIGITS) -> torch.Tensor:
    k = parse_int(per_class, "Samples per class", 1, MAX_PER_CLASS)
    return validate_labels(_classes(classes, info)).repeat_interleave(k)


def _sampler_settings(
    w: Any, sampler: Any, sampler_steps: Any, eta: Any, seed: Any, mid_guidance: Any = True
) -> SamplerSettings:
    if sampler not in SAMPLERS:
        raise InputError(f"Choose one of the samplers {', '.join(SAMPLERS)}.")
    return SamplerSettings(
        w=parse_float(w, "The guidance weight w", W_MIN, W_MAX), sampler=sampler,
        steps=parse_int(sampler_steps, "The number of sampler steps", 1, MAX_SAMPLER_STEPS),
        eta=parse_float(eta, "DDIM η", 0.0, 1.0), seed=parse_seed(seed),
        guidance_interval=MID_INTERVAL if mid_guidance else NO_INTERVAL,
    )  # fmt: skip


def _classes_as_columns(n: int, per_class: int) -> np.ndarray:
    """Display order for class-major samples: one column per class, one row per sample of it."""
    return np.arange(n).reshape(n // per_class, per_class).T.reshape(-1)


def verdict_caption(asked: int, read: int, confidence: float, info: DatasetInfo = DIGITS) -> str:
    """The short verdict drawn under a sample: "✓ 3 · 98%" or "✗ Sneaker · 61%" (the mark, not only the colour)."""
    return f"{OK_MARK if read == asked else BAD_MARK} {info.short_names[read]} · {100 * confidence:.0f}%"


def verdict_text(asked: int, read: int, confidence: float, info: DatasetInfo = DIGITS) -> str:
    """The verdict as a sentence fragment for the page's text: "✓ 3 (98%)" or "✗ read as Ankle boot (61%)"."""
    if read == asked:
        return f"{OK_MARK} {info.class_names[read]} ({100 * confidence:.0f}%)"
    return f"{BAD_MARK} read as {info.class_names[read]} ({100 * confidence:.0f}%)"


def misread_phrase(asked: int, read: int, info: DatasetInfo = DIGITS) -> str:
    """One misreading in words: "a 7 read as 1", "a Shirt read as T-shirt/top", "an Ankle boot read as Sneaker"."""
    name = info.class_names[asked]
    article = "an" if name[0] in "AEIOU" else "a"  # digits keep "a" ("a 8"), as the page always wrote them
    return f"{article} {name} read as {info.class_names[read]}"


@dataclass(frozen=True)
class VerdictSheet:
    """The classifier's verdicts on class-major samples: the picture, and the same verdicts as text."""

    image: np.ndarray  # RGB uint8: one column per class, each sample with its verdict underneath
    accuracy: float  # share read as the class asked for
    table: str  # Markdown: one row per class asked, one cell per sample
    misread: tuple[str, ...]  # "a 7 read as 1", one per sample the classifier read as another class


def _verdict_sheet(images: np.ndarray, labels: np.ndarray, per_class: int, info: DatasetInfo = DIGITS) -> VerdictSheet:
    """Classify uint8 samples of ``info``'s dataset, drawn class by class (``per_class`` of each), and lay out the
    verdicts of that dataset's classifier.

    The classifier reads the samples as saved (uint8), so the verdict is the one a download would get.
    """
    verdict = classify(state.classifier(info.name), to_model_range(images))
    asked, read, sure = labels.tolist(), verdict.predicted.tolist(), verdict.confidence.tolist()
    order = _classes_as_columns(len(images), per_class)
    sheet = pictures.captioned_grid(
        images[order], [verdict_caption(asked[i], read[i], sure[i], info) for i in order],
        [OK_COLOR if read[i] == asked[i] else BAD_COLOR for i in order],
        ncol=len(images) // per_class, scale=GRID_SCALE,
    )  # fmt: skip
    heads = ["classifier's reading"] if per_class == 1 else [f"sample {j + 1}" for j in range(per_class)]
    rows = [
        f"| {info.class_names[asked[start]]} | "
        + " | ".join(verdict_text(asked[i], read[i], sure[i], info) for i in range(start, start + per_class)) + " |"
        for start in range(0, len(images), per_class)
    ]  # fmt: skip
    head = f"| {info.class_word} asked | {' | '.join(heads)} |"
    table = "\n".join([head, "|---" * (len(heads) + 1) + "|", *rows])
    misread = tuple(misread_phrase(a, r, info) for a, r in zip(asked, read, strict=True) if a != r)
    return VerdictSheet(sheet, float(verdict.correct(labels).mean()), table, misread)


def _class_list(classes: Sequence[int], info: DatasetInfo = DIGITS) -> str:
    """The classes as words: "0–9" for every digit, else e.g. "1, 3 and 7" or "Trouser, Dress and Bag"."""
    chosen = sorted(set(classes))
    if info.name == DIGITS.name and chosen == list(range(10)):
        return "0–9"
    return _listed([info.class_names[c] for c in chosen], most=len(chosen))


def _column_titles(classes: Sequence[int], info: DatasetInfo) -> list[str]:
    """Titles for pictures with one column per class: the short name of each class, in order."""
    return [info.short_names[c] for c in sorted(set(classes))]


@picture_view
def sample_digits(
    classes: Any,
    per_class: Any,
    w: Any,
    sampler: str,
    sampler_steps: Any,
    eta: Any,
    seed: Any,
    mid_guidance: Any = True,
    request: gr.Request | None = None,
    progress: gr.Progress = gr.Progress(),
) -> Iterator[tuple[Picture, Picture | None, list[str] | None, str]]:
    """Sample the page's model (of the page's dataset), streaming its current x̂₀ while it works; then the verdict
    sheet and the denoising GIF (pictures with their alt text), the files, and a summary with every verdict as text.

    The page's Cancel button, or closing the page, stops the sampler at its next step.
    """
    loaded = state.model_for(request)
    info = loaded.dataset_info
    labels = _labels(classes, per_class, info)
    settings = _sampler_settings(w, sampler, sampler_steps, eta, seed, mid_guidance)
    validate_settings(settings, loaded.schedule)
    check_work(network_images_needed(settings, loaded.schedule, len(labels), takes_guidance(loaded.model)), "sample")
    asked = labels.tolist()
    k = len(labels) // len(set(asked))
    order, columns = _classes_as_columns(len(labels), k), len(labels) // k
    which, per_column = _class_list(asked, info), info.class_word
    trajectory = Trajectory.for_frames(sampling_steps(settings, loaded.schedule))

    def work(report: Report) -> SampleResult:
        def on_step(info: StepInfo) -> None:
            report(info.index + 1, info.total, info)
            trajectory(info)

        return sample(loaded.model, loaded.schedule, labels, settings, callback=on_step)

    def show(latest: Progress) -> tuple[Picture, None, None, str]:
        step: StepInfo = latest.detail
        preview = pictures.image_grid(to_uint8(step.pred_x0)[order], nrow=columns, scale=GRID_SCALE, pad=1)
        where = f"step {step.index + 1} of {step.total}: the model's current x̂₀"
        alt = f"Sampling in progress, {where} for {len(labels)} {info.items} ({which}), one column per {per_column}."
        return Picture(preview, alt), None, None, where

    result = yield from watch(request, work, 4, progress, "denoising", show)
    images, labels_np = to_uint8(result.images), result.labels.numpy()
    verdicts = _verdict_sheet(images, labels_np, k, info)
    folder = request_folder("samples")
    stem = f"{info.name}-w{settings.w:g}-{settings.sampler}-seed{settings.seed}"
    png = pictures.save_png(verdicts.image, folder / f"{stem}.png")
    npz = folder / f"{stem}.npz"
    np.savez_compressed(npz, images=images, labels=labels_np.astype(np.int64), class_names=np.array(info.class_names))
    frames = pictures.denoising_frames(
        [to_uint8(x)[order] for x in trajectory.xs], [to_uint8(x)[order] for x in trajectory.pred_x0s],
        columns, scale=GIF_SCALE, titles=_column_titles(asked, info),
    )  # fmt: skip
    gif = pictures.save_gif(frames, folder / f"{stem}.gif", fps=12, hold_last=1.5)
    summary = (
        f"{len(images)} {info.items} in **{result.seconds:.2f} s** ({result.network_evaluations} network passes, "
        f"{settings.sampler}, w = {settings.w:g}{_interval_text(settings)}, seed {settings.seed}). "
        f"The classifier reads **{100 * verdicts.accuracy:.0f}%** as the class asked for ({OK_MARK} green: agrees, "
        f"{BAD_MARK} red: disagrees; every verdict is in the table below). "
        f"The GIF has {len(frames)} frames: x_t on the left, the model's x̂₀ on the right.\n\n"
        f"Model: `{loaded.name}` ({info.title}, this page's; change it in tab 3). "
        f"Network: {result.execution.describe()}.\n\n" + verdicts.table
    )
    sheet_alt = (
        f"{len(images)} sampled {info.items} ({which}, {k} per class) at w = {settings.w:g} with {settings.sampler}, "
        f"seed {settings.seed}; one column per {per_column}, each {info.item} with the classifier's verdict "
        f"underneath: {len(images) - len(verdicts.misread)} of {len(images)} read as asked"
        + (f"; {_listed(verdicts.misread)}." if verdicts.misread else ".")
    )
    gif_alt = (
        f"Denoising animation, {len(frames)} frames: the noisy x_t on the left and the model's x̂₀ on the right "
        f"turn from noise into the {len(images)} {info.items} of the sheet, each column titled with its class."
    )
    yield Picture(verdicts.image, sheet_alt), Picture(str(gif), gif_alt), [str(png), str(gif), str(npz)], summary


def _listed(items: Sequence[str], most: int = 8) -> str:
    """The items as "a, b and c", with "and N more" past ``most`` of them (an alt text stays short)."""
    shown = list(items[:most]) + ([f"{len(items) - most} more"] if len(items) > most else [])
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


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


def _planned_work(runs: list[tuple[str, Any, SamplerSettings]], n: int) -> tuple[list[int], int]:
    """Steps per run (for the progress bar) and images through the network in all (for :func:`check_work`)."""
    steps = [sampling_steps(settings, model.schedule) for _, model, settings in runs]
    images = sum(
        network_images_needed(settings, model.schedule, n, takes_guidance(model.model)) for _, model, settings in runs
    )
    return steps, images


def _run_all(
    report: Report, runs: list[tuple[Any, SamplerSettings]], labels: torch.Tensor, noise: torch.Tensor,
    steps: list[int],
) -> list[SampleResult]:  # fmt: skip
    """Sample every run from the same noise in turn, reporting each step against the grand total (cancellable)."""
    total, done, results = sum(steps), 0, []
    for (model, settings), n_steps in zip(runs, steps, strict=True):
        offset = done
        results.append(sample(model.model, model.schedule, labels, settings, noise=noise,
                              callback=lambda info, o=offset: report(o + info.index + 1, total)))  # fmt: skip
        done += n_steps
    return results


def _student_for(loaded: LoadedModel) -> LoadedModel | None:
    """The distilled student, to run beside ``loaded``: only when both draw the same dataset (it knows digits)."""
    if loaded.dataset != DIGITS.name:  # not even loaded: a fashion page needs nothing of the digit student
        return None
    student = state.student()
    return student if student.dataset == loaded.dataset else None


@picture_view
def guidance_sweep(
    classes: Any, per_class: Any, ws_text: Any, sampler: str, sampler_steps: Any, eta: Any, seed: Any,
    mid_guidance: Any = True, request: gr.Request | None = None, progress: gr.Progress = gr.Progress(),
) -> Iterator[tuple[Picture, Picture, str]]:  # fmt: skip
    """The same starting noise at several w: a sheet (rows = w, columns = class) and accuracy/diversity vs w, each
    with its alt text, and a note with every row's numbers as a table."""
    ws = _parse_ws(ws_text)
    loaded = state.model_for(request)
    info = loaded.dataset_info
    labels = _labels(classes, per_class, info)
    base = _sampler_settings(ws[0], sampler, sampler_steps, eta, seed, mid_guidance)
    for w in ws:
        validate_settings(replace(base, w=w), loaded.schedule)
    noise = starting_noise(loaded.model, len(labels), base.seed)
    k = len(labels) // len(set(labels.tolist()))
    first_of_class = np.arange(0, len(labels), k)
    student = _student_for(loaded)
    student_top = student_w_range(student.config)[1] if student is not None else -math.inf
    runs = []
    for w in ws:
        runs.append(("", loaded, replace(base, w=w)))
        if student is not None and w <= student_top:  # the student was distilled for w in 0…w_max only
            runs.append((STUDENT_LABEL, student, replace(state.student_live_settings(), w=w, seed=base.seed)))
    steps, images = _planned_work(runs, len(labels))
    check_work(images, "sweep")
    results = yield from watch(
        request, lambda report: _run_all(report, [(m, st) for _, m, st in runs], labels, noise, steps),
        3, progress, "sweeping w",
    )  # fmt: skip
    rows, captions = [], []
    curves: dict[str, dict[str, list[float]]] = {"accuracy": {}, "diversity": {}}
    for (who, _, settings), result in zip(runs, results, strict=True):
        w = settings.w
        verdict = classify(state.classifier(info.name), result.images)
        accuracy = verdict.accuracy(result.labels)
        spread = diversity(verdict.features, result.labels.numpy())
        name = who or MODEL_LABEL
        curves["accuracy"].setdefault(name, [math.nan] * len(ws))[ws.index(w)] = accuracy
        curves["diversity"].setdefault(name, [math.nan] * len(ws))[ws.index(w)] = spread
        rows.append(to_uint8(result.images)[first_of_class])
        tag = f" ({who}, {result.network_images // len(labels)} passes)" if who else ""
        captions.append(f"w = {w:g}{tag}: {100 * accuracy:.0f}% read correctly, diversity {spread:.2f}")
    sheet = pictures.labelled_rows(rows, captions, scale=GRID_SCALE, titles=_column_titles(labels.tolist(), info))
    order = np.argsort(ws)
    plot = pictures.render_curves(
        np.array(ws)[order],
        [
            pictures.CurvePanel(
                "classifier accuracy", "accuracy",
                {name: np.array(v)[order] for name, v in curves["accuracy"].items()}, ylim=(0, 1.02),
            ),
            pictures.CurvePanel(
                "diversity (mean feature distance within a class)", "diversity",
                {name: np.array(v)[order] for name, v in curves["diversity"].items()},
            ),
        ],
        xlabel="guidance weight w",
    ).image  # fmt: skip

    def cell(name: str, what: str, i: int, fmt: str) -> str:
        value = curves[what].get(name, [math.nan] * len(ws))[i]
        return "–" if math.isnan(value) else fmt.format(value)

    names = [MODEL_LABEL] + ([STUDENT_LABEL] if student is not None else [])
    heads = ["accuracy", "diversity"] + (["student accuracy", "student diversity"] if student is not None else [])
    table = "\n".join([
        f"| w | {' | '.join(heads)} |", "|---" * (len(heads) + 1) + "|",
        *(
            f"| {w:g} | "
            + " | ".join(f"{cell(n, 'accuracy', i, '{:.0%}')} | {cell(n, 'diversity', i, '{:.2f}')}" for n in names)
            + " |"
            for i, w in enumerate(ws)
        ),
    ])  # fmt: skip
    if student is not None:
        student_text = (
            f"Under each w, the {STUDENT_LABEL} ({state.student_live_settings().steps} one-pass steps, w as an "
            f"input; w ≤ {student_top:g} only) from the same noise."
        )
    else:
        student_text = f"The {STUDENT_LABEL} knows digits only, so it has no rows for {info.title}."
    note = (
        f"Same starting noise for every row ({len(labels)} {info.items} per w, {k} per class; the sheet shows the "
        f"first of each class, its columns titled). Higher w usually raises accuracy and lowers diversity. "
        f"{student_text}\n\n" + table
    )
    runs_text = ", ".join(f"w = {st.w:g}" + (f" ({who})" if who else "") for who, _, st in runs)
    sheet_alt = (
        f"Guidance sweep from one starting noise: {len(rows)} rows of {info.items} "
        f"({_class_list(labels.tolist(), info)}, the first sample of each) under a band naming each column's "
        f"{info.class_word}; one row per run: {runs_text}. Each row's accuracy and diversity are in the "
        "table beside the plot."
    )
    plot_alt = (
        f"Line plot against the guidance weight w from {min(ws):g} to {max(ws):g}: classifier accuracy (top) and "
        f"diversity (bottom) for {' and '.join(curves['accuracy'])}. The values are in the table beside it."
    )
    yield Picture(sheet, sheet_alt), Picture(plot, plot_alt), note


@picture_view
def compare_samplers(
    classes: Any, w: Any, seed: Any, request: gr.Request | None = None, progress: gr.Progress = gr.Progress()
) -> Iterator[tuple[Picture, str]]:
    """DDPM over all T, DDIM and DPM-Solver++ at several step counts, all from the same x_T: the rows (with their
    alt text), and a note with each row's time and accuracy as a table."""
    loaded = state.model_for(request)
    info = loaded.dataset_info
    labels = _labels(classes, 1, info)
    w = parse_float(w, "The guidance weight w", W_MIN, W_MAX)
    seed = parse_seed(seed)
    noise = starting_noise(loaded.model, len(labels), seed)
    runs = []
    for name, steps in COMPARISONS:
        settings = SamplerSettings(w=w, sampler=name, steps=steps or 1, seed=seed)  # type: ignore[arg-type]
        validate_settings(settings, loaded.schedule)
        runs.append((name.upper(), "", loaded, settings))
    student = _student_for(loaded)
    if student is not None and w <= student_w_range(student.config)[1]:
        settings = replace(state.student_live_settings(), w=w, seed=seed)
        runs.append((STUDENT_LABEL, " (one pass each)", student, settings))
    steps, images = _planned_work([(name, model, settings) for name, _, model, settings in runs], len(labels))
    check_work(images, "comparison")
    results = yield from watch(
        request, lambda report: _run_all(report, [(m, st) for *_, m, st in runs], labels, noise, steps),
        2, progress, "sampling",
    )  # fmt: skip
    rows, captions, lines = [], [], []
    for (name, detail, _, _), result in zip(runs, results, strict=True):
        acc = classify(state.classifier(info.name), result.images).accuracy(result.labels)
        rows.append(to_uint8(result.images))
        label = f"{name} {result.network_evaluations} steps"
        captions.append(f"{label}{detail}: {result.seconds:.2f} s, {100 * acc:.0f}% read correctly")
        lines.append(f"| {label}{detail} | {result.seconds:.2f} s | {100 * acc:.0f}% |")
    if runs[-1][0] == STUDENT_LABEL:
        student_row = (
            " The last row is the student distilled from the shipped digit model: DDIM in "
            f"{runs[-1][3].steps} steps, one pass each, w as an input."
        )
    elif student is None:
        student_row = f" The {STUDENT_LABEL} knows digits only, so it has no row for {info.title}."
    else:
        student_row = ""
    note = (
        "Every row starts from the same $x_T$. DDPM adds fresh noise at each of its T steps; DDIM with "
        "η = 0 and DPM-Solver++ are deterministic given $x_T$." + student_row
        + "\n\n| sampler | time | accuracy |\n|---|---|---|\n" + "\n".join(lines)
    )  # fmt: skip
    alt = (
        f"{len(rows)} rows of {info.items} ({_class_list(labels.tolist(), info)}) from the same starting noise, "
        f"one per sampler: {', '.join(caption.split(':')[0] for caption in captions)}, under a band naming each "
        f"column's {info.class_word}. Each row's time and accuracy are in the table below."
    )
    sheet = pictures.labelled_rows(rows, captions, scale=GRID_SCALE, titles=_column_titles(labels.tolist(), info))
    yield Picture(sheet, alt), note


def _live_request(classes: Any, w: Any, seed: Any) -> SampleRequest:
    """One person's live-guidance inputs, checked against the student's range of w."""
    chosen = tuple(_classes(classes))
    lo, hi = student_w_range(state.student().config)
    w = parse_float(w, "The guidance weight w", lo, hi, note=" (the range the student was distilled for)")
    return SampleRequest(chosen, w, parse_seed(seed))


def live_sheet(images: torch.Tensor) -> np.ndarray:
    """One row of digits, enlarged, for the live view."""
    return pictures.image_grid(to_uint8(images), nrow=len(images), scale=LIVE_SCALE, pad=1)


def live_digits(classes: list[Any], ws: list[Any], seeds: list[Any]) -> tuple[list[Any], list[str]]:
    """Live guidance for a batch of requests (Gradio ``batch=True``: one list per input, one entry per person).

    Everyone's digits go through the student together, one pass per step. A request with bad input gets
    its message and no picture; the others are drawn as usual.
    """
    requests: list[SampleRequest | None] = []
    notes: list[str] = []
    for c, w, seed in zip(classes, ws, seeds, strict=True):
        try:
            requests.append(_live_request(c, w, seed))
            notes.append("")
        except (ValueError, TypeError, gr.Error) as err:
            requests.append(None)
            notes.append(f"⚠️ {readable_message(err) or INVALID_INPUT}")
    valid = [r for r in requests if r is not None]
    images: list[Any] = [None] * len(requests)
    if valid:
        loaded = state.student()
        start = time.perf_counter()
        try:
            drawn = iter(sample_together(loaded.model, loaded.schedule, valid, state.student_live_settings()))
        except Exception:
            LOG.exception("live sampling failed")
            return [None] * len(requests), ["⚠️ Live sampling failed unexpectedly; please try again."] * len(requests)
        ms = 1000 * (time.perf_counter() - start)
        shared = f", drawn together with {len(valid) - 1} other request(s)" if len(valid) > 1 else ""
        for i, request in enumerate(requests):
            if request is not None:
                images[i] = live_sheet(next(drawn))
                notes[i] = (
                    f"w = {request.w:g}, seed {request.seed}: {len(request.labels)} digits in {ms:.0f} ms "
                    f"({state.student_live_settings().steps} network passes{shared})."
                )
    return images, notes


@picture_view
def teacher_beside_student(classes: Any, w: Any, seed: Any) -> tuple[Picture, str]:
    """The same starting noise through the student (a few one-pass steps) and the teacher's full sampler: the two
    rows (with their alt text), and a note with each row's numbers as a table."""
    request = _live_request(classes, w, seed)
    labels = validate_labels(list(request.labels))
    student, teacher = state.student(), state.teacher()
    noise = starting_noise(teacher.model, len(labels), request.seed)
    student_run = sample(student.model, student.schedule, labels, state.student_live_settings(), noise=noise,
                         ws=torch.full((len(labels),), request.w))  # fmt: skip
    teacher_settings = SamplerSettings(w=request.w, seed=request.seed, guidance_interval=NO_INTERVAL)
    teacher_run = sample(teacher.model, teacher.schedule, labels, teacher_settings, noise=noise)
    rows, captions, lines = [], [], []
    for name, run in ((STUDENT_LABEL, student_run), (f"teacher ({teacher.name})", teacher_run)):
        acc = classify(state.classifier(teacher.dataset), run.images).accuracy(run.labels)
        rows.append(to_uint8(run.images))
        passes = run.network_images // len(labels)
        captions.append(
            f"{name}: {run.network_evaluations} steps, {passes} network passes per "
            f"digit, {1000 * run.seconds:.0f} ms, {100 * acc:.0f}% read correctly"
        )
        lines.append(
            f"| {name} | {run.network_evaluations} | {passes} | {1000 * run.seconds:.0f} ms | {100 * acc:.0f}% |"
        )
    note = (
        f"Both rows start from the same $x_T$ (seed {request.seed}) at w = {request.w:g}. The teacher runs "
        f"DPM-Solver++ for {teacher_settings.steps} steps with two passes each (with and without the class, "
        "guided at every step, which is what the student learnt); the student runs DDIM for "
        f"{student_run.network_evaluations} steps of one pass each.\n\n"
        "| row | steps | network passes per digit | time | accuracy |\n|---|---|---|---|---|\n" + "\n".join(lines)
    )
    alt = (
        f"Two rows of digits ({_class_list(request.labels)}) from the same starting noise at w = {request.w:g}: "
        f"the {STUDENT_LABEL} on top, the teacher below. Their steps, time and accuracy are in the table below."
    )
    return Picture(pictures.labelled_rows(rows, captions, scale=GRID_SCALE), alt), note


def live_alt_text(note: Any, classes: Any) -> Any:
    """The live grid's alt text, set when its note changes (the note has the numbers).

    Not a :func:`picture_view`: in a batched event Gradio applies every request's update to the first request's
    session, so :func:`live_digits` returns plain pictures and this follows each page's own note.
    """
    note = str(note or "")
    if not note.startswith("w ="):  # a refusal (⚠️ …) or nothing yet: no picture to describe
        return gr.update(alt_text=None)
    try:
        digits = _class_list(_classes(classes))
    except (ValueError, TypeError, gr.Error):
        digits = "the ticked classes"
    return gr.update(alt_text=f"Digits {digits} drawn live by the {STUDENT_LABEL} from one starting noise at {note}")


def dataset_controls(shown: Any = DEFAULT_DATASET, request: gr.Request | None = None) -> tuple[Any, ...]:
    """Updates for the tab's controls that follow the page's dataset: the dataset radio, the class boxes (names as
    labels, values still "0" … "9"), the per-class sliders, the sweep sheet's label, the live section's note, the
    guidance weight w, and the dataset now shown (for the tab's State ``shown``, the one it showed before).

    w moves to the dataset's ``default_w`` only when the dataset changed from ``shown``: a card that changes for
    another reason (a page load, another model of the same dataset) leaves a link's or a person's w alone.
    """
    info = dataset_info(state.dataset_for(request))
    word = info.class_word
    plural = "digits" if word == "digit" else "classes"
    live_note = "" if info.name == DIGITS.name else LIVE_DIGITS_ONLY.format(title=info.title)
    return (
        gr.update(value=info.name),
        gr.update(choices=class_choices(info.name), label=plural),
        gr.update(label=f"samples per {word}"),
        gr.update(label=f"samples per {word} (for diversity)"),
        gr.update(label=f"rows: w, columns: {plural}"),
        gr.update(value=live_note, visible=bool(live_note)),
        gr.update() if shown == info.name else gr.update(value=info.default_w),
        info.name,
    )


@friendly_errors
def choose_dataset(dataset: Any, shown: Any = DEFAULT_DATASET, request: gr.Request | None = None) -> tuple[Any, ...]:
    """Make ``dataset`` this page's dataset and return :func:`dataset_controls` (for a tab built without the card)."""
    state.choose_dataset(request, dataset)
    return dataset_controls(shown, request)


def build_tab(
    demo: gr.Blocks, link: gr.State | None = None, model_card: gr.components.Component | None = None
) -> dict[str, gr.components.Component]:
    """Lay out tab 4 and wire its events; returns its linkable controls by query-parameter name.

    ``link`` is this tab's deep-link State: when a link has set the controls, its change redraws the live grid
    (the main sheet and the accordions wait for their buttons, as they do after any other change).
    ``model_card`` is the page's model card (rendered in tab 3): the dataset radio writes it, and the tab's
    dataset-dependent controls follow its change, whichever tab changed the page's dataset or model. Without a card
    (the tab built alone) the radio updates those controls itself.
    """
    gr.Markdown(LIVE_INTRO.replace("STEPS", str(state.student_steps())), latex_delimiters=LATEX)
    live_dataset_note = gr.Markdown(visible=False, elem_id="live-dataset-note")  # shown while the page is not digits
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            live_w = gr.Slider(*state.student_w_range(), value=LIVE_DEFAULT_W, step=0.1,
                               label="guidance weight w (live)", elem_id="live-w")  # fmt: skip
            live_classes = gr.CheckboxGroup(CLASS_CHOICES, value=CLASS_CHOICES, label="digits", elem_id="live-classes")
            with gr.Row():
                live_seed = seed_box("live-seed")
                live_new_noise = gr.Button("New noise", elem_id="live-new-noise")
            compare_teacher = gr.Button("Compare with the teacher's full sampler", elem_id="live-teacher")
        with gr.Column(scale=2):
            live_grid = gr.Image(
                label="the same starting noise at the current w",
                format="png",
                interactive=False,
                elem_id="live-grid",
                show_label=False,
            )  # the note below says what it shows
            live_note = gr.Markdown(elem_id="live-note")
            teacher_sheet = gr.Image(
                label="student and teacher from the same noise",
                format="png",
                interactive=False,
                show_label=False,
                buttons=["download", "fullscreen"],
                elem_id="teacher-sheet",
            )  # captions inside, and as a table in the note
            teacher_note = gr.Markdown(latex_delimiters=LATEX, elem_id="teacher-note")
    gr.Markdown(INTRO, latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            dataset = dataset_radio("sample-dataset")
            classes = gr.CheckboxGroup(class_choices(DIGITS.name), value=CLASS_CHOICES, label="digits",
                                       elem_id="sample-classes")  # fmt: skip
            per_class = gr.Slider(1, MAX_PER_CLASS, value=1, step=1, label="samples per digit",
                                  elem_id="sample-per-class")  # fmt: skip
            w = gr.Slider(0, 8, value=DEFAULT_W, step=0.1, label="guidance weight w", elem_id="sample-w")
            sampler = gr.Radio(SAMPLER_CHOICES, value="dpmpp", label="sampler", elem_id="sample-sampler")
            sampler_steps = gr.Slider(1, 250, value=SamplerSettings.steps, step=1, elem_id="sample-steps",
                                      label="sampler steps (DDIM and DPM-Solver++)")  # fmt: skip
            eta = gr.Slider(
                0, 1, value=0, step=0.05, label="DDIM η (0 deterministic, 1 DDPM-like)", elem_id="sample-eta"
            )
            mid_guidance = gr.Checkbox(
                True, label=f"guide only at middle noise levels ({MID_INTERVAL[0]:g} < σ ≤ {MID_INTERVAL[1]:g})",
                info="Kynkäänniemi et al. 2024: guidance at high noise costs variety, at low noise it does little",
                elem_id="sample-mid-guidance",
            )  # fmt: skip
            seed = seed_box("sample-seed")
            with gr.Row():
                go = gr.Button("Sample", variant="primary", elem_id="sample-go")
                cancel = gr.Button("Cancel", elem_id="sample-cancel")
            gr.Examples(
                [[p.w, p.sampler, p.steps, p.eta, p.mid_guidance, p.per_class] for p in PRESETS],
                [w, sampler, sampler_steps, eta, mid_guidance, per_class],
                label="Presets (fill in the controls; then press Sample)",
                example_labels=[p.label for p in PRESETS],
                cache_examples=False,
                api_visibility="private",
                elem_id="sample-presets",
            )
            gr.Markdown(
                "\n".join(f"- **{p.label}**: {p.why}" for p in PRESETS) + f"\n\n*{PRESETS_NOTE}*",
                elem_id="sample-presets-note",
            )
        with gr.Column(scale=2):
            sheet = gr.Image(label="samples with the classifier's verdict", format="png", interactive=False,
                             elem_id="sample-sheet")  # fmt: skip
            summary = gr.Markdown(elem_id="sample-summary")  # the verdicts as text too
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

    # The page's dataset: the radio's .input (a person's choice, never .change) writes the card; every change of the
    # card, from this tab or tab 3, refreshes the controls here (never from a tab's select: that loops in Gradio).
    # shown: the dataset the controls last showed, so w moves only when the dataset changes (not on every card change).
    shown = gr.State(DEFAULT_DATASET)
    dataset_outputs = [dataset, classes, per_class, sweep_per_class, sweep_sheet, live_dataset_note, w, shown]
    quiet = {"api_visibility": "private", "show_progress": "hidden"}
    if model_card is not None:
        dataset.input(page_card.choose_dataset, dataset, model_card, **quiet)
        model_card.change(dataset_controls, shown, dataset_outputs, queue=False, **quiet)
    else:
        dataset.input(choose_dataset, [dataset, shown], dataset_outputs, **quiet)
    live_inputs = [live_classes, live_w, live_seed]
    live = {"concurrency_limit": 2, "concurrency_id": "live", "show_progress": "hidden", "queue": True}
    # One event for every trigger, so "always_last" orders them all: a link applied on page load redraws after
    # (never before) the page's first view. The slider's .input fires on arrow keys as well as on dragging.
    live_triggers = [live_w.input, live_classes.change, live_seed.change, demo.load]
    gr.on(
        live_triggers + ([link.change] if link is not None else []), live_digits, live_inputs, [live_grid, live_note],
        trigger_mode="always_last", batch=True, max_batch_size=LIVE_MAX_BATCH, api_name="live_digits", **live,
    )  # fmt: skip
    live_note.change(live_alt_text, [live_note, live_classes], live_grid, api_visibility="private", queue=False,
                     show_progress="hidden")  # fmt: skip
    live_new_noise.click(next_seed, live_seed, live_seed, api_visibility="private", queue=False)
    # Each button runs its handler's page twin (pictures with their alt text); API clients call the handler by its
    # name, which no page event triggers (see picture_events). All share the sampling budget.
    sampling = {"concurrency_limit": 2, "concurrency_id": "sampling"}
    teacher_outputs = [teacher_sheet, teacher_note]
    picture_events(teacher_beside_student, [compare_teacher.click], live_inputs, teacher_outputs, **sampling)
    settings = [sampler, sampler_steps, eta, seed, mid_guidance]
    sample_inputs, sample_outputs = [classes, per_class, w, *settings], [sheet, gif, files, summary]
    event = picture_events(sample_digits, [go.click], sample_inputs, sample_outputs, **sampling)
    cancel.click(None, None, None, cancels=[event])
    sweep_inputs, sweep_outputs = [classes, sweep_per_class, ws, *settings], [sweep_sheet, sweep_plot, sweep_note]
    picture_events(guidance_sweep, [sweep_go.click], sweep_inputs, sweep_outputs, **sampling)
    picture_events(compare_samplers, [compare_go.click], [classes, w, seed], [compare_sheet, compare_note], **sampling)
    return {
        "w": w, "seed": seed, "sampler": sampler, "steps": sampler_steps, "eta": eta, "per_class": per_class,
        "digits": classes, "mid": mid_guidance, "live_w": live_w,
    }  # fmt: skip
