"""What every tab shares: the constants, turning errors into messages, parsing inputs, formatting numbers.

Handlers raise :class:`gradio.Error` (via :func:`user_error`) for anything a person should read; the
:func:`friendly_errors` decorator turns errors written for people into those and hides everything else
behind a short note (logged on the server with its stack trace); :func:`readable_message` says which is
which. File inputs are read only from Gradio's upload folder or the shipped assets (:func:`received_file`).
"""

from __future__ import annotations

import contextlib
import dis
import functools
import inspect
import logging
import math
import numbers
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import gradio as gr
import numpy as np
from gradio.events import Dependency
from gradio.utils import get_upload_folder

from ddpm_core.checkpoints import CheckpointError
from ddpm_core.data import DATASETS, DEFAULT_DATASET, dataset_info
from ddpm_core.files import fresh_folder
from ddpm_core.image_io import ImageInputError, LoadedImage, load_image_info
from ddpm_core.paths import assets_dir, runs_dir
from ddpm_core.schedule import SCHEDULE_NAMES, NoiseSchedule, make_schedule

LOG = logging.getLogger("ddpm_playground")

# ----------------------------------------------------------------------------------------------
# Constants shared by the tabs (each tab keeps its own few at the top of its module)
# ----------------------------------------------------------------------------------------------

DEFAULT_IMAGE = assets_dir() / "grace_hopper.jpg"
# The image tabs' example photos (public domain or CC0; sources and licences in assets/README.md), by label.
EXAMPLE_IMAGES = {
    "Grace Hopper": DEFAULT_IMAGE,
    "astronaut": assets_dir() / "astronaut.jpg",
    "cat": assets_dir() / "chelsea.jpg",
    "coffee": assets_dir() / "coffee.jpg",
}
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


class InputError(ValueError):
    """Bad input, with a message written for the person who sent it (shown as it is)."""


# Exceptions whose message is always written for people, wherever they were raised.
READABLE_ERRORS: tuple[type[Exception], ...] = (InputError, ImageInputError, CheckpointError)
INVALID_INPUT = "This input is not valid; please check the values and try again."
UNEXPECTED = "Something went wrong while computing this view. Please try again."
_OUR_PACKAGES = ("ddpm_core", "ddpm_ui")
_RAISE_OPCODES = frozenset(dis.opmap[name] for name in ("RAISE_VARARGS",) if name in dis.opmap)


def user_error(message: str) -> gr.Error:
    """An error shown to the user as it is; no stack trace is printed for these."""
    return gr.Error(message, title="Cannot show this", print_exception=False)


def refusal(err: BaseException, more: str = "") -> gr.Error:
    """A core refusal written as a phrase ("a training run is already going") as the sentence a person reads."""
    return user_error(str(err).capitalize() + "." + (f" {more}" if more else ""))


def _raised_by_our_code(err: BaseException) -> bool:
    """True if ``err`` comes from a ``raise`` statement in ddpm_core or ddpm_ui.

    The innermost traceback entry is where the exception started. A ``raise ValueError("…")`` of ours stops
    there on a RAISE instruction; ``float("abc")`` or ``int(nan)`` in our code stops on a call (the error
    comes from Python's C code, with Python's wording), and an error raised inside torch, numpy or pydantic
    stops in their modules. Only the first kind was written for people.
    """
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    if module.split(".")[0] not in _OUR_PACKAGES:
        return False
    code = tb.tb_frame.f_code.co_code
    return 0 <= tb.tb_lasti < len(code) and code[tb.tb_lasti] in _RAISE_OPCODES


def readable_message(err: BaseException) -> str | None:
    """The message of ``err`` if it was written for people, else ``None`` (show a generic note instead).

    The rule, for every handler: :class:`InputError`, ``ImageInputError`` and ``CheckpointError`` are shown
    as they are; so is a ``ValueError`` (or a subclass of ours) raised by a ``raise`` statement in ddpm_core
    or ddpm_ui (the core's ``validate_*`` checks, a tab's own checks). ``ValueError``s from Python, torch,
    numpy or pydantic ("could not convert string to float", "cannot convert float NaN to integer") are not:
    they name internals, not the field.
    """
    if isinstance(err, gr.Error):
        return str(err.message)
    if isinstance(err, READABLE_ERRORS):
        return str(err)
    if isinstance(err, ValueError) and _ours(type(err)) and _raised_by_our_code(err):
        return str(err)
    return None


def _ours(kind: type) -> bool:
    """ValueError itself, or a subclass defined in ddpm_core / ddpm_ui (not pydantic's, json's, …)."""
    return kind is ValueError or kind.__module__.split(".")[0] in _OUR_PACKAGES


def _as_user_error(handler: str, err: Exception) -> gr.Error:
    """The :class:`gradio.Error` a person sees for ``err`` (logged unless it was written for them)."""
    message = readable_message(err)
    if message is not None:
        return user_error(message)
    if isinstance(err, (ValueError, TypeError, OverflowError)):
        LOG.warning("handler %s refused its input", handler, exc_info=err)
        return user_error(INVALID_INPUT)
    LOG.error("handler %s failed", handler, exc_info=err)
    return user_error(UNEXPECTED)


def friendly_errors(fn: F) -> F:
    """Turn errors written for people into :class:`gradio.Error`s and hide everything else behind a short note.

    Bad input that slipped past our parsers (a ``ValueError``, ``TypeError`` or ``OverflowError`` from
    Python or torch) gets :data:`INVALID_INPUT`; any other failure gets :data:`UNEXPECTED`. Both are logged
    with their stack trace; the person never sees Python's or torch's wording. Generator handlers (those
    that stream) are wrapped as generators, so errors raised while they stream are caught too.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streaming(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as err:
                raise _as_user_error(fn.__name__, err) from None

        return streaming  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:
            raise _as_user_error(fn.__name__, err) from None

    return wrapper  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Parsing what the page sends
# ----------------------------------------------------------------------------------------------


def _as_number(value: Any) -> int | float | None:
    """A finite number from a JSON number or a short string that spells one; ``None`` for anything else.

    Integers stay ``int`` (so a huge one is compared exactly, never overflowing a float); booleans are not
    numbers here, although Python treats ``True`` as 1.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64:  # no number a person types is longer; int() of a long one is slow
            return None
        try:
            return int(text)
        except ValueError:
            value = text
    if isinstance(value, (numbers.Real, str)):
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
        return number if math.isfinite(number) else None
    return None


def _range_text(lo: float, hi: float, note: str) -> str:
    """ "between 0 and 999 when T = 1000": whole bounds without a decimal point, others in short form."""

    def show(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    return f"between {show(lo)} and {show(hi)}{note}"


def parse_int(value: Any, what: str, lo: int, hi: int, *, default: int | None = None, note: str = "") -> int:
    """A whole number in ``lo … hi``, or an :class:`InputError` naming ``what`` and the range.

    Accepts JSON numbers (2.0 counts as 2) and strings that spell one ("150"); refuses ``None`` (unless a
    ``default`` is given for an empty box), other strings, booleans, NaN, ±inf, fractions and values out of
    range. ``note`` is added after the range, e.g. " when T = 150".
    """
    if default is not None and (value is None or (isinstance(value, str) and not value.strip())):
        return default
    number = _as_number(value)
    if number is None:
        raise InputError(f"{what} must be a number: a whole number {_range_text(lo, hi, note)}.")
    if (isinstance(number, float) and not number.is_integer()) or not lo <= number <= hi:
        raise InputError(f"{what} must be a whole number {_range_text(lo, hi, note)}.")
    return int(number)


def parse_float(value: Any, what: str, lo: float, hi: float, *, default: float | None = None, note: str = "") -> float:
    """A finite number in ``lo … hi``, or an :class:`InputError` naming ``what`` and the range.

    Accepts JSON numbers and strings that spell one; refuses ``None`` (unless a ``default`` is given for an
    empty box), other strings, booleans, NaN, ±inf and values out of range.
    """
    if default is not None and (value is None or (isinstance(value, str) and not value.strip())):
        return default
    number = _as_number(value)
    if number is None or not lo <= number <= hi:
        raise InputError(f"{what} must be a number {_range_text(lo, hi, note)}.")
    return float(number)


def file_path(payload: Any) -> str:
    """The path a file input names: a path, or Gradio's file payload (a dict or object with ``path``).

    Anything else (a number, a list, a dict without a string ``path``) gives "". This only reads the payload;
    :func:`received_file` decides whether the file may be opened.
    """
    if isinstance(payload, dict):
        payload = payload.get("path")
    elif not isinstance(payload, (str, os.PathLike)) and hasattr(payload, "path"):
        payload = getattr(payload, "path", None)
    if isinstance(payload, os.PathLike):
        payload = os.fspath(payload)
    return payload if isinstance(payload, str) else ""


NO_IMAGE = "Please upload an image first (or pick one of the example photos)."
NOT_RECEIVED = "This image is not one the app received; please upload it again."


def received_folders() -> tuple[str, ...]:
    """The folders file inputs may be read from (real paths): Gradio's upload folder and the shipped assets.

    Gradio's own rule for uploads (``processing_utils._check_allowed`` during preprocessing) accepts only
    ``gradio.utils.get_upload_folder()``, i.e. ``$GRADIO_TEMP_DIR`` or ``<tmp>/gradio``: where
    ``/gradio_api/upload`` stores files and where the example's default value is copied. Handlers wired with
    ``preprocess=False`` skip that check, so :func:`received_file` repeats it.
    """
    return tuple(os.path.realpath(folder) for folder in (get_upload_folder(), assets_dir()))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def received_file(payload: Any, refused: str = NOT_RECEIVED, missing: str = NO_IMAGE) -> tuple[str, os.stat_result]:
    """The real path and stat of a file the app received (an upload, or a shipped example), else an InputError.

    The path is resolved (``..`` and symlinks, so a link in the upload folder pointing elsewhere counts as
    elsewhere) and checked against :func:`received_folders` before anything is looked up on disk. Every
    refusal (outside those folders, missing, a folder, unreadable) gets the same ``refused`` message, so the
    answer never tells whether some path exists on the server.
    """
    path = file_path(payload)
    if not path:
        raise InputError(missing)
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):  # a NUL byte, a name too long for the system
        raise InputError(refused) from None
    if not any(_inside(real, folder) for folder in received_folders()):
        raise InputError(refused)
    try:
        info = os.stat(real)
    except (OSError, ValueError):
        raise InputError(refused) from None
    if not stat.S_ISREG(info.st_mode) or not os.access(real, os.R_OK):
        raise InputError(refused)
    return real, info


@functools.lru_cache(maxsize=16)
def load_image_version(path: str, size: int, mtime_ns: int) -> LoadedImage:
    """Decode once per file version (path, size, mtime); a slider drag then reuses the tensor.

    ``path`` must come from :func:`load_image` (or its key), which checked that the app received it.
    """
    return load_image_info(path, max_side=IMAGE_SIDE)


def load_image(image: Any) -> tuple[LoadedImage, tuple[str, int, int]]:
    """The decoded image and a key that identifies the file version; only uploads and shipped examples."""
    real, info = received_file(image)
    key = (real, info.st_size, info.st_mtime_ns)
    return load_image_version(*key), key


def parse_T(T: Any) -> int:
    """The number of diffusion steps T, one of :data:`T_CHOICES`."""
    message = f"T must be one of {', '.join(map(str, T_CHOICES))}."
    try:
        value = parse_int(T, "T", min(T_CHOICES), max(T_CHOICES))
    except InputError:
        raise InputError(message) from None
    if value not in T_CHOICES:
        raise InputError(message)
    return value


def parse_step(t: Any, T: int) -> int:
    """A step t in 0 … T−1."""
    return parse_int(t, "The step t", 0, T - 1, note=f" when T = {T}")


def parse_seed(seed: Any) -> int:
    """A seed in 0 … MAX_SEED (an empty box means 0)."""
    return parse_int(seed, "The seed", 0, MAX_SEED, default=0)


@functools.lru_cache(maxsize=8)
def cached_schedule(name: str, T: int) -> NoiseSchedule:
    return make_schedule(name, T)


def parse_schedule(schedule_name: Any, T: Any) -> NoiseSchedule:
    """The noise schedule named on the page, with T steps."""
    if not isinstance(schedule_name, str) or schedule_name not in SCHEDULE_NAMES:
        raise InputError(f"The schedule must be one of {', '.join(SCHEDULE_NAMES)}.")
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


def request_folder(kind: str, keep: str | Path | Iterable[str | Path] | None = None) -> Path:
    """A fresh private folder for one request's files under the runs folder (old ones are cleared).

    ``keep``: a folder, or a collection of folders (say, every folder a session's model is loaded from), that
    the clean-up must spare, together with the request folders that hold them.
    """
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


def output_image(label: str, fmt: str = "jpeg", alt_text: str | None = None) -> gr.Image:
    """A read-only picture with download and full-screen buttons.

    ``alt_text`` is what a screen reader says in its place; a view that changes with the inputs sets it with
    each picture instead (:class:`Picture`, :func:`picture_view`).
    """
    return gr.Image(label=label, format=fmt, interactive=False, buttons=["download", "fullscreen"], alt_text=alt_text)


@dataclass(frozen=True)
class Picture:
    """A view's picture and its alt text: what it shows, in words and with the numbers, for screen readers."""

    image: np.ndarray | str  # RGB pixels, or the path of an image file (an animated GIF)
    alt_text: str


def _each_picture(outputs: Any, convert: Callable[[Picture], Any]) -> Any:
    """``outputs`` (a tuple of a view's outputs, or its single output) with each :class:`Picture` converted."""
    if isinstance(outputs, tuple):
        return tuple(convert(out) if isinstance(out, Picture) else out for out in outputs)
    return convert(outputs) if isinstance(outputs, Picture) else outputs


def plain(outputs: Any) -> Any:
    """A view's outputs as the API returns them: each :class:`Picture` as its image, the rest unchanged."""
    return _each_picture(outputs, lambda picture: picture.image)


def with_alt_text(outputs: Any) -> Any:
    """A view's outputs for the page: each :class:`Picture` as an image update that also sets its alt text."""
    return _each_picture(outputs, lambda picture: gr.update(value=picture.image, alt_text=picture.alt_text))


class PictureView(Protocol):
    """A handler made by :func:`picture_view`: pictures for API clients, its page twin as ``for_page``."""

    __name__: str
    for_page: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def _converted(view: Callable[..., Any], convert: Callable[[Any], Any], name: str, doc: str | None) -> Any:
    """``view`` with ``convert`` applied to what it returns (or to each tuple it yields, if it streams)."""
    if inspect.isgeneratorfunction(view):

        @functools.wraps(view)
        def handler(*args: Any, **kwargs: Any) -> Any:
            with contextlib.closing(view(*args, **kwargs)) as stream:  # closing the handler stops the view's work
                for outputs in stream:
                    yield convert(outputs)

    else:

        @functools.wraps(view)
        def handler(*args: Any, **kwargs: Any) -> Any:
            return convert(view(*args, **kwargs))

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = doc
    return friendly_errors(handler)


def picture_view(view: Callable[..., Any]) -> PictureView:
    """Make a view that returns (or, streaming, yields) outputs with :class:`Picture`s into its two handlers.

    The decorated name is the API handler: each Picture becomes its image (:func:`plain`), so API clients get files,
    as from any image output. Its ``for_page`` attribute, ``<name>_for_page``, is the page's twin: each Picture
    becomes an update that also sets the image's alt text (:func:`with_alt_text`), in the same response. Both are
    wrapped by :func:`friendly_errors`, and a streaming view gives streaming handlers. Wire the two with
    :func:`picture_events`.
    """
    api = _converted(view, plain, view.__name__, view.__doc__)
    api.for_page = _converted(
        view, with_alt_text, f"{view.__name__}_for_page",
        f":func:`{view.__name__}` for the page: each picture as an update that also sets its alt text.",
    )  # fmt: skip
    return api


def picture_events(view: PictureView, triggers: Sequence[Any], inputs: Any, outputs: Any, **options: Any) -> Dependency:
    """Wire a :func:`picture_view`: its API endpoint, named after it and triggered by nothing on the page, and its
    page twin on ``triggers`` (private); returns the page's event (to chain ``.then`` or to cancel).

    ``options`` (Gradio's event options) apply to both events, which share one concurrency_id: the view's name
    unless ``options`` names another.
    """
    options = {"concurrency_id": view.__name__, **options}
    gr.on([], view, inputs, outputs, api_name=view.__name__, **options)
    return gr.on(triggers, view.for_page, inputs, outputs, api_visibility="private", **options)


def image_examples(image: gr.Image, elem_id: str | None = None) -> gr.Examples:
    """The example photos under an image input: a click puts one in the input, whose change draws the views.

    Shown as buttons named in words (a thumbnail button would have no name a screen reader could say).
    """
    return gr.Examples(
        [[str(path)] for path in EXAMPLE_IMAGES.values()],
        inputs=image,
        label="Example photos (public domain or CC0)",
        example_labels=list(EXAMPLE_IMAGES),
        elem_id=elem_id,
        api_visibility="private",
    )


def seed_box(elem_id: str | None = None) -> gr.Number:
    return gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="seed", elem_id=elem_id)


def next_seed(seed: Any) -> int:
    """The "New noise" button: seed + 1 (wrapping), or 0 for a box that holds no valid seed."""
    try:
        return (parse_int(seed, "The seed", 0, MAX_SEED) + 1) % (MAX_SEED + 1)  # no default: empty gives 0
    except InputError:
        return 0


def image_controls(prefix: str) -> tuple[gr.Image, gr.Slider, gr.Radio, gr.Radio, gr.Number, gr.Button]:
    """The image tabs' inputs: image, t, schedule, T, seed and "New noise" (one set per tab: a component shows once)."""
    image = gr.Image(
        value=str(DEFAULT_IMAGE),
        type="filepath",
        image_mode=None,
        sources=["upload", "clipboard"],
        label="Image x₀ (any photo; shrunk to 256 px)",
        alt_text="The photo x₀ that this tab noises: your upload, or one of the example photos.",
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
    number = _as_number(t)  # NaN, ±inf or text fall back; a huge number is clamped like any other
    step = fallback if number is None else number
    return gr.update(maximum=T - 1, value=int(min(max(0, step), T - 1)), **changes)


@friendly_errors
def retarget_step(T: Any, t: Any) -> dict:
    """Keep the t slider inside 0 … T−1 when T changes."""
    return step_slider_update(parse_T(T), t)


def image_notes(loaded: LoadedImage) -> str:
    """What was done to an upload (shrunk, converted…), as an italic line under a view."""
    return f"\n\n*Image: {'; '.join(loaded.notes)}.*" if loaded.notes else ""


# ----------------------------------------------------------------------------------------------
# Datasets: digits or fashion items
# ----------------------------------------------------------------------------------------------

DATASET_CHOICES = [(info.title, name) for name, info in DATASETS.items()]


def dataset_radio(elem_id: str, **options: Any) -> gr.Radio:
    """The dataset choice shown in tabs 3 and 4 ("MNIST digits" or "Fashion-MNIST"); its values are the names."""
    options.setdefault("label", "dataset")
    return gr.Radio(DATASET_CHOICES, value=DEFAULT_DATASET, elem_id=elem_id, **options)


def class_choices(dataset: str) -> list[tuple[str, str]]:
    """A CheckboxGroup's choices for ``dataset``'s ten classes: (its name, the label "0" … "9")."""
    return [(name, str(label)) for label, name in enumerate(dataset_info(dataset).class_names)]
