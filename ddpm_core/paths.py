"""Where the app's files live: shipped assets and checkpoints, and the folder for runs and uploads.

Every location is read when it is asked for, so an environment variable set before a call takes effect:

* ``DDPM_PLAYGROUND_ASSETS`` — the folder holding ``mnist_5k.npz``, ``fashion_5k.npz`` and the example photos;
* ``DDPM_PLAYGROUND_CHECKPOINTS`` — the folder holding ``digits-base/``, ``digits-live/``, ``classifier/``,
  ``fashion-base/`` and ``fashion-classifier/``;
* ``DDPM_PLAYGROUND_DATA`` — a folder searched for full datasets' IDX files before Debian's ``/usr/share/datasets``;
* ``DDPM_PLAYGROUND_HOME`` — where in-app training runs, uploads and generated files go;
* ``HF_HUB_CACHE`` (else ``HF_HOME``/hub) — huggingface_hub's cache of downloaded models, shared with every
  other program that uses it (huggingface_hub itself reads these once, when it is imported).

Without them, assets and checkpoints are the folders of that name in the source checkout (beside
``ddpm_core``, which is where ``pip install -e .`` leaves them) or, failing that, in the current
directory; runs go to a folder in the system's temp directory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ASSETS_ENV = "DDPM_PLAYGROUND_ASSETS"
CHECKPOINTS_ENV = "DDPM_PLAYGROUND_CHECKPOINTS"
HOME_ENV = "DDPM_PLAYGROUND_HOME"
DATA_ENV = "DDPM_PLAYGROUND_DATA"
SYSTEM_DATASETS = Path("/usr/share/datasets")  # where Debian's dataset-* packages install
HUB_CACHE_ENVS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")  # the second is its old name
HF_HOME_ENV = "HF_HOME"

_CHECKOUT = Path(__file__).resolve().parent.parent


def _shipped(env: str, name: str) -> Path:
    """``$env`` if set, else ``name`` beside the package, else ``name`` in the current directory."""
    override = os.environ.get(env)
    if override:
        return Path(override).expanduser()
    beside_package = _CHECKOUT / name
    return beside_package if beside_package.is_dir() else Path.cwd() / name


def app_script() -> Path:
    """The checkout's ``app.py`` (beside ``ddpm_core``): what the tests and the benchmarks launch."""
    return _CHECKOUT / "app.py"


def assets_dir() -> Path:
    """The shipped assets folder (``$DDPM_PLAYGROUND_ASSETS`` or ``assets/``)."""
    return _shipped(ASSETS_ENV, "assets")


def checkpoints_dir() -> Path:
    """The shipped checkpoints folder (``$DDPM_PLAYGROUND_CHECKPOINTS`` or ``checkpoints/``)."""
    return _shipped(CHECKPOINTS_ENV, "checkpoints")


def shipped_model_dir(dataset: str = "digits") -> Path:
    """The shipped model of ``dataset`` ("digits", the one the app starts with, or "fashion")."""
    return checkpoints_dir() / f"{dataset}-base"


def student_model_dir() -> Path:
    """The few-step student distilled from the shipped model, for live guidance."""
    return checkpoints_dir() / "digits-live"


def classifier_dir(dataset: str = "digits") -> Path:
    """The quality meter of ``dataset``: ``classifier/`` for digits (its old name), else ``NAME-classifier/``."""
    return checkpoints_dir() / ("classifier" if dataset == "digits" else f"{dataset}-classifier")


def full_data_roots() -> list[Path]:
    """Folders searched for a dataset's full IDX files: ``$DDPM_PLAYGROUND_DATA`` if set, then Debian's."""
    override = os.environ.get(DATA_ENV)
    return ([Path(override).expanduser()] if override else []) + [SYSTEM_DATASETS]


def runs_dir() -> Path:
    """Where in-app training runs and uploads go (``$DDPM_PLAYGROUND_HOME``, else the temp dir); created."""
    root = Path(os.environ.get(HOME_ENV) or Path(tempfile.gettempdir()) / "ddpm-playground")
    root.mkdir(parents=True, exist_ok=True)
    return root


def hub_cache_dir() -> Path:
    """huggingface_hub's model cache as the environment names it now: ``$HF_HUB_CACHE``, ``$HF_HOME/hub``, its default.

    huggingface_hub reads these variables once, at import; reading them per call lets a setting made later (a
    test's, a launcher's) take effect, and the CLIs and the app then share the one cache.
    """
    for env in HUB_CACHE_ENVS:
        if os.environ.get(env):
            return Path(os.path.expandvars(os.environ[env])).expanduser()
    if os.environ.get(HF_HOME_ENV):
        return Path(os.path.expandvars(os.environ[HF_HOME_ENV])).expanduser() / "hub"
    from huggingface_hub import constants  # its default (~/.cache/huggingface/hub, or XDG_CACHE_HOME's)

    return Path(constants.HF_HUB_CACHE).expanduser()
