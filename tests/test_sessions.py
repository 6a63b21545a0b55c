"""Per-session models (a shared default per dataset, own models, a byte-capped cache that reloads rather than
loses), per-session request slots, and background work that stops within one step of being cancelled."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from ddpm_core.background import BackgroundWork, Cancelled
from ddpm_core.checkpoints import LoadedModel, load_checkpoint, save_checkpoint
from ddpm_core.schedule import make_schedule
from ddpm_core.sessions import MEMORY_FACTOR, BusyError, SessionModels, SessionSlots, resident_bytes
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet


def tiny_checkpoint(folder: Path, seed: int, dataset: str = "digits") -> Path:
    torch.manual_seed(seed)
    meta = {"name": folder.name, "data": {"dataset": dataset}}
    return save_checkpoint(folder, ContextUNet(WIDTH_PRESETS["tiny"]), make_schedule("cosine", 20), meta)


@pytest.fixture()
def folders(tmp_path: Path) -> list[Path]:
    return [tiny_checkpoint(tmp_path / f"model-{i}", seed=i) for i in range(3)]


@pytest.fixture()
def fashion_folders(tmp_path: Path) -> list[Path]:
    return [tiny_checkpoint(tmp_path / f"fashion-{i}", seed=10 + i, dataset="fashion") for i in range(2)]


@pytest.fixture()
def shipped(folders: list[Path], fashion_folders: list[Path]) -> dict[str, LoadedModel]:
    """The stand-ins for the shipped models: one per dataset."""
    return {"digits": load_checkpoint(folders[0]), "fashion": load_checkpoint(fashion_folders[0])}


def test_resident_bytes_counts_float32_weights_times_the_memory_factor(folders: list[Path]) -> None:
    loaded = load_checkpoint(folders[0])
    by_hand = 4 * sum(p.numel() for p in ContextUNet(WIDTH_PRESETS["tiny"]).parameters())
    assert resident_bytes(loaded) == MEMORY_FACTOR * by_hand


def test_each_session_sees_its_own_model_and_everyone_else_the_default(folders: list[Path]) -> None:
    default = load_checkpoint(folders[0])
    models = SessionModels(lambda _: default)
    own = load_checkpoint(folders[1])
    models.use("a", own)
    assert models.get("a") is own and models.has_own("a")
    assert models.get("b") is default and not models.has_own("b")
    models.use_default("a")
    assert models.get("a") is default
    assert models.folders_in_use() == {folders[0]}


def test_the_cache_pushes_out_least_recently_used_models_and_reloads_them_from_their_folder(
    folders: list[Path],
) -> None:
    one = resident_bytes(load_checkpoint(folders[1]))
    loads: list[Path] = []

    def load_folder(folder: Path) -> LoadedModel:
        loads.append(folder)
        return load_checkpoint(folder)

    models = SessionModels(lambda _: load_checkpoint(folders[0]), cap_bytes=one + one // 2, load_folder=load_folder)
    first, second = load_checkpoint(folders[1]), load_checkpoint(folders[2])
    models.use("a", first)
    models.use("b", second)  # over the cap: a's network leaves memory, a's folder stays
    assert models.cached_bytes() <= models.cap_bytes
    assert models.get("b") is second and loads == []
    again = models.get("a")  # reloaded, not lost
    assert loads == [folders[1]] and again is not first
    for name, p in first.model.state_dict().items():
        assert torch.equal(p, again.model.state_dict()[name])
    assert models.folders_in_use() >= {folders[1], folders[2]}


def test_idle_sessions_expire_and_a_full_server_refuses_new_models_without_losing_any(folders: list[Path]) -> None:
    clock = [0.0]
    models = SessionModels(lambda _: load_checkpoint(folders[0]), ttl_s=100, max_sessions=1, clock=lambda: clock[0])
    mine = load_checkpoint(folders[1])
    models.use("a", mine)
    with pytest.raises(BusyError, match="try again later"):
        models.use("b", load_checkpoint(folders[2]))
    assert models.get("a") is mine  # the refusal cost "a" nothing
    clock[0] = 150.0  # "a" idle for longer than the time to live (its last use was at 0)
    models.use("b", load_checkpoint(folders[2]))
    assert not models.has_own("a") and models.has_own("b") and folders[1] not in models.folders_in_use()


def test_a_model_bigger_than_the_cap_is_refused(folders: list[Path]) -> None:
    models = SessionModels(lambda _: load_checkpoint(folders[0]), cap_bytes=1000)
    with pytest.raises(ValueError, match="MB"):
        models.use("a", load_checkpoint(folders[1]))
    assert not models.has_own("a")


def test_a_session_chooses_a_dataset_and_samples_its_shipped_model(shipped: dict[str, LoadedModel]) -> None:
    asked: list[str] = []

    def load_default(dataset: str) -> LoadedModel:
        asked.append(dataset)
        return shipped[dataset]

    models = SessionModels(load_default)
    assert models.dataset("a") == "digits" and models.get("a") is shipped["digits"]
    models.choose("a", "fashion")
    assert models.dataset("a") == "fashion" and models.get("a") is shipped["fashion"]
    assert models.get("a", "digits") is shipped["digits"]
    assert models.dataset("b") == "digits" and models.get("b") is shipped["digits"]  # b's choice is its own
    models.choose("b", "fashion")
    assert models.get("b") is shipped["fashion"] and models.default("fashion") is shipped["fashion"]
    assert asked == ["digits", "fashion"]  # each shipped model loaded once, then shared
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        models.choose("a", "cifar")
    with pytest.raises(ValueError, match="unknown dataset"):
        models.default("cifar")
    assert models.dataset("a") == "fashion" and not models.has_own("a")


def test_each_dataset_keeps_the_sessions_own_model_across_a_switch(
    shipped: dict[str, LoadedModel], folders: list[Path], fashion_folders: list[Path]
) -> None:
    models = SessionModels(lambda dataset: shipped[dataset])
    own_digits, own_fashion = load_checkpoint(folders[1]), load_checkpoint(fashion_folders[1])
    models.use("a", own_fashion)  # using a model chooses its dataset
    assert models.dataset("a") == "fashion" and models.get("a") is own_fashion
    assert models.has_own("a") and not models.has_own("a", "digits") and models.get("a", "digits") is shipped["digits"]
    models.use("a", own_digits)
    assert models.dataset("a") == "digits" and models.get("a") is own_digits
    assert models.get("a", "fashion") is own_fashion  # the switch lost nothing
    models.choose("a", "fashion")
    assert models.get("a") is own_fashion and models.get("b") is shipped["digits"]
    models.use_default("a")  # back to the shipped model of the chosen dataset only
    assert models.dataset("a") == "fashion" and models.get("a") is shipped["fashion"]
    assert models.has_own("a", "digits") and models.get("a", "digits") is own_digits
    assert models.folders_in_use() == {folders[0], folders[1], fashion_folders[0]}
    models.use_default("a", "digits")  # goes back and chooses that dataset
    assert models.dataset("a") == "digits" and models.get("a") is shipped["digits"] and not models.has_own("a")
    assert models.folders_in_use() == {folders[0], fashion_folders[0]} and models.session_count() == 0


def test_forget_drops_every_dataset_s_model_and_the_choice(
    shipped: dict[str, LoadedModel], folders: list[Path], fashion_folders: list[Path]
) -> None:
    models = SessionModels(lambda dataset: shipped[dataset])
    models.use("a", load_checkpoint(folders[1]))
    models.use("a", load_checkpoint(fashion_folders[1]))
    models.use("b", load_checkpoint(folders[2]))
    models.forget("a")
    assert models.dataset("a") == "digits" and models.get("a") is shipped["digits"]  # loads the digits default
    assert not models.has_own("a", "digits") and not models.has_own("a", "fashion") and models.has_own("b")
    assert models.folders_in_use() == {folders[0], folders[2]} and models.session_count() == 1


def test_a_session_expires_after_its_last_use_of_any_dataset(
    shipped: dict[str, LoadedModel], folders: list[Path], fashion_folders: list[Path]
) -> None:
    clock = [0.0]
    models = SessionModels(lambda dataset: shipped[dataset], ttl_s=100, clock=lambda: clock[0])
    models.choose("a", "fashion")
    models.use("b", load_checkpoint(folders[1]))
    clock[0] = 80.0
    models.use("b", load_checkpoint(fashion_folders[1]))
    clock[0] = 150.0  # a idle for 150 s; b for 70 s since its fashion model
    assert models.folders_in_use() >= {folders[1], fashion_folders[1]}  # both of b's models live on
    assert models.dataset("a") == "digits"  # a's choice expired with it
    clock[0] = 190.0  # b idle for 110 s
    assert models.folders_in_use() == set() and models.session_count() == 0  # no shipped model was asked for
    assert models.dataset("b") == "digits"


def test_max_sessions_counts_sessions_not_models(folders: list[Path], fashion_folders: list[Path]) -> None:
    models = SessionModels(lambda _: load_checkpoint(folders[0]), max_sessions=1)
    models.use("a", load_checkpoint(folders[1]))
    models.use("a", load_checkpoint(fashion_folders[1]))  # a second model of the same session: still one session
    assert models.session_count() == 1 and models.has_own("a", "digits") and models.has_own("a", "fashion")
    with pytest.raises(BusyError, match="try again later"):
        models.use("b", load_checkpoint(folders[2]))
    assert not models.has_own("b", "digits")


def test_one_heavy_request_per_session_at_a_time() -> None:
    slots = SessionSlots(limit=1)
    with slots.slot("a"):
        with pytest.raises(BusyError, match="already has"):
            with slots.slot("a"):
                pass
        with slots.slot("b"):  # other sessions are not held up
            assert slots.running("a") == slots.running("b") == 1
    assert slots.running("a") == 0
    with slots.slot("a"):  # free again after the block
        pass


def test_background_work_stops_at_its_next_step_once_cancelled() -> None:
    steps_done: list[int] = []
    step_s = 0.05

    def work(report) -> int:
        for i in range(1000):
            time.sleep(step_s)
            steps_done.append(i)
            report(i + 1, 1000)
        return 1000

    job = BackgroundWork(work)
    first = next(p for p in job.updates(0.01) if p is not None)
    assert 0 < first.fraction < 1
    job.cancel()
    at_cancel = len(steps_done)
    assert job.cancel(wait_s=5.0), "the work did not stop"
    assert len(steps_done) - at_cancel <= 1  # within one step
    assert job.outcome() is None


def test_background_work_stops_at_its_deadline_and_passes_errors_on() -> None:
    def slow(report) -> None:
        while True:
            time.sleep(0.01)
            report()

    job = BackgroundWork(slow, deadline_s=0.2)
    assert job.outcome(timeout_s=10) is None and job.timed_out

    def broken(report) -> None:
        raise KeyError("broken work")

    with pytest.raises(KeyError, match="broken work"):
        BackgroundWork(broken).outcome(timeout_s=10)


def test_cancelled_is_raised_inside_the_work() -> None:
    seen: list[type] = []
    started = threading.Event()

    def work(report) -> None:
        started.set()
        try:
            while True:
                time.sleep(0.01)
                report()
        except Cancelled as exc:
            seen.append(type(exc))
            raise

    job = BackgroundWork(work)
    started.wait(5)
    assert job.cancel(wait_s=5) and seen == [Cancelled]
