"""The one training run the app trains at a time, and who owns it.

A server has one CPU budget for training, so :class:`TrainingJob` runs at most one run, in a background
thread. The run belongs to the session that started it: only that session can stop it, use it or download
it, and it stops when that session leaves (after a short grace period, so a page that briefly loses its
connection keeps its run). Everyone else sees when it will end. The job trains a private copy (nobody's
model is touched), saves checkpoints atomically into its own run folder, records the loss curve and a
preview grid (ten images per class, sampled from the EMA weights every few seconds at the app's default
sampler and the run's dataset's default guidance weight) with the classifier's guided accuracy on it, and
stops within one training step of :meth:`TrainingJob.stop`. Old run folders are deleted when a new run
starts, unless a session still uses the model in them.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ddpm_core.checkpoints import LoadedModel, load_checkpoint
from ddpm_core.classifier import ImageClassifier, classify
from ddpm_core.data import ImageData, dataset_info
from ddpm_core.image_io import to_uint8
from ddpm_core.paths import runs_dir
from ddpm_core.sampling import SamplerSettings, sample
from ddpm_core.training import TrainConfig, TrainProgress, train

LOG = logging.getLogger(__name__)
OWNER_GRACE_S = 30.0  # a run outlives its owner's page by this long (a reconnect within it keeps the run)
RUN_MAX_AGE_S = 2 * 3600.0  # run folders older than this are deleted when a new run starts (unless in use)


class TrainingBusyError(RuntimeError):
    """A run was asked for while one is going, or a result before it is ready; the message is for people."""


class NotYourRunError(PermissionError):
    """A session asked to stop, use or download a run that another session owns."""


@dataclass(frozen=True)
class TrainingLimits:
    """Hard caps on one run in the app (the command line has none): its minutes and its steps."""

    max_minutes: float = 30.0
    max_steps: int = 20_000

    @classmethod
    def for_environment(cls, environ: Mapping[str, str] = os.environ) -> TrainingLimits:
        """Tighter caps on a Hugging Face Space (``SPACE_ID`` is set there), where many share two cores."""
        return cls(max_minutes=10.0, max_steps=6_000) if environ.get("SPACE_ID") else cls()

    def check(self, config: TrainConfig) -> None:
        """Raise a readable ValueError unless the run has a time budget and both budgets lie within the caps."""
        if config.max_minutes is None or not 0 < config.max_minutes <= self.max_minutes:
            raise ValueError(f"A run in the app needs a time budget of more than 0 and at most {self.max_minutes:g} "
                             "minutes (use the command line for longer runs).")  # fmt: skip
        if config.max_steps is not None and not 0 < config.max_steps <= self.max_steps:
            raise ValueError(f"A run in the app may take at most {self.max_steps:,} training steps.")


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
    owner: str = ""  # the session that started the run
    stop_reason: str = ""  # "" (ran to its budget), "asked" or "owner left"


PREVIEW_PER_CLASS = 10
PREVIEW_SHARE = 0.1  # previews may take at most about this share of the run's time


class TrainingJob:
    """One background training run at a time for the whole app, owned by the session that started it.

    ``classifier`` (called with the run's dataset whenever a preview is judged; the app passes its cached ones)
    reads the previews;
    without one the job shows the pictures and reports no accuracy. ``keep`` lists run folders that must
    survive clean-up (the app passes the folders sessions' models are loaded from).
    """

    def __init__(
        self,
        preview_every_s: float = 5.0,
        classifier: Callable[[str], ImageClassifier] | None = None,
        owner_grace_s: float = OWNER_GRACE_S,
        keep: Callable[[], Iterable[Path]] = set,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.preview_every_s = preview_every_s
        self.owner_grace_s = owner_grace_s
        self._classifier = classifier
        self._keep = keep
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = JobStatus()
        self._owner_left_at: float | None = None
        self._results: dict[str, Path] = {}  # each session's last finished checkpoint

    # ------------------------------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------------------------------

    def status(self) -> JobStatus:
        """A copy of the current run's status (safe to read while training runs)."""
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

    def owns(self, session: str) -> bool:
        """Whether ``session`` started the run that is going (or went last)."""
        with self._lock:
            return bool(self._status.owner) and self._status.owner == session

    def busy_text(self, now_wall: float | None = None) -> str:
        """For everyone else: whose run is going and when it will end, or "" when the trainer is free."""
        status = self.status()
        if not status.running:
            return ""
        ends = (now_wall if now_wall is not None else time.time()) + status.eta_s
        until = time.strftime("%H:%M:%S UTC", time.gmtime(ends)) if status.step else "(starting)"
        return (
            f"Another visitor's training run is going: step {status.step:,}, {100 * status.fraction:.0f}% of its "
            f"budget, busy until about {until} ({status.eta_s:.0f} s left). One run at a time per server; "
            "everything else works meanwhile."
        )

    def result(self, session: str) -> Path:
        """The checkpoint folder of ``session``'s last finished run."""
        with self._lock:
            status, folder = self._status, self._results.get(session)
        if status.running and status.owner == session:
            raise TrainingBusyError("your run is still going; stop it or wait for it to finish")
        if folder is None:
            if status.owner == session:
                raise FileNotFoundError("your last run saved no checkpoint (it failed or was stopped early)")
            if status.owner:
                raise NotYourRunError("this page has no finished training run; the last run was another visitor's")
            raise FileNotFoundError("no training run has saved a checkpoint yet")
        return folder

    def load_result(self, session: str) -> LoadedModel:
        """Load the checkpoint of ``session``'s last finished run."""
        return load_checkpoint(self.result(session))

    def folders(self) -> set[Path]:
        """Run folders that hold someone's finished model (clean-up keeps them)."""
        with self._lock:
            return set(self._results.values())

    # ------------------------------------------------------------------------------------------
    # Owning
    # ------------------------------------------------------------------------------------------

    def start(
        self, config: TrainConfig, data: ImageData, owner: str, resume: LoadedModel | None = None,
        limits: TrainingLimits | None = None,
    ) -> int:  # fmt: skip
        """Start ``owner``'s run in the background; TrainingBusyError if a run is already going."""
        if limits is not None:
            limits.check(config)
        config.validate()
        with self._lock:
            if self.running:
                raise TrainingBusyError(self._busy_reason())
            run_id = self._status.run_id + 1
            out_dir = runs_dir() / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{run_id}"
            self._status = JobStatus(running=True, max_steps=config.max_steps, run_id=run_id, owner=owner)
            self._owner_left_at = None
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, args=(config, data, resume, out_dir), name="ddpm-training", daemon=True
            )
            self._thread.start()
        self._clean_old_runs(keep={out_dir})
        return run_id

    def _busy_reason(self) -> str:
        s = self._status
        left = f", about {s.eta_s:.0f} s left" if s.step else ""
        return f"a training run is already going (step {s.step:,}{left}); one run at a time per server"

    def stop(self, session: str) -> bool:
        """Ask ``session``'s run to stop after the current step (it saves its last checkpoint).

        Returns False if no run is going; NotYourRunError if the run is another session's.
        """
        with self._lock:
            if not self.running:
                return False
            if self._status.owner != session:
                raise NotYourRunError("the run that is going is another visitor's; only they can stop it")
            self._status.stop_reason = "asked"
        self._stop.set()
        return True

    def owner_left(self, session: str) -> None:
        """``session``'s page closed (or its stream was dropped): its run stops after the grace period."""
        with self._lock:
            if self._status.owner == session and self.running and self._owner_left_at is None:
                self._owner_left_at = self._clock()

    def owner_seen(self, session: str) -> None:
        """``session`` is back within the grace period: its run carries on."""
        with self._lock:
            if self._status.owner == session:
                self._owner_left_at = None

    def forget(self, session: str) -> None:
        """``session`` has ended for good: its finished result is no longer anyone's."""
        self.owner_left(session)
        with self._lock:
            self._results.pop(session, None)

    def _should_stop(self) -> bool:
        if self._stop.is_set():
            return True
        with self._lock:
            left = self._owner_left_at
            if left is not None and self._clock() - left >= self.owner_grace_s:
                self._status.stop_reason = "owner left"
                return True
        return False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends (or ``timeout`` passes); True if it has ended."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def _clean_old_runs(self, keep: Iterable[Path]) -> None:
        """Delete run folders older than RUN_MAX_AGE_S that neither this job nor any session still uses."""
        keep_resolved = {Path(k).resolve() for k in (*keep, *self._keep(), *self.folders())}
        cutoff = time.time() - RUN_MAX_AGE_S
        for folder in runs_dir().glob("run-*"):
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff and folder.resolve() not in keep_resolved:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:  # removed by someone else meanwhile
                continue

    # ------------------------------------------------------------------------------------------
    # The run itself
    # ------------------------------------------------------------------------------------------

    def _preview(self, p: TrainProgress, dataset: str) -> tuple[np.ndarray, float | None]:
        """Ten images per class from the EMA weights at the app's default sampler and ``dataset``'s default w, and
        the classifier's accuracy on them (the w the Sample tab starts at, so the two numbers agree)."""
        labels = list(range(10)) * PREVIEW_PER_CLASS
        settings = SamplerSettings(w=dataset_info(dataset).default_w, seed=0, runtime="torch")
        # PyTorch, not ONNX Runtime: the EMA weights change between previews, and each change means a new export
        result = sample(p.ema_model, p.schedule, labels, settings)
        accuracy = None
        if self._classifier is not None:
            accuracy = classify(self._classifier(dataset), result.images).accuracy(labels)
        return to_uint8(result.images), accuracy

    def _run(self, config: TrainConfig, data: ImageData, resume: LoadedModel | None, out_dir: Path) -> None:
        next_preview = [0.0]

        def on_progress(p: TrainProgress) -> None:
            preview, accuracy = None, None
            now = time.perf_counter()
            if p.done or now >= next_preview[0]:
                preview, accuracy = self._preview(p, data.dataset)
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
                should_stop=self._should_stop, device="cpu", name=out_dir.name,
            )  # fmt: skip
            with self._lock:
                self._status.checkpoint = result.checkpoint
                self._status.stopped_early = result.stopped_early
                if self._status.stop_reason != "owner left":
                    self._results[self._status.owner] = result.checkpoint
        except Exception as exc:  # reported to the UI; the app and everyone's models carry on
            LOG.exception("training run %s failed", out_dir.name)
            readable = isinstance(exc, (FloatingPointError, ValueError))  # our own messages (a NaN loss, a bad setting)
            with self._lock:
                self._status.error = str(exc) if readable else "an unexpected error stopped it (logged on the server)"
        finally:
            with self._lock:
                self._status.running = False
