"""The app's state: the live digit model, the training job, the distilled student, and the data and classifier.

Everything here is shared by every user of one server and is thread-safe (see :mod:`ddpm_core.live`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace

from ddpm_core import distillation
from ddpm_core.checkpoints import CheckpointError, LoadedModel, load_checkpoint
from ddpm_core.classifier import DigitClassifier, load_classifier
from ddpm_core.data import DigitData, load_digits
from ddpm_core.distillation import student_settings
from ddpm_core.live import LiveModel, TrainingJob
from ddpm_core.paths import shipped_model_dir, student_model_dir
from ddpm_core.runtime import Execution
from ddpm_core.sampling import SamplerSettings, sampling_execution
from ddpm_ui.common import LOG, user_error


@functools.cache
def digit_data() -> DigitData:
    """The 5,000 digits that ship with the app (4,000 to train, 1,000 held out)."""
    return load_digits("bundled")


@functools.cache
def classifier() -> DigitClassifier:
    """The project's digit classifier, the quality meter under every sample and every training preview."""
    return load_classifier()


LIVE = LiveModel()
JOB = TrainingJob(classifier=classifier)


def live() -> LoadedModel:
    """The live model, or a message for the page if even the shipped one cannot be loaded."""
    try:
        return LIVE.get()
    except CheckpointError as err:
        raise user_error(f"The shipped model could not be loaded ({err}). Upload or train one in tab 3.") from None


@functools.cache
def _student() -> LoadedModel:
    return load_checkpoint(student_model_dir())


@functools.cache
def _teacher() -> LoadedModel:
    return load_checkpoint(shipped_model_dir())


def student() -> LoadedModel:
    """The shipped few-step student (read-only, shared): live guidance's model."""
    try:
        return _student()
    except CheckpointError as err:
        raise user_error(f"The live-guidance student could not be loaded ({err}).") from None


def teacher() -> LoadedModel:
    """The shipped model the student was distilled from (read-only, shared), whatever model is live."""
    try:
        return _teacher()
    except CheckpointError as err:
        raise user_error(f"The shipped model could not be loaded ({err}).") from None


def student_record() -> dict:
    """The shipped student's config.json (what the page is built from), or {} if it cannot be read."""
    try:
        return json.loads((student_model_dir() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the page still builds; the first live request says what is wrong


def student_w_range() -> tuple[float, float]:
    """The live slider's range: the guidance weights the shipped student was distilled for."""
    return distillation.student_w_range(student_record())


def student_steps() -> int:
    """Network passes per live update, as the shipped student's config records them."""
    return int(distillation.recorded_sampler(student_record())["steps"])


@functools.cache
def student_live_settings() -> SamplerSettings:
    """The student's sampler, with the precision and runtime timed once for ten digits and then kept.

    Fixing them means a batch of several people's digits never starts a new timing race of its own.
    """
    loaded = student()
    settings = student_settings(loaded)
    execution = sampling_execution(loaded.model, 10, settings)
    return replace(settings, precision=execution.precision, runtime=execution.runtime)


def default_execution() -> Execution:
    """How the live model runs for ten guided digits (timed once per process, then cached)."""
    return sampling_execution(live().model, 10, SamplerSettings())


def warm_up() -> None:
    """Load the shipped model and choose its precision and runtime in the background, once the server starts.

    The choice is timed (about 0.4 s, plus about 0.2 s to export the ONNX graph), so the first person to
    sample does not wait for it. A failure here is only logged: the first request will try again.
    """
    try:
        LOG.info("network on this machine: %s", default_execution().describe())
        settings = student_live_settings()
        LOG.info("live-guidance student runs as %s-%s", settings.runtime, settings.precision)
    except Exception:
        LOG.exception("warm-up failed; the first request will load the model instead")
