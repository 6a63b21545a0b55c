"""Tab 3, train or load: handlers called directly and through the running server, on a tiny model."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import gradio as gr
import pytest
from ui_fixtures import error_text, page

from ddpm_core.checkpoints import MODEL_FILE
from ddpm_core.paths import runs_dir
from ddpm_core.training import TrainConfig
from ddpm_ui import common, model_card, state, train_tab

pytestmark = pytest.mark.usefixtures("tiny_live")


def test_model_info_describes_this_pages_model() -> None:
    info = model_card.model_info()
    assert info.startswith("**Dataset:** MNIST digits (handwritten digits 0 to 9).")
    assert "tiny-digits" in info and "cosine, T = 50" in info and "trained 3 steps" in info
    assert "shared by every visitor" in info


def test_loading_two_files_or_a_zip_changes_only_that_pages_model(tiny_dir: Path, tmp_path: Path) -> None:
    a, b = page("a"), page("b")
    before = state.model_for(a)
    info = train_tab.load_model([str(tiny_dir / "model.safetensors"), str(tiny_dir / "config.json")], a)
    assert info.startswith("Loaded for this page.") and "for this page only" in info
    assert state.model_for(a) is not before and state.model_for(a).path.parent == runs_dir() / "uploads"
    assert state.model_for(b) is before and "shared by every visitor" in model_card.model_info(b)
    archive = train_tab.download_model(a)
    with zipfile.ZipFile(archive) as zf:
        assert sorted(Path(n).name for n in zf.namelist()) == ["config.json", "model.safetensors"]
    assert train_tab.load_model([archive], a).startswith("Loaded for this page.")
    assert "Back to the shipped model" in train_tab.use_shipped_model(a) and state.model_for(a) is before


@pytest.mark.parametrize("damage", ["truncate", "not-json", "nothing"])
def test_a_bad_checkpoint_is_refused_and_the_live_model_stays(tiny_dir: Path, tmp_path: Path, damage: str) -> None:
    weights, config = tmp_path / "model.safetensors", tmp_path / "config.json"
    data = (tiny_dir / MODEL_FILE).read_bytes()
    weights.write_bytes(data[: len(data) // 3] if damage == "truncate" else data)
    config.write_text("{oops" if damage == "not-json" else (tiny_dir / "config.json").read_text())
    mine = state.model_for(page("a"))
    files = [] if damage == "nothing" else [str(weights), str(config)]
    with pytest.raises(gr.Error) as excinfo:
        train_tab.load_model(files, page("a"))
    message = error_text(excinfo)
    assert "page's model is unchanged" in message
    assert state.model_for(page("a")) is mine


def test_training_streams_finishes_and_only_its_page_can_use_it() -> None:
    outputs = list(train_tab.train_model(1, 6, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE))
    message, frame, accuracy, preview = outputs[-1]
    assert "finished at step **6**" in message and "guided accuracy" in message
    assert list(frame.columns) == ["step", "loss"] and frame["step"].iloc[-1] == 6
    assert list(accuracy.columns) == ["step", "accuracy (%)"] and len(accuracy) >= 1
    assert accuracy["accuracy (%)"].between(0, 100).all() and accuracy["step"].iloc[-1] == 6
    assert preview is not None and preview.ndim == 2 and preview.shape[0] > 10 * 28 and preview.shape[1] > 10 * 28
    trained = state.JOB.load_result(state.LOCAL_SESSION).config["training"]["config"]
    assert trained["recipe"] == "fast" and trained["prediction"] == TrainConfig().prediction
    assert train_tab.stop_training() == "No training run is going."
    for refused in (train_tab.use_trained_model, train_tab.download_trained_model):  # another page
        with pytest.raises(gr.Error) as excinfo:
            refused(page("someone-else"))
        assert "another visitor's" in error_text(excinfo)
    assert "shared by every visitor" in model_card.model_info(page("someone-else"))
    info = train_tab.use_trained_model()
    assert "now uses the trained model" in info and "trained 6 steps" in info
    with zipfile.ZipFile(train_tab.download_trained_model()) as zf:
        assert len(zf.namelist()) == 2


def test_the_classic_recipe_trains_an_eps_model_and_fills_in_its_settings() -> None:
    list(train_tab.train_model(1, 3, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, "classic"))
    trained = state.JOB.load_result(state.LOCAL_SESSION)
    assert trained.config["training"]["config"]["recipe"] == "classic"
    assert trained.model.config.prediction == "eps"
    preset, batch, lr = train_tab.recipe_settings("classic")
    classic = TrainConfig.from_recipe("classic")
    assert (preset["value"], batch["value"], lr["value"]) == (classic.preset, classic.batch_size, classic.lr)
    with pytest.raises(gr.Error) as excinfo:
        next(train_tab.train_model(1, 0, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, "turbo"))
    assert "Choose one of the recipes" in error_text(excinfo)


def test_a_second_page_is_told_to_wait_and_cannot_stop_the_run() -> None:
    owner, other = page("owner"), page("other")
    first = train_tab.train_model(5, 20_000, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, request=owner)
    next(first)  # the job is running now
    try:
        with pytest.raises(gr.Error) as excinfo:
            next(train_tab.train_model(0.5, 0, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, request=other))
        assert "already going" in error_text(excinfo) and "busy until" in error_text(excinfo)
        with pytest.raises(gr.Error) as excinfo:
            train_tab.stop_training(other)
        assert "another visitor's" in error_text(excinfo) and state.JOB.running
        assert "busy until" in train_tab.training_board(other)
        assert "Your run is training" in train_tab.training_board(owner)
    finally:
        assert "Stopping" in train_tab.stop_training(owner)
        first.close()
        assert state.JOB.wait(timeout=60)
    assert "trainer is free" in train_tab.training_board(other)


def test_a_run_stops_soon_after_its_page_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state.JOB, "owner_grace_s", 0.5)
    stream = train_tab.train_model(5, 20_000, "tiny", 16, 2e-3, 0.15, 0, train_tab.FRESH_CHOICE, request=page("gone"))
    next(stream)
    train_tab.end_session(page("gone"))  # what Gradio's unload event calls
    assert state.JOB.wait(timeout=30), "the run outlived its page"
    assert state.JOB.status().stop_reason == "owner left"
    stream.close()
    with pytest.raises(gr.Error):  # nobody can use what a departed page trained
        train_tab.use_trained_model(page("gone"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0, "tiny", 16, 2e-3, 0.1, 0), "time budget"),
        ((0, 10**9, "tiny", 16, 2e-3, 0.1, 0), "time budget"),
        ((1, 10**9, "tiny", 16, 2e-3, 0.1, 0), "training steps"),
        ((999, 0, "tiny", 16, 2e-3, 0.1, 0), "time budget"),
        ((float("nan"), 0, "tiny", 16, 2e-3, 0.1, 0), "time budget"),
        ((1, 0, "enormous", 16, 2e-3, 0.1, 0), "widths"),
        ((1, 0, "tiny", 16, 2e-3, 1.0, 0), "context-drop"),
    ],
)
def test_bad_training_settings_get_a_message(args: tuple, message: str) -> None:
    with pytest.raises(gr.Error) as excinfo:
        next(train_tab.train_model(*args, train_tab.FRESH_CHOICE))
    assert message in error_text(excinfo)
    assert not state.JOB.running


def test_training_over_the_api_can_be_stopped(gradio_client) -> None:
    job = gradio_client.submit(5, 20_000, "tiny", 16, 2e-3, 0.15, 0, "start fresh", api_name="/train_model")
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


def test_old_request_folders_are_cleared_but_not_the_models_in_use() -> None:
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
    source = state.model_for(page("a")).path
    train_tab.load_model([str(source / "model.safetensors"), str(source / "config.json")], page("a"))
    train_tab.load_model([str(source / "model.safetensors"), str(source / "config.json")], page("b"))
    a_dir, b_dir = state.model_for(page("a")).path, state.model_for(page("b")).path
    assert a_dir.parent == uploads == b_dir.parent and a_dir != b_dir
    train_tab.end_session(page("b"))  # b's page closed: its folder is no longer anyone's
    for folder in (a_dir, b_dir):
        os.utime(folder, (an_hour_and_more, an_hour_and_more))
    with pytest.raises(gr.Error):  # a bad upload still opens a request folder, clearing old ones
        train_tab.load_model([str(source / "config.json")], page("c"))
    assert a_dir.exists() and state.model_for(page("a")).path == a_dir  # a's model's own folder stays
    assert not b_dir.exists()
