"""Tab 4, sample: handlers called directly and through the running server, on a tiny model."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import imageio.v3 as iio
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from ui_fixtures import error_text, last

from ddpm_ui import sample_tab, state

pytestmark = pytest.mark.usefixtures("tiny_live")


def test_sampling_returns_sheet_gif_and_files() -> None:
    sheet, gif, files, summary = last(sample_tab.sample_digits(["2", "5", "9"], 2, 3.0, "ddim", 6, 0.0, 7))
    assert sheet.ndim == 3 and sheet.shape[2] == 3
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 6  # one frame per recorded step (every step: 6 < 25)
    png, gif_copy, npz = files
    assert Path(png).suffix == ".png" and Path(gif_copy) == Path(gif)
    with np.load(npz) as f:
        assert f["images"].shape == (6, 28, 28) and f["images"].dtype == np.uint8
        assert f["labels"].tolist() == [2, 2, 5, 5, 9, 9]
    assert "6 digits" in summary and "seed 7" in summary and "6 frames" in summary


def test_sampling_is_reproducible_from_the_seed() -> None:
    a = last(sample_tab.sample_digits(["4"], 2, 2.0, "dpmpp", 5, 0.0, 11))[2][2]
    b = last(sample_tab.sample_digits(["4"], 2, 2.0, "dpmpp", 5, 0.0, 11))[2][2]
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
def test_bad_sampling_input_gets_a_message(args: tuple, message: str) -> None:
    with pytest.raises(gr.Error) as excinfo:
        last(sample_tab.sample_digits(*args))
    assert message in error_text(excinfo)


def test_guidance_sweep_rows_plot_and_table() -> None:
    sheet, plot, note = last(sample_tab.guidance_sweep(["0", "1"], 2, "0, 1, 4", "dpmpp", 5, 0.0, 0))
    assert sheet.ndim == 3 and plot.ndim == 3
    table_rows = [line for line in note.splitlines() if line.startswith("| ") and "accuracy" not in line]
    assert [row.split("|")[1].strip() for row in table_rows] == ["0", "1", "4"]
    with pytest.raises(gr.Error) as excinfo:
        last(sample_tab.guidance_sweep(["0"], 2, "zero, one", "dpmpp", 5, 0.0, 0))
    assert "numbers separated by commas" in error_text(excinfo)


def test_sampler_comparison_lists_every_sampler() -> None:
    sheet, note = last(sample_tab.compare_samplers(["3", "8"], 3.0, 0))
    assert sheet.ndim == 3
    for label in ("DDPM 50 steps", "DDIM 50 steps", "DDIM 10 steps", "DPMPP 15 steps", "DPMPP 6 steps"):
        assert label in note


def test_sample_and_load_endpoints_over_the_api(gradio_client, tiny_dir: Path) -> None:
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
    assert info.startswith("Loaded for this page.")
    with pytest.raises(AppError, match="page's model is unchanged"):
        gradio_client.predict([handle_file(str(tiny_dir / "config.json"))], api_name="/load_model")


ALL = [str(c) for c in range(10)]


def test_live_guidance_draws_each_request_as_it_would_alone_and_reports_bad_ones() -> None:
    images, notes = sample_tab.live_digits([ALL, [], ["3", "8"], ALL], [3.0, 2.0, 1.0, 9.0], [0, 0, 5, 0])
    assert images[0].shape[1] > images[0].shape[0] > 28 and images[2] is not None
    assert images[1] is None and "at least one digit" in notes[1]
    assert images[3] is None and "between 0 and 5 (the range the student was distilled for)" in notes[3]
    passes = f"{state.student_steps()} network passes"
    assert "10 digits" in notes[0] and passes in notes[0] and "together with 1 other" in notes[0]
    alone, note = sample_tab.live_first_view(["3", "8"], 1.0, 5)
    assert np.abs(alone.astype(int) - images[2].astype(int)).max() <= 1  # batching changes the cost, not the digits
    assert "2 digits" in note and "together" not in note
    other_w, _ = sample_tab.live_first_view(["3", "8"], 4.0, 5)
    other_seed, _ = sample_tab.live_first_view(["3", "8"], 1.0, 6)
    assert not np.array_equal(other_w, alone) and not np.array_equal(other_seed, alone)


def test_teacher_beside_student_from_the_same_noise() -> None:
    sheet, note = sample_tab.teacher_beside_student(["1", "7"], 2.0, 3)
    assert sheet.ndim == 3 and "same $x_T$ (seed 3)" in note and "DPM-Solver++ for 10 steps" in note
    with pytest.raises(gr.Error) as excinfo:
        sample_tab.teacher_beside_student(["1"], 7.5, 0)
    assert "between 0 and 5 (the range the student was distilled for)" in error_text(excinfo)


def test_sweep_and_comparison_include_the_student() -> None:
    _, _, note = last(sample_tab.guidance_sweep(["2", "6"], 2, "1, 4, 8", "dpmpp", 5, 0.0, 0))
    lines = [line for line in note.splitlines() if line.startswith("| ") and "w |" not in line]
    rows = {line.split("|")[1].strip(): line for line in lines}
    assert rows["1"].count("%") == 2 and rows["4"].count("%") == 2  # this page's model's and the student's accuracy
    assert rows["8"].count("%") == 1 and "–" in rows["8"]  # beyond the student's range: the teacher only
    _, compare_note = last(sample_tab.compare_samplers(["3", "8"], 3.0, 0))
    assert f"distilled student {state.student_steps()} steps" in compare_note
    _, beyond = last(sample_tab.compare_samplers(["3"], 7.0, 0))
    assert "distilled student" not in beyond.split("| sampler")[1]


def test_live_guidance_over_the_api(gradio_client) -> None:
    grid, note = gradio_client.predict(["0", "4"], 2.5, 1, api_name="/live_digits")
    assert Path(grid).suffix == ".png" and iio.imread(grid).shape[1] > 2 * 28
    assert note.startswith("w = 2.5, seed 1: 2 digits")
    sheet, compare = gradio_client.predict(["0", "4"], 2.5, 1, api_name="/teacher_beside_student")
    assert Path(sheet).suffix == ".png" and "seed 1" in compare
    _, bad = gradio_client.predict([], 2.5, 1, api_name="/live_digits")
    assert "at least one digit" in bad
