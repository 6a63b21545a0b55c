"""Fixtures for the tab tests: the example photo, a non-image, and a tiny digit model served as the live one.

The tiny checkpoint (trained for three steps) stands in for the shipped model so that every call is quick;
a module that asks for ``tiny_live`` gets private run folders and the previous live model back afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for `from ui_fixtures import …`

from ddpm_core.checkpoints import load_checkpoint
from ddpm_core.data import load_bundled
from ddpm_core.live import LiveModel
from ddpm_core.schedule import ScheduleConfig
from ddpm_core.training import TrainConfig, train
from ddpm_ui import common, state


@pytest.fixture(scope="session")
def example() -> str:
    return str(common.DEFAULT_IMAGE)


@pytest.fixture()
def not_an_image(tmp_path: Path) -> str:
    path = tmp_path / "holiday.png"
    path.write_text("definitely not pixels")
    return str(path)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tabs") / "tiny-digits"
    config = TrainConfig(
        preset="tiny", batch_size=16, max_steps=3, max_minutes=None, schedule=ScheduleConfig("cosine", 50)
    )
    train(config, load_bundled(), out_dir=out, device="cpu", name="tiny-digits")
    return out


@pytest.fixture(scope="module")
def tiny_server(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Serve the tiny model for this module; private run folders; the previous live model comes back after."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DDPM_PLAYGROUND_HOME", str(tmp_path_factory.mktemp("home")))
    mp.setattr(state, "LIVE", LiveModel(lambda: load_checkpoint(tiny_dir)))
    yield
    mp.undo()


@pytest.fixture()
def tiny_live(tiny_server: None, tiny_dir: Path) -> None:
    """The tiny model is live when the test starts (tests that load or train replace it)."""
    state.LIVE.swap(load_checkpoint(tiny_dir))
