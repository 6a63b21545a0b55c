"""Tabs 3 and 4 (and the model-vs-oracle view): handlers called directly and through the running server.

A tiny checkpoint (trained for a few steps in a fixture) stands in for the shipped model so that every
call is quick; the module restores the app's live model afterwards.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import gradio as gr
import imageio.v3 as iio
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from ddpm_core.checkpoints import MODEL_FILE, load_checkpoint
from ddpm_core.data import load_bundled
from ddpm_core.live import LiveModel
from ddpm_core.schedule import ScheduleConfig
from ddpm_core.training import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tabs34") / "tiny-digits"
    config = TrainConfig(
        preset="tiny", batch_size=16, max_steps=3, max_minutes=None, schedule=ScheduleConfig("cosine", 50)
    )
    train(config, load_bundled(), out_dir=out, device="cpu", name="tiny-digits")
    return out


@pytest.fixture(scope="module", autouse=True)
def tiny_live(app_module: ModuleType, tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Serve the tiny model for this module; private run folders; the previous live model comes back after."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DDPM_PLAYGROUND_HOME", str(tmp_path_factory.mktemp("home")))
    mp.setattr(app_module, "LIVE", LiveModel(lambda: load_checkpoint(tiny_dir)))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def fresh_tiny(app_module: ModuleType, tiny_dir: Path) -> None:
    """Each test starts with the tiny model live (tests that load or train replace it)."""
    app_module.LIVE.swap(load_checkpoint(tiny_dir))


def error_text(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value.message if isinstance(excinfo.value, gr.Error) else excinfo.value)


def last(generator: Iterator) -> tuple:
    outputs = list(generator)
    assert outputs, "the handler yielded nothing"
    return outputs[-1]


# ---------------------------------------------------------------------------------------------- tab 3


def test_model_info_describes_the_live_model(app_module: ModuleType) -> None:
    info = app_module.model_info()
    assert "tiny-digits" in info and "cosine, T = 50" in info and "trained 3 steps" in info


def test_loading_two_files_or_a_zip_swaps_the_model(app_module: ModuleType, tiny_dir: Path, tmp_path: Path) -> None:
    before = app_module.LIVE.get()
    info = app_module.load_model([str(tiny_dir / "model.safetensors"), str(tiny_dir / "config.json")])
    assert info.startswith("Loaded.") and app_module.LIVE.get() is not before
    archive = app_module.download_model()
    with zipfile.ZipFile(archive) as zf:
        assert sorted(Path(n).name for n in zf.namelist()) == ["config.json", "model.safetensors"]
    assert app_module.load_model([archive]).startswith("Loaded.")


@pytest.mark.parametrize("damage", ["truncate", "not-json", "nothing"])
def test_a_bad_checkpoint_is_refused_and_the_live_model_stays(
    app_module: ModuleType, tiny_dir: Path, tmp_path: Path, damage: str
) -> None:
    weights, config = tmp_path / "model.safetensors", tmp_path / "config.json"
    data = (tiny_dir / MODEL_FILE).read_bytes()
    weights.write_bytes(data[: len(data) // 3] if damage == "truncate" else data)
    config.write_text("{oops" if damage == "not-json" else (tiny_dir / "config.json").read_text())
    live = app_module.LIVE.get()
    files = [] if damage == "nothing" else [str(weights), str(config)]
    with pytest.raises(gr.Error) as excinfo:
        app_module.load_model(files)
    message = error_text(excinfo)
    assert "live model is unchanged" in message or "upload model.safetensors" in message
    assert app_module.LIVE.get() is live


def test_training_streams_finishes_and_can_become_live(app_module: ModuleType) -> None:
    outputs = list(app_module.train_model(0, 6, "tiny", 16, 2e-3, 0.15, 0, app_module.FRESH_CHOICE))
    message, frame, preview = outputs[-1]
    assert "finished at step **6**" in message
    assert list(frame.columns) == ["step", "loss"] and frame["step"].iloc[-1] == 6
    assert preview is not None and preview.ndim == 2 and preview.shape[1] > 10 * 28
    assert app_module.stop_training() == "No training run is going."
    info = app_module.use_trained_model()
    assert "trained model is now live" in info and "trained 6 steps" in info
    with zipfile.ZipFile(app_module.download_trained_model()) as zf:
        assert len(zf.namelist()) == 2


def test_a_second_training_request_is_told_to_wait(app_module: ModuleType) -> None:
    first = app_module.train_model(0, 100_000, "tiny", 16, 2e-3, 0.15, 0, app_module.FRESH_CHOICE)
    next(first)  # the job is running now
    try:
        with pytest.raises(gr.Error) as excinfo:
            next(app_module.train_model(0.5, 0, "tiny", 16, 2e-3, 0.15, 0, app_module.FRESH_CHOICE))
        assert "already going" in error_text(excinfo)
    finally:
        app_module.stop_training()
        first.close()
        assert app_module.JOB.wait(timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0, "tiny", 16, 2e-3, 0.1, 0), "time budget"),
        ((999, 0, "tiny", 16, 2e-3, 0.1, 0), "at most"),
        ((1, 0, "enormous", 16, 2e-3, 0.1, 0), "preset"),
        ((1, 0, "tiny", 16, 2e-3, 1.0, 0), "context-drop"),
    ],
)
def test_bad_training_settings_get_a_message(app_module: ModuleType, args: tuple, message: str) -> None:
    with pytest.raises(gr.Error) as excinfo:
        next(app_module.train_model(*args, app_module.FRESH_CHOICE))
    assert message in error_text(excinfo)
    assert not app_module.JOB.running


# ---------------------------------------------------------------------------------------------- tab 4


def test_sampling_returns_sheet_gif_and_files(app_module: ModuleType) -> None:
    sheet, gif, files, summary = last(app_module.sample_digits(["2", "5", "9"], 2, 3.0, "ddim", 6, 0.0, 7))
    assert sheet.ndim == 3 and sheet.shape[2] == 3
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 6  # one frame per recorded step (every step: 6 < 25)
    png, gif_copy, npz = files
    assert Path(png).suffix == ".png" and Path(gif_copy) == Path(gif)
    with np.load(npz) as f:
        assert f["images"].shape == (6, 28, 28) and f["images"].dtype == np.uint8
        assert f["labels"].tolist() == [2, 2, 5, 5, 9, 9]
    assert "6 digits" in summary and "seed 7" in summary and "6 frames" in summary


def test_sampling_is_reproducible_from_the_seed(app_module: ModuleType) -> None:
    a = last(app_module.sample_digits(["4"], 2, 2.0, "dpmpp", 5, 0.0, 11))[2][2]
    b = last(app_module.sample_digits(["4"], 2, 2.0, "dpmpp", 5, 0.0, 11))[2][2]
    with np.load(a) as fa, np.load(b) as fb:
        assert np.array_equal(fa["images"], fb["images"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([], 1, 3.0, "dpmpp", 10, 0.0, 0), "at least one digit"),
        ((["1"], 9, 3.0, "dpmpp", 10, 0.0, 0), "Samples per class"),
        ((["1"], 1, -1.0, "dpmpp", 10, 0.0, 0), "guidance weight"),
        ((["1"], 1, 3.0, "ddim", 51, 0.0, 0), "steps must lie in 1…50"),
        ((["1"], 1, 3.0, "ddim", 10, 2.0, 0), "η"),
        ((["1"], 1, 3.0, "dpmpp", 10, 0.0, -5), "seed"),
    ],
)
def test_bad_sampling_input_gets_a_message(app_module: ModuleType, args: tuple, message: str) -> None:
    with pytest.raises(gr.Error) as excinfo:
        last(app_module.sample_digits(*args))
    assert message in error_text(excinfo)


def test_guidance_sweep_rows_plot_and_table(app_module: ModuleType) -> None:
    sheet, plot, note = app_module.guidance_sweep(["0", "1"], 2, "0, 1, 4", "dpmpp", 5, 0.0, 0)
    assert sheet.ndim == 3 and plot.ndim == 3
    table_rows = [line for line in note.splitlines() if line.startswith("| ") and "accuracy" not in line]
    assert [row.split("|")[1].strip() for row in table_rows] == ["0", "1", "4"]
    with pytest.raises(gr.Error) as excinfo:
        app_module.guidance_sweep(["0"], 2, "zero, one", "dpmpp", 5, 0.0, 0)
    assert "numbers separated by commas" in error_text(excinfo)


def test_sampler_comparison_lists_every_sampler(app_module: ModuleType) -> None:
    sheet, note = app_module.compare_samplers(["3", "8"], 3.0, 0)
    assert sheet.ndim == 3
    for label in ("DDPM 50 steps", "DDIM 50 steps", "DDIM 10 steps", "DPMPP 15 steps", "DPMPP 6 steps"):
        assert label in note


def test_model_vs_oracle_and_loss_curve(app_module: ModuleType) -> None:
    strip, note = app_module.model_vs_oracle(3, 0, 25, 0)
    assert strip.ndim == 3 and strip.shape[1] > 8 * 28 * 4
    assert "ε error" in note
    with pytest.raises(gr.Error) as excinfo:
        app_module.model_vs_oracle(3, 0, 50, 0)  # the tiny model has T = 50
    assert "0…49" in error_text(excinfo)
    assert app_module.model_loss_curve().ndim == 3


# ---------------------------------------------------------------------------------------------- server


def test_tab34_endpoints_over_the_api(gradio_client, tiny_dir: Path) -> None:
    named = set(gradio_client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert named >= {
        "/model_info", "/load_model", "/download_model", "/train_model", "/stop_training", "/use_trained_model",
        "/download_trained_model", "/sample_digits", "/guidance_sweep", "/compare_samplers", "/model_vs_oracle",
        "/model_loss_curve",
    }  # fmt: skip
    sheet, gif, files, summary = gradio_client.predict(
        ["1", "7"], 1, 3.0, "dpmpp", 5, 0.0, 0, api_name="/sample_digits"
    )
    assert Path(sheet).suffix == ".png" and len(iio.imread(gif, index=None)) == 5
    assert sorted(Path(f).suffix for f in files) == [".gif", ".npz", ".png"]
    assert "2 digits" in summary
    info = gradio_client.predict(
        [handle_file(str(tiny_dir / "model.safetensors")), handle_file(str(tiny_dir / "config.json"))],
        api_name="/load_model",
    )
    assert info.startswith("Loaded.")
    with pytest.raises(AppError, match="live model is unchanged"):
        gradio_client.predict([handle_file(str(tiny_dir / "config.json"))], api_name="/load_model")


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


def test_old_request_folders_are_cleared_but_not_the_live_models(app_module: ModuleType, tmp_path: Path) -> None:
    import os

    parent = app_module.runs_root() / "samples"
    parent.mkdir(parents=True, exist_ok=True)
    old, recent = parent / "old-request", parent / "recent-request"
    for folder in (old, recent):
        folder.mkdir()
        (folder / "digits.png").write_bytes(b"png")
    an_hour_and_more = time.time() - app_module.WORKDIR_MAX_AGE_S - 60
    os.utime(old, (an_hour_and_more, an_hour_and_more))
    fresh = app_module._workdir("samples")
    assert fresh.is_dir() and not old.exists() and recent.exists()

    uploads = app_module.runs_root() / "uploads"
    source = app_module.LIVE.get().path
    app_module.load_model([str(source / "model.safetensors"), str(source / "config.json")])
    live_dir = app_module.LIVE.get().path
    assert live_dir.parent == uploads
    os.utime(live_dir, (an_hour_and_more, an_hour_and_more))
    app_module._workdir("uploads")
    assert live_dir.exists()  # the live model's own folder stays however old it is
