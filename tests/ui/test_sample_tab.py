"""Tab 4, sample: handlers called directly and through the running server, on a tiny model."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from ui_fixtures import error_text, last

from ddpm_core import paths
from ddpm_core.checkpoints import load_checkpoint
from ddpm_core.classifier import classify, diversity
from ddpm_core.data import to_model_range
from ddpm_core.sampling import MID_INTERVAL, NO_INTERVAL, SamplerSettings, sample
from ddpm_ui import heavy, sample_tab, state

pytestmark = pytest.mark.usefixtures("tiny_live")

# The button-driven handlers and how many outputs each has: pictures, then files and text (no State).
BUTTON_HANDLERS = {"sample_digits": 4, "guidance_sweep": 3, "compare_samplers": 2, "teacher_beside_student": 2}


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


def test_the_page_gets_the_same_sampling_with_alt_texts_in_the_same_update() -> None:
    args = (["2", "5", "9"], 2, 3.0, "ddim", 6, 0.0, 7)
    api_sheet, api_gif, _, api_summary = last(sample_tab.sample_digits(*args))
    sheet, gif, files, summary = last(sample_tab.sample_digits.for_page(*args))
    assert sheet["__type__"] == gif["__type__"] == "update"
    assert np.array_equal(sheet["value"], api_sheet)  # same seed, same digits
    assert np.array_equal(iio.imread(gif["value"], index=None), iio.imread(api_gif, index=None))
    assert [Path(f).suffix for f in files] == [".png", ".gif", ".npz"] and files[1] == gif["value"]
    assert summary.split("\n\n")[-1] == api_summary.split("\n\n")[-1]  # the same verdict table (timings differ)
    assert sheet["alt_text"].startswith("6 sampled digits (2, 5 and 9, 2 per class) at w = 3 with ddim, seed 7")
    assert gif["alt_text"].startswith("Denoising animation, 6 frames")


@pytest.fixture
def held_sampling(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Sampling that stops after its first step until the returned event is set, so the handlers must stream."""
    monkeypatch.setattr(heavy, "STREAM_EVERY_S", 0.01)
    go_on, real = threading.Event(), sample_tab.sample

    def held(*args, callback=None, **kwargs):
        def first_step_then_wait(info):
            callback(info)
            if info.index == 0:
                go_on.wait(60)

        return real(*args, callback=first_step_then_wait if callback else None, **kwargs)

    monkeypatch.setattr(sample_tab, "sample", held)
    return go_on


def is_skip(value: object) -> bool:
    return isinstance(value, dict) and value == gr.skip()


STREAMING = {
    "sample_digits": (["2", "5"], 1, 3.0, "ddim", 4, 0.0, 7),
    "guidance_sweep": (["2", "5"], 2, "1, 2", "ddim", 4, 0.0, 7),
    "compare_samplers": (["2", "5"], 3.0, 7),
}


@pytest.mark.parametrize("name", list(STREAMING))
@pytest.mark.parametrize("for_page", [False, True], ids=["api", "page"])
def test_streamed_values_have_the_handlers_own_outputs(name: str, for_page: bool, held_sampling) -> None:
    """While the work runs, every value streamed (the page left as it is, or a preview) fills exactly the outputs."""
    handler = getattr(sample_tab, name)
    stream = (handler.for_page if for_page else handler)(*STREAMING[name])
    while True:  # until the first step's report is in (the work then waits for the event)
        streamed = next(stream)
        assert len(streamed) == BUTTON_HANDLERS[name], streamed
        if name != "sample_digits" or not is_skip(streamed[0]):
            break
    held_sampling.set()
    *rest, final = list(stream)
    assert all(len(value) == BUTTON_HANDLERS[name] for value in rest) and len(final) == BUTTON_HANDLERS[name]
    if name == "sample_digits":  # the preview: the model's current x̂₀, with an alt text that says so on the page
        preview, gif, files, where = streamed
        assert (gif, files) == (None, None) and where.startswith("step 1 of 4: the model's current x̂₀")
        if for_page:
            alt = f"Sampling in progress, {where} for 2 digits (2 and 5), one column per digit."
            assert preview["alt_text"] == alt
            preview = preview["value"]
        assert isinstance(preview, np.ndarray) and preview.shape[1] > preview.shape[0] >= 28 * 3  # two digits, 3×


def reading(path: str) -> tuple[list[int], list[int], list[float]]:
    """What the classifier reads in a saved npz (asked, read, confidence), independently of the tab's code."""
    with np.load(path) as f:
        images, labels = f["images"], f["labels"]
    verdict = classify(state.classifier("digits"), to_model_range(images))
    return labels.tolist(), verdict.predicted.tolist(), verdict.confidence.tolist()


def test_every_verdict_is_text_with_a_mark_not_only_a_colour() -> None:
    sheet, _, files, summary = last(sample_tab.sample_digits.for_page(["1", "4", "8"], 3, 2.0, "dpmpp", 4, 0.0, 5))
    sheet_alt = sheet["alt_text"]
    asked, read, sure = reading(files[2])
    rows = [line for line in summary.splitlines() if line.startswith("| ") and "digit asked" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "4", "8"]  # one row per class, in order
    cells = [cell.strip() for row in rows for cell in row.strip("|").split("|")[1:]]
    expected = [
        f"✓ {r} ({100 * c:.0f}%)" if a == r else f"✗ read as {r} ({100 * c:.0f}%)"
        for a, r, c in zip(asked, read, sure, strict=True)
    ]
    assert cells == expected  # three samples per class, class-major as sampled
    wrong = [f"a {a} read as {r}" for a, r in zip(asked, read, strict=True) if a != r]
    assert f"{9 - len(wrong)} of 9 read as asked" in sheet_alt
    assert all(w in sheet_alt for w in wrong[:8])
    assert wrong, "the tiny three-step model should misread some digits, so that ✗ is exercised"


def test_verdict_wording_carries_a_mark() -> None:
    assert sample_tab.verdict_caption(3, 3, 0.984) == "✓ 3 · 98%"
    assert sample_tab.verdict_caption(3, 5, 0.61) == "✗ 5 · 61%"
    assert sample_tab.verdict_text(3, 3, 0.984) == "✓ 3 (98%)"
    assert sample_tab.verdict_text(3, 5, 0.61) == "✗ read as 5 (61%)"


def test_sheet_colours_and_marks_follow_the_verdict() -> None:
    blank = np.zeros((2, 28, 28), dtype=np.uint8)
    read = int(classify(state.classifier("digits"), to_model_range(blank)).predicted[0])  # whatever it makes of black
    green, red = np.array(sample_tab.OK_COLOR, np.uint8), np.array(sample_tab.BAD_COLOR, np.uint8)
    agrees = sample_tab._verdict_sheet(blank, np.array([read, read]), 2)
    disagrees = sample_tab._verdict_sheet(blank, np.array([(read + 1) % 10] * 2), 2)
    assert agrees.accuracy == 1.0 and disagrees.accuracy == 0.0
    assert agrees.table.count("✓") == 2 and "✗" not in agrees.table and agrees.misread == ()
    assert (
        disagrees.table.count(f"✗ read as {read}") == 2
        and disagrees.misread == (f"a {(read + 1) % 10} read as {read}",) * 2
    )
    assert (agrees.image == green).all(-1).any() and not (agrees.image == red).all(-1).any()
    assert (disagrees.image == red).all(-1).any() and not (disagrees.image == green).all(-1).any()
    # Same digits and the same reading: the two sheets differ in the caption glyph (✓ or ✗), not only in its colour.
    ink = lambda sheet: (sheet.image < 200).any(-1)  # noqa: E731  (dark or coloured pixels, whatever the colour)
    assert agrees.image.shape == disagrees.image.shape and not np.array_equal(ink(agrees), ink(disagrees))


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
    for handler in (sample_tab.sample_digits, sample_tab.sample_digits.for_page):
        with pytest.raises(gr.Error) as excinfo:
            last(handler(*args))
        assert message in error_text(excinfo)


def test_guidance_sweep_rows_plot_and_table() -> None:
    sheet, plot, note = last(sample_tab.guidance_sweep.for_page(["0", "1"], 2, "0, 1, 4", "dpmpp", 5, 0.0, 0))
    assert sheet["value"].ndim == 3 and plot["value"].ndim == 3
    sheet_alt, plot_alt = sheet["alt_text"], plot["alt_text"]
    # the tiny model is the page's; the student runs at w ≤ its top (5), so at all three w: six rows
    assert "6 rows of digits (0 and 1, the first sample of each)" in sheet_alt
    assert "w = 0, w = 0 (distilled student), w = 1, w = 1 (distilled student), w = 4" in sheet_alt
    assert "from 0 to 4" in plot_alt and "this page's model and distilled student" in plot_alt
    table_rows = [line for line in note.splitlines() if line.startswith("| ") and "accuracy" not in line]
    assert [row.split("|")[1].strip() for row in table_rows] == ["0", "1", "4"]
    with pytest.raises(gr.Error) as excinfo:
        last(sample_tab.guidance_sweep(["0"], 2, "zero, one", "dpmpp", 5, 0.0, 0))
    assert "numbers separated by commas" in error_text(excinfo)


def test_sampler_comparison_lists_every_sampler() -> None:
    sheet, note = last(sample_tab.compare_samplers.for_page(["3", "8"], 3.0, 0))
    assert sheet["value"].ndim == 3
    alt = sheet["alt_text"]
    labels = ("DDPM 50 steps", "DDIM 50 steps", "DDIM 10 steps", "DPMPP 15 steps", "DPMPP 6 steps")
    rows = [line for line in note.splitlines() if line.startswith("| ") and "sampler |" not in line]
    assert [row.split("|")[1].strip() for row in rows][:5] == list(labels)  # one table row per picture row
    assert all(row.split("|")[3].strip().endswith("%") for row in rows)
    assert alt.startswith(f"{len(rows)} rows of digits (3 and 8)") and all(label in alt for label in labels)


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


def live_view(classes: list[str], w: float, seed: int) -> tuple[np.ndarray | None, str]:
    """The live grid and note for one person alone (a batch of one)."""
    images, notes = sample_tab.live_digits([classes], [w], [seed])
    return images[0], notes[0]


def test_live_guidance_draws_each_request_as_it_would_alone_and_reports_bad_ones() -> None:
    images, notes = sample_tab.live_digits([ALL, [], ["3", "8"], ALL], [3.0, 2.0, 1.0, 9.0], [0, 0, 5, 0])
    assert images[0].shape[1] > images[0].shape[0] > 28 and images[2] is not None
    assert images[1] is None and "at least one digit" in notes[1]
    assert images[3] is None and "between 0 and 5 (the range the student was distilled for)" in notes[3]
    passes = f"{state.student_steps()} network passes"
    assert "10 digits" in notes[0] and passes in notes[0] and "together with 1 other" in notes[0]
    alone, note = live_view(["3", "8"], 1.0, 5)
    assert np.abs(alone.astype(int) - images[2].astype(int)).max() <= 1  # batching changes the cost, not the digits
    assert "2 digits" in note and "together" not in note
    other_w, _ = live_view(["3", "8"], 4.0, 5)
    other_seed, _ = live_view(["3", "8"], 1.0, 6)
    assert not np.array_equal(other_w, alone) and not np.array_equal(other_seed, alone)


def test_teacher_beside_student_from_the_same_noise() -> None:
    sheet, note = sample_tab.teacher_beside_student(["1", "7"], 2.0, 3)
    assert sheet.ndim == 3 and "same $x_T$ (seed 3)" in note and "DPM-Solver++ for 10 steps" in note
    rows = [line.split("|")[1:-1] for line in note.splitlines() if line.startswith("| ") and "row |" not in line]
    assert [row[0].strip() for row in rows] == ["distilled student", "teacher (tiny-digits)"]
    assert [int(row[1]) for row in rows] == [state.student_steps(), 10]  # steps
    assert [int(row[2]) for row in rows] == [state.student_steps(), 20]  # passes per digit: the teacher asks twice
    on_page, same_note = sample_tab.teacher_beside_student.for_page(["1", "7"], 2.0, 3)
    assert on_page["value"].shape == sheet.shape  # the same rows (their captions give times, which differ)
    assert same_note.split("|")[0] == note.split("|")[0]
    assert on_page["alt_text"].startswith("Two rows of digits (1 and 7) from the same starting noise at w = 2")
    for handler in (sample_tab.teacher_beside_student, sample_tab.teacher_beside_student.for_page):
        with pytest.raises(gr.Error) as excinfo:
            handler(["1"], 7.5, 0)
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


def test_sweep_and_comparison_over_the_api_return_what_they_did(gradio_client) -> None:
    """The API returns the pictures alone (their alt texts are for the page's twins)."""
    sheet, plot, note = gradio_client.predict(["0"], 2, "1, 2", "dpmpp", 3, 0.0, 0, True, api_name="/guidance_sweep")
    assert Path(sheet).suffix == Path(plot).suffix == ".png" and "| 2 |" in note
    sheet, note = gradio_client.predict(["1"], 3.0, 0, api_name="/compare_samplers")
    assert Path(sheet).suffix == ".png" and "| DDPM 50 steps |" in note


def test_live_grid_alt_text_follows_its_note() -> None:
    _, note = live_view(["0", "4"], 2.5, 1)
    alt = sample_tab.live_alt_text(note, ["4", "0"])["alt_text"]
    assert alt.startswith("Digits 0 and 4 drawn live by the distilled student") and "w = 2.5, seed 1: 2 digits" in alt
    _, refusal = live_view([], 2.5, 1)
    assert sample_tab.live_alt_text(refusal, [])["alt_text"] is None  # no picture, nothing to describe


def test_the_api_returns_the_original_outputs_and_hides_the_page_twins(gradio_client) -> None:
    api = gradio_client.view_api(return_format="dict", print_info=False)
    returns = {name: len(api["named_endpoints"][f"/{name}"]["returns"]) for name in BUTTON_HANDLERS}
    assert returns == BUTTON_HANDLERS
    named = set(api["named_endpoints"]) | set(api["unnamed_endpoints"])
    assert not any("for_page" in str(name) for name in named)


def build(link: bool) -> tuple[gr.Blocks, dict, gr.State | None]:
    with gr.Blocks() as demo:
        state_ = gr.State(None) if link else None
        controls = sample_tab.build_tab(demo, link=state_)
    return demo, controls, state_


def test_each_button_runs_its_page_twin_and_the_api_event_has_no_trigger() -> None:
    demo, _, _ = build(link=False)
    by_name = {fn.name: fn for fn in demo.fns.values()}
    states = [block for block in demo.blocks.values() if isinstance(block, gr.State)]
    assert [s.value for s in states] == ["digits"]  # only the dataset the tab last showed: no alt-text State left
    buttons = {"sample_digits": "sample-go", "guidance_sweep": "sweep-go", "compare_samplers": "compare-go",
               "teacher_beside_student": "live-teacher"}  # fmt: skip
    for name, outputs in BUTTON_HANDLERS.items():
        api, page = by_name[name], by_name[f"{name}_for_page"]
        assert api.api_name == name and api.targets == [] and api.api_visibility == "public"
        assert page.api_visibility == "private" and len(page.outputs) == len(api.outputs) == outputs
        (target,) = page.targets
        assert (demo.blocks[target[0]].elem_id, target[1]) == (buttons[name], "click")
        assert api.concurrency_id == page.concurrency_id == "sampling"
    (cancel,) = [fn for fn in demo.fns.values() if fn.cancels]
    assert cancel.cancels == [by_name["sample_digits_for_page"]._id]  # Cancel stops what the page started


def test_linkable_controls_are_returned_by_name() -> None:
    _, controls, _ = build(link=False)
    assert set(controls) == {"w", "seed", "sampler", "steps", "eta", "per_class", "digits", "mid", "live_w"}
    assert (controls["w"].minimum, controls["w"].maximum, controls["w"].step) == (0, 8, 0.1)
    assert (controls["live_w"].minimum, controls["live_w"].maximum) == state.student_w_range()
    assert [value for _, value in controls["sampler"].choices] == ["dpmpp", "ddim", "ddpm"]
    assert [value for _, value in controls["digits"].choices] == [str(c) for c in range(10)]
    assert isinstance(controls["mid"], gr.Checkbox) and isinstance(controls["seed"], gr.Number)


def live_triggers(demo: gr.Blocks) -> set[tuple[int, str]]:
    (fn,) = [fn for fn in demo.fns.values() if fn.api_name == "live_digits"]
    return {(block_id, event) for block_id, event in fn.targets}


def test_a_link_redraws_the_live_grid_and_keys_move_it() -> None:
    demo, controls, link = build(link=True)
    triggers = live_triggers(demo)
    assert (link._id, "change") in triggers  # values a link sets redraw the grid
    assert (controls["live_w"]._id, "input") in triggers  # .input fires on arrow keys as well as on drags
    assert (demo._id, "load") in triggers
    unlinked, _, _ = build(link=False)
    assert {event for _, event in live_triggers(unlinked)} == {"input", "change", "load"}
    assert len(live_triggers(unlinked)) == len(triggers) - 1


def test_presets_fit_the_controls_and_fill_them_without_running() -> None:
    demo, controls, _ = build(link=False)
    (dataset,) = [block for block in demo.blocks.values() if isinstance(block, gr.Dataset)]
    assert dataset.sample_labels == ["sharp digits", "diverse digits", "full DDPM"]
    names = ("w", "sampler", "steps", "eta", "mid", "per_class")
    assert [block._id for block in dataset._components] == [controls[name]._id for name in names]
    for preset in sample_tab.PRESETS:
        for name, value in zip(names, (preset.w, preset.sampler, preset.steps, preset.eta, preset.mid_guidance,
                                       preset.per_class), strict=True):  # fmt: skip
            control = controls[name]
            if isinstance(control, gr.Slider):
                assert control.minimum <= value <= control.maximum, (preset.label, name)
                assert (
                    abs(round((value - control.minimum) / control.step) * control.step + control.minimum - value) < 1e-9
                )
            elif isinstance(control, gr.Radio):
                assert value in [v for _, v in control.choices]
    (load,) = [fn for fn in demo.fns.values() if any(block_id == dataset._id for block_id, _ in fn.targets)]
    assert load.api_visibility == "private" and not load.queue  # fills the controls in the page's own request
    assert [block._id for block in load.outputs] == [controls[name]._id for name in names]  # and samples nothing


def test_presets_run_through_the_handler() -> None:
    for preset in sample_tab.PRESETS:
        *_, summary = last(sample_tab.sample_digits(
            ["3"], preset.per_class, preset.w, preset.sampler, preset.steps, preset.eta, 0, preset.mid_guidance,
        ))  # fmt: skip
        assert f"{preset.per_class} digits" in summary and f"{preset.sampler}, w = {preset.w:g}" in summary


def test_sharp_preset_is_less_varied_than_diverse_on_the_shipped_model() -> None:
    """The presets' promise, checked on the shipped model (the README measures it on 1,000 digits per w)."""
    shipped = load_checkpoint(paths.shipped_model_dir())
    labels = torch.arange(10).repeat_interleave(6)
    measured = {}
    for preset in sample_tab.PRESETS[:2]:
        settings = SamplerSettings(
            w=preset.w, sampler=preset.sampler, steps=preset.steps, eta=preset.eta, seed=1,
            guidance_interval=MID_INTERVAL if preset.mid_guidance else NO_INTERVAL,
        )  # fmt: skip
        result = sample(shipped.model, shipped.schedule, labels, settings)
        verdict = classify(state.classifier("digits"), result.images)
        measured[preset.label] = (verdict.accuracy(labels), diversity(verdict.features, labels.numpy()))
    (sharp_acc, sharp_spread), (diverse_acc, diverse_spread) = measured["sharp digits"], measured["diverse digits"]
    print(f"\npresets on the shipped model, 60 digits each (accuracy, diversity): {measured}")
    assert sharp_acc >= 0.95 and diverse_acc >= 0.95, measured
    assert sharp_spread < 0.95 * diverse_spread, measured
