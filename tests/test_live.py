"""The shared live model and the single training job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ddpm_core.checkpoints import load_checkpoint
from ddpm_core.classifier import load_classifier
from ddpm_core.data import load_bundled
from ddpm_core.live import LiveModel, TrainingBusyError, TrainingJob
from ddpm_core.schedule import ScheduleConfig
from ddpm_core.training import TrainConfig

LONG_TINY = TrainConfig(
    preset="tiny", batch_size=16, warmup_steps=2, max_steps=100_000, max_minutes=5,
    schedule=ScheduleConfig("cosine", 50), checkpoint_every_s=1e9, report_every=2,
)  # fmt: skip


@pytest.fixture(autouse=True)
def private_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDPM_PLAYGROUND_HOME", str(tmp_path / "home"))


def test_live_model_loads_lazily_once_and_swaps() -> None:
    calls = []

    def loader():
        calls.append(1)
        return "model-a"

    live = LiveModel(loader)  # type: ignore[arg-type]
    assert live.peek() is None and calls == []
    assert live.get() == "model-a" and live.get() == "model-a" and calls == [1]
    assert live.swap("model-b") == "model-a"  # type: ignore[arg-type]
    assert live.get() == "model-b"


def test_training_job_streams_progress_stops_quickly_and_saves() -> None:
    job = TrainingJob(preview_every_s=0.0, classifier=load_classifier)
    job.start(LONG_TINY, load_bundled())
    deadline = time.time() + 60
    while job.status().step < 6 and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(TrainingBusyError, match="already going"):
        job.start(LONG_TINY, load_bundled())
    asked = time.perf_counter()
    job.stop()
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
    loaded = job.load_result()
    assert loaded.config["training"]["steps"] == status.step
    assert load_checkpoint(status.checkpoint).model.config == loaded.model.config


def test_a_failing_run_reports_its_error_and_frees_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    import ddpm_core.live as live_mod

    def explode(*args, **kwargs):
        raise FloatingPointError("loss became nan at step 3")

    monkeypatch.setattr(live_mod, "train", explode)
    job = TrainingJob()
    job.start(LONG_TINY, load_bundled())
    assert job.wait(timeout=10)
    assert "loss became nan" in (job.status().error or "")
    with pytest.raises(FileNotFoundError, match="no training run"):
        job.load_result()
    monkeypatch.undo()
    job.start(TrainConfig(**{**LONG_TINY.__dict__, "max_steps": 2}), load_bundled())  # free again
    assert job.wait(timeout=60) and job.status().step == 2
