"""Safe for a crowd: several sessions against one server never see each other's models or runs; heavy requests
are bounded before they start, one per page, and stop within one step when their page cancels or leaves.

Each ``gradio_client.Client`` is its own session (as each browser page is); the tiny stand-in model is the
shipped one here, so every call is quick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from ui_fixtures import error_text, last, page

from ddpm_core.checkpoints import save_checkpoint
from ddpm_core.schedule import make_schedule
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet
from ddpm_ui import heavy, oracle_tab, sample_tab, state

pytestmark = pytest.mark.usefixtures("tiny_live")

ALL = [str(c) for c in range(10)]


@pytest.fixture()
def clients(app_server: str, tmp_path: Path) -> Iterator[list[Client]]:
    made = [Client(app_server, verbose=False, download_files=str(tmp_path / f"c{i}")) for i in range(3)]
    try:
        yield made
    finally:
        for client in made:
            client.close()


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different (untrained) tiny model with its own name: what a visitor might upload."""
    torch.manual_seed(7)
    folder = tmp_path_factory.mktemp("upload") / "someone-elses"
    schedule = make_schedule("cosine", 50)
    return save_checkpoint(folder, ContextUNet(WIDTH_PRESETS["tiny"]), schedule, {"name": "someone-elses"})


def work_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ddpm-work" and t.is_alive()]


def test_one_sessions_model_never_reaches_another(clients: list[Client], other_model: Path) -> None:
    a, b, _ = clients
    sample = (["1", "7"], 1, 3.0, "dpmpp", 5, 0.0, 0)
    before = Path(b.predict(*sample, api_name="/sample_digits")[0]).read_bytes()
    info = a.predict(
        [handle_file(str(other_model / "model.safetensors")), handle_file(str(other_model / "config.json"))],
        api_name="/load_model",
    )
    assert "someone-elses" in info and "for this page only" in info
    assert "someone-elses" in a.predict(api_name="/model_info")
    assert "someone-elses" not in b.predict(api_name="/model_info")
    after = Path(b.predict(*sample, api_name="/sample_digits")[0]).read_bytes()
    assert after == before  # B's digits, pixel for pixel, whatever A loaded
    mine = Path(a.predict(*sample, api_name="/sample_digits")[0]).read_bytes()
    assert mine != before  # A really samples from its own model
    assert Path(b.predict(api_name="/download_model")).name.startswith("tiny-digits")
    assert Path(a.predict(api_name="/download_model")).name.startswith("someone-elses")


def test_only_the_owner_can_stop_use_or_download_a_run(clients: list[Client]) -> None:
    a, b, _ = clients
    run = a.submit(5, 20_000, "tiny", 16, 2e-3, 0.15, 0, "start fresh", api_name="/train_model")
    deadline = time.time() + 60
    while time.time() < deadline and not (run.outputs() and "Training…" in run.outputs()[-1][0]):
        time.sleep(0.3)
    assert state.JOB.running
    for api in ("/stop_training", "/use_trained_model", "/download_trained_model"):
        with pytest.raises(AppError, match="another visitor's"):
            b.predict(api_name=api)
    assert state.JOB.running, "another session stopped the run"
    with pytest.raises(AppError, match="already going"):
        b.predict(1, 0, "tiny", 16, 2e-3, 0.15, 0, "start fresh", api_name="/train_model")
    assert "Stopping" in a.predict(api_name="/stop_training")
    assert "stopped at step" in run.result(timeout=60)[0]
    assert Path(a.predict(api_name="/download_trained_model")).suffix == ".zip"
    assert "now uses the trained model" in a.predict(api_name="/use_trained_model")
    assert "trained" not in b.predict(api_name="/model_info").split("—")[0]
    with pytest.raises(AppError, match="another visitor's"):
        b.predict(api_name="/download_trained_model")


def test_a_closed_page_lets_go_of_its_model_and_its_run(app_server: str, other_model: Path, tmp_path: Path) -> None:
    state.JOB.owner_grace_s, grace = 0.5, state.JOB.owner_grace_s
    try:
        client = Client(app_server, verbose=False, download_files=str(tmp_path))
        session = client.session_hash
        client.predict(
            [handle_file(str(other_model / "model.safetensors")), handle_file(str(other_model / "config.json"))],
            api_name="/load_model",
        )
        assert state.MODELS.has_own(session)
        client.submit(5, 20_000, "tiny", 16, 2e-3, 0.15, 0, "start fresh", api_name="/train_model")
        deadline = time.time() + 60
        while time.time() < deadline and not state.JOB.running:
            time.sleep(0.2)
        client.close()  # the heartbeat ends: Gradio's unload event fires for this session
        deadline = time.time() + 60
        while time.time() < deadline and (state.MODELS.has_own(session) or state.JOB.running):
            time.sleep(0.2)
        assert not state.MODELS.has_own(session), "the closed page's model stayed in memory"
        assert not state.JOB.running and state.JOB.status().stop_reason == "owner left"
    finally:
        state.JOB.owner_grace_s = grace


def test_a_page_runs_one_heavy_request_at_a_time_and_others_are_not_held_up(clients: list[Client]) -> None:
    a, b, _ = clients
    sweep = a.submit(ALL, 8, "0, 1, 2, 3, 4, 5", "ddpm", 50, 0.0, 0, True, api_name="/guidance_sweep")
    deadline = time.time() + 30
    while time.time() < deadline and not work_threads():
        time.sleep(0.05)
    with pytest.raises(AppError, match="already has 1 request running"):
        a.predict(["1"], 1, 3.0, "dpmpp", 5, 0.0, 0, api_name="/sample_digits")
    assert "1 digits" in b.predict(["1"], 1, 3.0, "dpmpp", 5, 0.0, 0, api_name="/sample_digits")[3]
    sweep.cancel()
    deadline = time.time() + 10
    while time.time() < deadline and work_threads():
        time.sleep(0.05)
    assert not work_threads(), "the cancelled sweep kept computing"
    assert "1 digits" in a.predict(["1"], 1, 3.0, "dpmpp", 5, 0.0, 0, api_name="/sample_digits")[3]


def test_an_abandoned_sweep_stops_when_its_client_goes(app_server: str, tmp_path: Path) -> None:
    client = Client(app_server, verbose=False, download_files=str(tmp_path))
    client.submit(ALL, 8, "0, 1, 2, 3, 4, 5", "ddpm", 50, 0.0, 0, True, api_name="/guidance_sweep")
    deadline = time.time() + 30
    while time.time() < deadline and not work_threads():
        time.sleep(0.05)
    assert work_threads(), "the sweep never started"
    client.close()
    deadline = time.time() + 15
    while time.time() < deadline and work_threads():
        time.sleep(0.05)
    assert not work_threads(), "the abandoned sweep kept the CPU busy"


@pytest.mark.parametrize(
    "start",
    [
        lambda: sample_tab.sample_digits(ALL, 8, 3.0, "ddpm", 50, 0.0, 0, True, request=page("x")),
        lambda: sample_tab.guidance_sweep(ALL, 8, "0, 1, 2, 3, 4", "ddpm", 50, 0.0, 0, True, request=page("x")),
        lambda: sample_tab.compare_samplers(ALL, 3.0, 0, request=page("x")),
        lambda: oracle_tab.model_loss_curve(request=page("x")),
    ],
    ids=["sample", "sweep", "compare", "loss-curve"],
)
def test_closing_a_heavy_handler_stops_its_work_and_frees_the_slot(start, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heavy, "STREAM_EVERY_S", 0.01)
    oracle_tab._LOSS_CURVES.clear()
    stream = start()
    next(stream)  # the work is running in its thread now
    assert work_threads() and state.HEAVY.running("x") == 1
    stream.close()  # what Gradio does when the page cancels or goes away
    assert not work_threads() and state.HEAVY.running("x") == 0


def test_too_much_work_is_refused_before_it_starts() -> None:
    started = time.perf_counter()
    with pytest.raises(gr.Error) as excinfo:  # guided at every step: two passes per digit per step of T = 50
        last(sample_tab.guidance_sweep(ALL, 8, "2, 3, 4, 5, 6, 7, 8, 9", "ddpm", 50, 0.0, 0, False))
    teacher, student = 8 * 80 * 50 * 2, 4 * 80 * state.student_steps()  # the student runs at w ≤ 5 only
    assert "at most 50,000" in error_text(excinfo) and f"{teacher + student:,} images" in error_text(excinfo)
    assert time.perf_counter() - started < 1.0 and not work_threads()
