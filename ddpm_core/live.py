"""The model users sample from, and the one training job the app runs at a time.

Both are shared by every user of a running app, so both are thread-safe:

* :class:`LiveModel` holds the live checkpoint. It loads the shipped model lazily on first use and
  swaps in a new one only after it has loaded and passed every check, so a bad upload never
  disturbs the model other users are sampling from.
* :class:`TrainingJob` runs at most one training run in a background thread. It trains a private
  copy (the live model is never touched), saves checkpoints atomically into its own run folder,
  records the loss curve and a preview grid (ten digits per class, sampled from the EMA weights at the
  app's default sampler every few seconds) with the classifier's guided accuracy on it, and stops within
  one training step of :meth:`TrainingJob.stop`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ddpm_core.checkpoints import LoadedModel, load_checkpoint
from ddpm_core.classifier import DigitClassifier, classify
from ddpm_core.data import DigitData
from ddpm_core.image_io import to_uint8
from ddpm_core.paths import runs_dir, shipped_model_dir
from ddpm_core.sampling import SamplerSettings, sample
from ddpm_core.training import TrainConfig, TrainProgress, train


class LiveModel:
    """The checkpoint every user samples from; replaced only by a fully loaded and checked one."""

    def __init__(self, loader: Callable[[], LoadedModel] = lambda: load_checkpoint(shipped_model_dir())) -> None:
        self._loader = loader
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()
        self.version = 0  # changes whenever a different model becomes live (for caches keyed on it)

    def get(self) -> LoadedModel:
        """The live model, loading the default one on first use."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._loader()
                self.version += 1
            return self._loaded

    def peek(self) -> LoadedModel | None:
        """The live model if one is loaded, without loading."""
        return self._loaded

    def swap(self, new: LoadedModel) -> LoadedModel | None:
        """Make ``new`` live; returns the model it replaced."""
        with self._lock:
            old, self._loaded = self._loaded, new
            self.version += 1
            return old


class TrainingBusyError(RuntimeError):
    """Raised when a second training run is asked for while one is going."""


@dataclass
class JobStatus:
    """A snapshot of the training job for the UI."""

    running: bool = False
    step: int = 0
    max_steps: int | None = None
    fraction: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float = 0.0
    steps_seen: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    preview: np.ndarray | None = None  # uint8 [100, 28, 28], ten rows of the classes 0…9
    accuracy_steps: list[int] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)  # the classifier's verdict on each preview
    checkpoint: Path | None = None
    stopped_early: bool = False
    error: str | None = None
    run_id: int = 0
    execution: str = ""  # how the network trains here (precision, timings, CPU capability)


PREVIEW_PER_CLASS = 10
PREVIEW_SHARE = 0.1  # previews may take at most about this share of the run's time


class TrainingJob:
    """One background training run at a time for the whole app.

    ``classifier`` (called whenever a preview is judged; the app passes its cached one) reads the previews;
    without one the job shows the pictures and reports no accuracy.
    """

    def __init__(self, preview_every_s: float = 5.0, classifier: Callable[[], DigitClassifier] | None = None) -> None:
        self.preview_every_s = preview_every_s
        self._classifier = classifier
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = JobStatus()

    def status(self) -> JobStatus:
        """A copy of the current status (safe to read while training runs)."""
        with self._lock:
            s = self._status
            return replace(
                s,
                steps_seen=list(s.steps_seen),
                losses=list(s.losses),
                accuracy_steps=list(s.accuracy_steps),
                accuracies=list(s.accuracies),
            )

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, config: TrainConfig, data: DigitData, resume: LoadedModel | None = None) -> int:
        """Start a run in the background; raises TrainingBusyError if one is already going."""
        config.validate()
        with self._lock:
            if self.running:
                raise TrainingBusyError(
                    "a training run is already going (perhaps another user's); wait for it or stop it first"
                )
            run_id = self._status.run_id + 1
            out_dir = runs_dir() / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{run_id}"
            self._status = JobStatus(running=True, max_steps=config.max_steps, run_id=run_id)
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, args=(config, data, resume, out_dir), name="ddpm-training", daemon=True
            )
            self._thread.start()
        return run_id

    def stop(self) -> None:
        """Ask the run to stop after the current step; it saves its last checkpoint."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends (or ``timeout`` passes); True if it has ended."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def _preview(self, p: TrainProgress) -> tuple[np.ndarray, float | None]:
        """Ten digits per class from the EMA weights at the app's default sampler, and the classifier's accuracy."""
        labels = list(range(10)) * PREVIEW_PER_CLASS
        # PyTorch, not ONNX Runtime: the EMA weights change between previews, and each change means a new export
        result = sample(p.ema_model, p.schedule, labels, SamplerSettings(seed=0, runtime="torch"))
        accuracy = None
        if self._classifier is not None:
            accuracy = classify(self._classifier(), result.images).accuracy(labels)
        return to_uint8(result.images), accuracy

    def _run(self, config: TrainConfig, data: DigitData, resume: LoadedModel | None, out_dir: Path) -> None:
        next_preview = [0.0]

        def on_progress(p: TrainProgress) -> None:
            preview, accuracy = None, None
            now = time.perf_counter()
            if p.done or now >= next_preview[0]:
                preview, accuracy = self._preview(p)
                cost = time.perf_counter() - now  # keep previews to about PREVIEW_SHARE of the run
                next_preview[0] = time.perf_counter() + max(self.preview_every_s, cost / PREVIEW_SHARE)
            with self._lock:
                s = self._status
                s.step, s.fraction, s.elapsed_s, s.eta_s = p.step, p.fraction, p.elapsed_s, p.eta_s
                s.execution = p.execution.describe()
                s.steps_seen.append(p.step)
                s.losses.append(p.loss)
                if preview is not None:
                    s.preview = preview
                if accuracy is not None:
                    s.accuracy_steps.append(p.step)
                    s.accuracies.append(accuracy)

        try:
            result = train(
                config, data, out_dir=out_dir, resume=resume, callback=on_progress,
                should_stop=self._stop.is_set, device="cpu", name=out_dir.name,
            )  # fmt: skip
            with self._lock:
                self._status.checkpoint = result.checkpoint
                self._status.stopped_early = result.stopped_early
        except Exception as exc:  # reported to the UI; the app and the live model carry on
            with self._lock:
                self._status.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._status.running = False

    def load_result(self) -> LoadedModel:
        """Load the last checkpoint this job saved (after it has ended)."""
        status = self.status()
        if status.running:
            raise TrainingBusyError("the run is still going; stop it or wait for it to finish")
        if status.checkpoint is None:
            raise FileNotFoundError("no training run has saved a checkpoint yet")
        return load_checkpoint(status.checkpoint)
