"""What every tab shares: the constants, turning errors into messages, parsing inputs, formatting numbers.

Handlers raise :class:`gradio.Error` (via :func:`user_error`) for anything a person should read; the
:func:`friendly_errors` decorator turns the core's ``ValueError``s into those and hides unexpected
failures behind a short note (logged on the server with their stack trace).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from ddpm_core.files import fresh_folder
from ddpm_core.image_io import ImageInputError, LoadedImage, load_image_info
from ddpm_core.paths import assets_dir, runs_dir
from ddpm_core.schedule import SCHEDULE_NAMES, NoiseSchedule, make_schedule

LOG = logging.getLogger("ddpm_playground")

# ----------------------------------------------------------------------------------------------
# Constants shared by the tabs (each tab keeps its own few at the top of its module)
# ----------------------------------------------------------------------------------------------

DEFAULT_IMAGE = assets_dir() / "grace_hopper.jpg"
IMAGE_SIDE = 256  # uploads are shrunk so their longest side is at most this
T_CHOICES = (1000, 150)  # the number of diffusion steps T offered in the image tabs
DEFAULT_T = 1000
DEFAULT_STEP = 200  # the step t the image tabs open at
MAX_SEED = 2**31 - 1
MAX_FILE_SIZE = "20mb"
NOISE_DISPLAY_SCALE = 3.0  # ε is shown as ε / 3, so ±3σ fills the grey range
GRID_SCALE = 3  # digit sheets are drawn at 3× (28 px → 84 px)
REQUEST_FILES_MAX_AGE_S = 3600.0  # generated files and uploads are kept this long (like Gradio's own cache)
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]

F = TypeVar("F", bound=Callable[..., Any])


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def user_error(message: str) -> gr.Error:
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
            raise user_error(str(err)) from None
        except Exception:
            LOG.exception("handler %s failed", fn.__name__)
            raise user_error("Something went wrong while computing this view. Please try again.") from None

    return wrapper  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Parsing what the page sends
# ----------------------------------------------------------------------------------------------


def file_path(payload: Any) -> str:
    """The path behind a file input: a path, or Gradio's file payload (a dict or object with ``path``)."""
    if isinstance(payload, dict):
        payload = payload.get("path")
    elif hasattr(payload, "path"):
        payload = payload.path
    return str(payload) if isinstance(payload, (str, os.PathLike)) else ""


@functools.lru_cache(maxsize=16)
def load_image_version(path: str, size: int, mtime_ns: int) -> LoadedImage:
    """Decode once per file version (path, size, mtime); a slider drag then reuses the tensor."""
    return load_image_info(path, max_side=IMAGE_SIDE)


def load_image(image: Any) -> tuple[LoadedImage, tuple[str, int, int]]:
    """The decoded image and a key that identifies the file version."""
    path = file_path(image) if image not in (None, "") else ""
    if not path:
        raise ImageInputError("Please upload an image first (or use the example).")
    try:
        stat = Path(path).stat()
    except OSError:
        raise ImageInputError("The uploaded image could not be found; please upload it again.") from None
    key = (path, stat.st_size, stat.st_mtime_ns)
    return load_image_version(*key), key


def parse_T(T: Any) -> int:
    """The number of diffusion steps T, one of :data:`T_CHOICES`."""
    choices = ", ".join(map(str, T_CHOICES))
    try:
        value = float(T)
    except (TypeError, ValueError):
        raise ValueError(f"T must be one of {choices}.") from None
    if value not in T_CHOICES:
        raise ValueError(f"T must be one of {choices}, not {T}.")
    return int(value)


def parse_step(t: Any, T: int) -> int:
    """A step t in 0 … T−1."""
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise ValueError("The step t must be a number.") from None
    if not math.isfinite(value) or value != int(value):
        raise ValueError("The step t must be a whole number.")
    if not 0 <= value <= T - 1:
        raise ValueError(f"The step t must lie between 0 and {T - 1} when T = {T}.")
    return int(value)


def parse_seed(seed: Any) -> int:
    """A seed in 0 … MAX_SEED (an empty box means 0)."""
    try:
        value = float(seed if seed is not None else 0)
    except (TypeError, ValueError):
        raise ValueError("The seed must be a whole number.") from None
    if not math.isfinite(value) or value != int(value) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"The seed must be a whole number between 0 and {MAX_SEED}.")
    return int(value)


@functools.lru_cache(maxsize=8)
def cached_schedule(name: str, T: int) -> NoiseSchedule:
    return make_schedule(name, T)


def parse_schedule(schedule_name: Any, T: Any) -> NoiseSchedule:
    """The noise schedule named on the page, with T steps."""
    if schedule_name not in SCHEDULE_NAMES:
        raise ValueError(f"The schedule must be one of {', '.join(SCHEDULE_NAMES)}.")
    return cached_schedule(str(schedule_name), parse_T(T))


@dataclass(frozen=True)
class ImageViewInputs:
    """The image tabs' inputs, checked: the decoded photo (and its version key), schedule, step and seed."""

    image: LoadedImage
    key: tuple[str, int, int]
    schedule: NoiseSchedule
    step: int
    seed: int


def parse_image_view(image: Any, t: Any, schedule_name: Any, T: Any, seed: Any) -> ImageViewInputs:
    """Check what an image-tab view receives; raises a readable ValueError (or ImageInputError) for bad input."""
    schedule = parse_schedule(schedule_name, T)
    step, seed = parse_step(t, schedule.num_steps), parse_seed(seed)
    loaded, key = load_image(image)
    return ImageViewInputs(loaded, key, schedule, step, seed)


def request_folder(kind: str, keep: Path | None = None) -> Path:
    """A fresh private folder for one request's files under the runs folder (old ones are cleared)."""
    return fresh_folder(runs_dir() / kind, REQUEST_FILES_MAX_AGE_S, keep=keep)


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------

_SUBSCRIPTS = str.maketrans("0123456789-", "₀₁₂₃₄₅₆₇₈₉₋")


def sub(n: int) -> str:
    """Subscript digits for captions: 42 → ₄₂."""
    return str(n).translate(_SUBSCRIPTS)


def fmt(value: float) -> str:
    """Short number for captions: 4 significant digits, scientific for tiny values."""
    if value == 0:
        return "0"
    return f"{value:.3g}" if abs(value) < 1e-3 else f"{value:.4f}"


# ----------------------------------------------------------------------------------------------
# Components several tabs use
# ----------------------------------------------------------------------------------------------


def output_image(label: str, fmt: str = "jpeg") -> gr.Image:
    """A read-only picture with download and full-screen buttons."""
    return gr.Image(label=label, format=fmt, interactive=False, buttons=["download", "fullscreen"])


def seed_box(elem_id: str | None = None) -> gr.Number:
    return gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="seed", elem_id=elem_id)


def next_seed(seed: Any) -> int:
    """The "New noise" button: seed + 1 (wrapping), or 0 for a box that holds no number."""
    try:
        return (int(float(seed)) + 1) % (MAX_SEED + 1)
    except (TypeError, ValueError):
        return 0


def image_controls(prefix: str) -> tuple[gr.Image, gr.Slider, gr.Radio, gr.Radio, gr.Number, gr.Button]:
    """The image tabs' inputs: image, t, schedule, T, seed and "New noise" (one set per tab: a component shows once)."""
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
    T = gr.Radio(list(T_CHOICES), value=DEFAULT_T, label="T (number of diffusion steps)", elem_id=f"{prefix}-T")
    with gr.Row():
        seed = seed_box(f"{prefix}-seed")
        new_noise = gr.Button("New noise", size="sm")
    return image, step, schedule, T, seed, new_noise


def step_slider_update(T: int, t: Any, fallback: int = 0, **changes: Any) -> dict:
    """A t slider spanning 0 … T−1, keeping ``t`` (clamped into range) or ``fallback`` if ``t`` is no number."""
    try:
        step = int(float(t))
    except (TypeError, ValueError):
        step = fallback
    return gr.update(maximum=T - 1, value=min(max(0, step), T - 1), **changes)


def retarget_step(T: Any, t: Any) -> dict:
    """Keep the t slider inside 0 … T−1 when T changes."""
    return step_slider_update(parse_T(T), t)


def image_notes(loaded: LoadedImage) -> str:
    """What was done to an upload (shrunk, converted…), as an italic line under a view."""
    return f"\n\n*Image: {'; '.join(loaded.notes)}.*" if loaded.notes else ""
