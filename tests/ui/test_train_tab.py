"""Tab 3, train or load: handlers called directly and through the running server, on a tiny model."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import gradio as gr
import pytest
from ui_fixtures import error_text

from ddpm_core.checkpoints import MODEL_FILE
from ddpm_core.paths import runs_dir
from ddpm_core.training import TrainConfig
from ddpm_ui import common, state, train_tab

pytestmark = pytest.mark.usefixtures("tiny_live")


def test_model_info_describes_the_live_model() -> None:
    info = train_tab.model_info()
    assert "tiny-digits" in info and "cosine, T = 50" in info and "trained 3 steps" in info


def test_loading_two_files_or_a_zip_swaps_the_model(tiny_dir: Path, tmp_path: Path) -> None:
    before = state.LIVE.get()
    info = train_tab.load_model([str(tiny_dir / "model.safetensors"), str(tiny_dir / "config.json")])
    assert info.startswith("Loaded.") and state.LIVE.get() is not before
    archive = train_tab.download_model()
    with zipfile.ZipFile(archive) as zf:
        assert sorted(Path(n).name for n in zf.namelist()) == ["config.json", "model.safetensors"]
    assert train_tab.load_model([archive]).startswith("Loaded.")


@pytest.mark.parametrize("damage", ["truncate", "not-json", "nothing"])
def test_a_bad_checkpoint_is_refused_and_the_live_model_stays(tiny_dir: Path, tmp_path: Path, damage: str) -> None:
    weights, config = tmp_path / "model.safetensors", tmp_path / "config.json"
    data = (tiny_dir / MODEL_FILE).read_bytes()
    weights.write_bytes(data[: len(data) // 3] if damage == "truncate" else data)
    config.write_text("{oops" if damage == "not-json" else (tiny_dir / "config.json").read_text())
    live = state.LIVE.get()
    files = [] if damage == "nothing" else [str(weights), str(config)]
    with pytest.raises(gr.Error) as excinfo:
        train_tab.load_model(files)
    message = error_text(excinfo)
    assert "live model is unchanged" in message or "upload model.safetensors" in message
    assert state.LIVE.get() is live


def test_training_streams_finishes_and_can_become_live() -> None:
    outputs = list(train_tab.train_model(0, 6, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE))
    message, frame, accuracy, preview = outputs[-1]
    assert "finished at step **6**" in message and "guided accuracy" in message
    assert list(frame.columns) == ["step", "loss"] and frame["step"].iloc[-1] == 6
    assert list(accuracy.columns) == ["step", "accuracy (%)"] and len(accuracy) >= 1
    assert accuracy["accuracy (%)"].between(0, 100).all() and accuracy["step"].iloc[-1] == 6
    assert preview is not None and preview.ndim == 2 and preview.shape[0] > 10 * 28 and preview.shape[1] > 10 * 28
    trained = state.JOB.load_result().config["training"]["config"]
    assert trained["recipe"] == "fast" and trained["prediction"] == TrainConfig().prediction
    assert train_tab.stop_training() == "No training run is going."
    info = train_tab.use_trained_model()
    assert "trained model is now live" in info and "trained 6 steps" in info
    with zipfile.ZipFile(train_tab.download_trained_model()) as zf:
        assert len(zf.namelist()) == 2


def test_the_classic_recipe_trains_an_eps_model_and_fills_in_its_settings() -> None:
    list(train_tab.train_model(0, 3, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, "classic"))
    trained = state.JOB.load_result()
    assert trained.config["training"]["config"]["recipe"] == "classic"
    assert trained.model.config.prediction == "eps"
    preset, batch, lr = train_tab.recipe_settings("classic")
    classic = TrainConfig.from_recipe("classic")
    assert (preset["value"], batch["value"], lr["value"]) == (classic.preset, classic.batch_size, classic.lr)
    with pytest.raises(gr.Error) as excinfo:
        next(train_tab.train_model(1, 0, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, "turbo"))
    assert "Unknown recipe" in error_text(excinfo)


def test_a_second_training_request_is_told_to_wait() -> None:
    first = train_tab.train_model(0, 100_000, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE)
    next(first)  # the job is running now
    try:
        with pytest.raises(gr.Error) as excinfo:
            next(train_tab.train_model(0.5, 0, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE))
        assert "already going" in error_text(excinfo)
    finally:
        train_tab.stop_training()
        first.close()
        assert state.JOB.wait(timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0, "tiny", 16, 2e-3, 0.1, 0), "time budget"),
        ((999, 0, "tiny", 16, 2e-3, 0.1, 0), "at most"),
        ((1, 0, "enormous", 16, 2e-3, 0.1, 0), "preset"),
        ((1, 0, "tiny", 16, 2e-3, 1.0, 0), "context-drop"),
    ],
)
def test_bad_training_settings_get_a_message(args: tuple, message: str) -> None:
    with pytest.raises(gr.Error) as excinfo:
        next(train_tab.train_model(*args, train_tab.FRESH_CHOICE))
    assert message in error_text(excinfo)
    assert not state.JOB.running


def test_training_over_the_api_can_be_stopped(gradio_client) -> None:
    job = gradio_client.submit(0, 100_000, "tiny", 16, 2e-3, 0.15, 0, "start fresh", api_name="/train_model")
    deadline = time.time() + 60
    while time.time() < deadline:
        outputs = job.outputs()
        if outputs and "Training…" in outputs[-1][0]:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the training run never reported progress")
    asked = time.perf_counter()
    assert "Stopping" in gradio_client.predict(api_name="/stop_training")
    message = job.result(timeout=60)[0]
    assert "stopped at step" in message
    assert time.perf_counter() - asked < 15


def test_old_request_folders_are_cleared_but_not_the_live_models() -> None:
    parent = runs_dir() / "samples"
    parent.mkdir(parents=True, exist_ok=True)
    old, recent = parent / "old-request", parent / "recent-request"
    for folder in (old, recent):
        folder.mkdir()
        (folder / "digits.png").write_bytes(b"png")
    an_hour_and_more = time.time() - common.REQUEST_FILES_MAX_AGE_S - 60
    os.utime(old, (an_hour_and_more, an_hour_and_more))
    fresh = common.request_folder("samples")
    assert fresh.is_dir() and fresh.parent == parent and not old.exists() and recent.exists()

    uploads = runs_dir() / "uploads"
    source = state.LIVE.get().path
    train_tab.load_model([str(source / "model.safetensors"), str(source / "config.json")])
    live_dir = state.LIVE.get().path
    assert live_dir.parent == uploads
    os.utime(live_dir, (an_hour_and_more, an_hour_and_more))
    with pytest.raises(gr.Error):  # a bad upload still opens a request folder, clearing old ones
        train_tab.load_model([str(source / "config.json")])
    assert live_dir.exists() and state.LIVE.get().path == live_dir  # the live model's own folder stays
