"""Fixtures for the tab tests: the example photo, a non-image, and tiny models served as the shipped ones.

Tiny checkpoints (trained for three steps), one of digits and one of fashion items, stand in for the shipped
models so that every call is quick;
a module that asks for ``tiny_live`` gets private run folders, its own session models and training job, and
the app's own back afterwards.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for `from ui_fixtures import …`

from ddpm_core.checkpoints import load_checkpoint
from ddpm_core.data import load_bundled
from ddpm_core.schedule import ScheduleConfig
from ddpm_core.sessions import SessionModels
from ddpm_core.training import TrainConfig, train
from ddpm_core.training_job import TrainingJob
from ddpm_ui import common, state


@pytest.fixture(scope="session")
def example() -> str:
    return str(common.DEFAULT_IMAGE)


@pytest.fixture()
def not_an_image() -> Iterator[str]:
    """A text file named like a picture, where Gradio keeps uploads (image inputs open nothing else)."""
    folder = Path(tempfile.mkdtemp(prefix="not-an-image-", dir=common.received_folders()[0]))
    path = folder / "holiday.png"
    path.write_text("definitely not pixels")
    yield str(path)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tabs") / "tiny-digits"
    config = TrainConfig(
        preset="tiny", batch_size=16, max_steps=3, max_minutes=None, schedule=ScheduleConfig("cosine", 50)
    )
    train(config, load_bundled(), out_dir=out, device="cpu", name="tiny-digits")
    return out


@pytest.fixture(scope="session")
def tiny_fashion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tabs") / "tiny-fashion"
    config = TrainConfig(
        preset="tiny", batch_size=16, max_steps=3, max_minutes=None, schedule=ScheduleConfig("cosine", 50)
    )
    train(config, load_bundled("fashion"), out_dir=out, device="cpu", name="tiny-fashion")
    return out


@pytest.fixture(scope="module")
def tiny_server(tiny_dir: Path, tiny_fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Serve the tiny models as the shipped ones for this module; private run folders, session models and job."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DDPM_PLAYGROUND_HOME", str(tmp_path_factory.mktemp("home")))
    shipped = {"digits": tiny_dir, "fashion": tiny_fashion_dir}
    models = SessionModels(lambda dataset: load_checkpoint(shipped[dataset]))
    mp.setattr(state, "MODELS", models)
    mp.setattr(state, "JOB", TrainingJob(classifier=state.classifier, keep=models.folders_in_use))
    yield
    mp.undo()


@pytest.fixture()
def tiny_live(tiny_server: None) -> None:
    """Every session starts the test on the tiny stand-in (tests that load or train change their own)."""
    state.MODELS.clear()
