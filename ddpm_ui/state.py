"""The app's state: each session's dataset and models, the training job, the distilled student, data and classifiers.

The server is shared, so anything one visitor can change is kept per session (keyed by Gradio's session
hash): the dataset it has chosen and its model of each (:class:`ddpm_core.sessions.SessionModels`), the
training run it owns (:class:`ddpm_core.training_job.TrainingJob`) and its heavy requests in flight. The
shipped models, the student, the data and the classifiers are read-only and shared. Everything here is thread-safe.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ddpm_core import distillation
from ddpm_core.checkpoints import CheckpointError, LoadedModel, load_checkpoint
from ddpm_core.classifier import ImageClassifier, load_classifier
from ddpm_core.data import DATASETS, DataSource, ImageData, dataset_info, find_full, load_dataset
from ddpm_core.distillation import student_settings
from ddpm_core.paths import classifier_dir, shipped_model_dir, student_model_dir
from ddpm_core.runtime import Execution
from ddpm_core.sampling import SamplerSettings, sampling_execution
from ddpm_core.sessions import SessionModels, SessionSlots
from ddpm_core.training_job import TrainingJob, TrainingLimits
from ddpm_ui.common import LOG, user_error

LOCAL_SESSION = "local"  # a handler called directly (tests, scripts) rather than through a page
SESSION_MODELS_MB = int(os.environ.get("DDPM_SESSION_MODELS_MB", "200"))  # memory for visitors' own models
SESSION_TTL_S = 3600.0  # an idle session keeps its own model this long (a closed page lets go at once)


def data(dataset: str, source: DataSource = "bundled") -> ImageData:
    """``dataset``'s images from ``source``: the 5,000 shipped with the app ("bundled": 4,000 train, 1,000 held
    out) or the full set installed on this server ("full": 60,000 train, 10,000 held out)."""
    return _data(dataset, source)  # one cache entry per (dataset, source), however the caller spells them


@functools.cache
def _data(dataset: str, source: DataSource) -> ImageData:
    return load_dataset(dataset, source)


def forget_data() -> None:
    """Drop the cached images, so the next :func:`data` reads the files again (a test that fakes a full set)."""
    _data.cache_clear()


def full_set_present(dataset: str) -> bool:
    """Whether this server has ``dataset``'s full IDX files (looked for afresh each time: a few file checks)."""
    return find_full(dataset) is not None


@functools.cache
def classifier(dataset: str) -> ImageClassifier:
    """The project's classifier of ``dataset``, the quality meter under every sample and every training preview."""
    return load_classifier(classifier_dir(dataset), dataset)


MODELS = SessionModels(
    lambda dataset: load_checkpoint(shipped_model_dir(dataset)), SESSION_MODELS_MB * 1_000_000, SESSION_TTL_S
)
JOB = TrainingJob(classifier=classifier, keep=lambda: MODELS.folders_in_use())
LIMITS = TrainingLimits.for_environment()
HEAVY = SessionSlots(limit=1)  # sampling, sweeps, comparisons, the oracle chain, the loss curve: one per page


def session_id(request: Any) -> str:
    """The Gradio session a request comes from (each page load and each API client has its own)."""
    return str(getattr(request, "session_hash", None) or LOCAL_SESSION)


def seen(request: Any) -> str:
    """Note that a session is still here (it keeps its training run) and return its id."""
    session = session_id(request)
    JOB.owner_seen(session)
    return session


def model_for(request: Any) -> LoadedModel:
    """The model this session samples from (of its chosen dataset), or a message for the page if it cannot be loaded."""
    try:
        return MODELS.get(seen(request))
    except CheckpointError as err:
        raise user_error(f"The model could not be loaded ({err}). Upload or train one in tab 3.") from None


def dataset_for(request: Any) -> str:
    """The dataset this session has chosen ("digits" until it picks another)."""
    return MODELS.dataset(session_id(request))


def choose_dataset(request: Any, dataset: str) -> LoadedModel:
    """Make ``dataset`` this session's choice (checked: a page may send anything) and return its model."""
    try:
        dataset_info(dataset)
    except ValueError:
        raise user_error(f"Choose one of the datasets: {', '.join(DATASETS)}.") from None
    MODELS.choose(seen(request), dataset)
    return model_for(request)


def end_session(request: Any) -> None:
    """A page has closed: its model goes, its heavy requests stop, its training run stops after a grace period."""
    session = session_id(request)
    MODELS.forget(session)
    JOB.forget(session)
    HEAVY.leave(session)


def folders_in_use() -> set[Path]:
    """Checkpoint folders that clean-up must keep: every session's model and every finished run's result."""
    return MODELS.folders_in_use() | JOB.folders()


@functools.cache
def _student() -> LoadedModel:
    return load_checkpoint(student_model_dir())


def student() -> LoadedModel:
    """The shipped few-step student (read-only, shared): live guidance's model."""
    try:
        return _student()
    except CheckpointError as err:
        raise user_error(f"The live-guidance student could not be loaded ({err}).") from None


def teacher() -> LoadedModel:
    """The shipped digit model the student was distilled from (read-only, shared), whatever model a session uses."""
    try:
        return MODELS.default("digits")
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


def execution_for(loaded: LoadedModel) -> Execution:
    """How a model runs for ten guided digits (timed once per process and architecture, then cached)."""
    return sampling_execution(loaded.model, 10, SamplerSettings())


def warm_up() -> None:
    """Load the shipped model and choose its precision and runtime in the background, once the server starts.

    The choice is timed (about 0.4 s, plus about 0.2 s to export the ONNX graph), so the first person to
    sample does not wait for it. A failure here is only logged: the first request will try again.
    """
    try:
        LOG.info("network on this machine: %s", execution_for(teacher()).describe())
        settings = student_live_settings()
        LOG.info("live-guidance student runs as %s-%s", settings.runtime, settings.precision)
    except Exception:
        LOG.exception("warm-up failed; the first request will load the model instead")
