"""The app's state: the live digit model, the training job, and the data and classifier they use.

Everything here is shared by every user of one server and is thread-safe (see :mod:`ddpm_core.live`).
"""

from __future__ import annotations

import functools

from ddpm_core.checkpoints import CheckpointError, LoadedModel
from ddpm_core.classifier import DigitClassifier, load_classifier
from ddpm_core.data import DigitData, load_digits
from ddpm_core.live import LiveModel, TrainingJob
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
    except Exception:
        LOG.exception("warm-up failed; the first request will load the model instead")
