"""The single training job: progress, stopping, errors, who owns a run, its caps and old run folders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ddpm_core.checkpoints import load_checkpoint
from ddpm_core.classifier import load_classifier
from ddpm_core.data import load_bundled
from ddpm_core.paths import classifier_dir
from ddpm_core.sampling import SamplerSettings, sample
from ddpm_core.schedule import ScheduleConfig
from ddpm_core.training import TrainConfig
from ddpm_core.training_job import NotYourRunError, TrainingBusyError, TrainingJob, TrainingLimits

LONG_TINY = TrainConfig(
    preset="tiny", batch_size=16, warmup_steps=2, max_steps=100_000, max_minutes=5,
    schedule=ScheduleConfig("cosine", 50), checkpoint_every_s=1e9, report_every=2,
)  # fmt: skip


@pytest.fixture(autouse=True)
def private_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDPM_PLAYGROUND_HOME", str(tmp_path / "home"))


def shipped_classifier(dataset: str):
    """The shipped classifier of ``dataset``, as the app passes it to the job."""
    return load_classifier(classifier_dir(dataset), dataset)


def test_training_job_streams_progress_stops_quickly_and_saves() -> None:
    job = TrainingJob(preview_every_s=0.0, classifier=shipped_classifier)
    job.start(LONG_TINY, load_bundled(), owner="a")
    deadline = time.time() + 60
    while job.status().step < 6 and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(TrainingBusyError, match="already going"):
        job.start(LONG_TINY, load_bundled(), owner="b")
    with pytest.raises(NotYourRunError):
        job.stop("b")
    assert job.running
    asked = time.perf_counter()
    assert job.stop("a")
    assert job.wait(timeout=30)
    stop_seconds = time.perf_counter() - asked
    status = job.status()
    assert status.error is None and not status.running and status.stopped_early
    assert stop_seconds < 5, f"stop took {stop_seconds:.1f} s"
    assert status.preview is not None and status.preview.shape == (100, 28, 28)  # ten rows of 0…9
    assert 1 <= len(status.accuracies) == len(status.accuracy_steps)
    assert all(0.0 <= a <= 1.0 for a in status.accuracies)
    assert status.accuracy_steps == sorted(status.accuracy_steps) and status.accuracy_steps[-1] <= status.step
    assert len(status.losses) == len(status.steps_seen) >= 3
    loaded = job.load_result("a")
    assert loaded.config["training"]["steps"] == status.step
    with pytest.raises(NotYourRunError):
        job.result("b")
    assert load_checkpoint(status.checkpoint).model.config == loaded.model.config


def test_a_fashion_run_reads_its_previews_with_the_fashion_classifier() -> None:
    asked: list[str] = []

    def classifier(dataset: str):
        asked.append(dataset)
        return shipped_classifier(dataset)

    job = TrainingJob(preview_every_s=0.0, classifier=classifier)
    job.start(TrainConfig(**{**LONG_TINY.__dict__, "max_steps": 2}), load_bundled("fashion"), owner="a")
    assert job.wait(timeout=60)
    status = job.status()
    assert status.error is None and status.accuracies and set(asked) == {"fashion"}
    assert job.load_result("a").dataset == "fashion"


@pytest.mark.parametrize(("dataset", "w"), [("fashion", 6.0), ("digits", 4.0)])
def test_the_preview_samples_at_the_datasets_default_w(dataset: str, w: float, monkeypatch: pytest.MonkeyPatch) -> None:
    import ddpm_core.training_job as job_mod

    used: list[SamplerSettings] = []

    def spy(model, schedule, labels, settings, *args, **kwargs):
        used.append(settings)
        return sample(model, schedule, labels, settings, *args, **kwargs)

    monkeypatch.setattr(job_mod, "sample", spy)
    job = TrainingJob(preview_every_s=0.0)
    job.start(TrainConfig(**{**LONG_TINY.__dict__, "max_steps": 1}), load_bundled(dataset), owner="a")
    assert job.wait(timeout=60) and job.status().error is None
    assert used and {s.w for s in used} == {w}  # the w the Sample tab starts at for this dataset


def failed_run(monkeypatch: pytest.MonkeyPatch, error: Exception) -> TrainingJob:
    """A job whose training raised ``error`` at once (``train`` patched), waited for until it ended."""
    import ddpm_core.training_job as job_mod

    def explode(*args, **kwargs):
        raise error

    monkeypatch.setattr(job_mod, "train", explode)
    job = TrainingJob()
    job.start(LONG_TINY, load_bundled(), owner="a")
    assert job.wait(timeout=10)
    return job


def test_a_failing_run_reports_its_error_and_frees_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    job = failed_run(monkeypatch, FloatingPointError("loss became nan at step 3"))
    assert "loss became nan" in (job.status().error or "")
    with pytest.raises(FileNotFoundError, match="saved no checkpoint"):
        job.load_result("a")
    monkeypatch.undo()
    job.start(TrainConfig(**{**LONG_TINY.__dict__, "max_steps": 2}), load_bundled(), owner="a")  # free again
    assert job.wait(timeout=60) and job.status().step == 2


def test_an_unexpected_error_is_reported_without_its_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    job = failed_run(monkeypatch, RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x7 and 9x3)"))
    error = job.status().error or ""
    assert "unexpected error" in error and "mat1" not in error


def test_a_run_stops_after_its_owner_leaves_unless_the_owner_comes_back() -> None:
    clock = [0.0]
    job = TrainingJob(owner_grace_s=10.0, clock=lambda: clock[0])
    job.start(LONG_TINY, load_bundled(), owner="a")
    job.owner_left("a")
    clock[0] = 5.0
    job.owner_seen("a")  # back within the grace period (a reconnect): the run carries on
    clock[0] = 50.0
    time.sleep(0.3)
    assert job.running
    job.owner_left("b")  # someone else leaving changes nothing
    time.sleep(0.3)
    assert job.running
    job.forget("a")
    clock[0] = 61.0
    assert job.wait(timeout=30), "the run outlived its owner"
    status = job.status()
    assert status.stop_reason == "owner left" and status.error is None
    with pytest.raises(FileNotFoundError):  # a departed owner's result is nobody's
        job.result("a")


@pytest.mark.parametrize(
    ("minutes", "steps", "message"),
    [(None, 100, "time budget"), (0.0, None, "time budget"), (31.0, None, "time budget"), (5.0, 10**9, "steps")],
)
def test_a_run_needs_a_time_budget_within_the_caps(minutes: float | None, steps: int | None, message: str) -> None:
    config = TrainConfig(**{**LONG_TINY.__dict__, "max_minutes": minutes, "max_steps": steps})
    job = TrainingJob()
    with pytest.raises(ValueError, match=message):
        job.start(config, load_bundled(), owner="a", limits=TrainingLimits())
    assert not job.running


def test_a_space_gets_tighter_caps() -> None:
    space, here = TrainingLimits.for_environment({"SPACE_ID": "user/app"}), TrainingLimits.for_environment({})
    assert space.max_minutes < here.max_minutes and space.max_steps < here.max_steps


def test_starting_a_run_deletes_old_run_folders_nobody_uses(tmp_path: Path) -> None:
    from ddpm_core.paths import runs_dir

    old, kept, recent = (runs_dir() / name for name in ("run-old", "run-kept", "run-recent"))
    for folder in (old, kept, recent):
        folder.mkdir(parents=True)
    long_ago = time.time() - 3 * 3600
    for folder in (old, kept):
        os.utime(folder, (long_ago, long_ago))
    job = TrainingJob(keep=lambda: {kept})
    job.start(TrainConfig(**{**LONG_TINY.__dict__, "max_steps": 1}), load_bundled(), owner="a")
    assert job.wait(timeout=60)
    assert not old.exists() and kept.exists() and recent.exists()
