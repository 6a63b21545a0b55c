"""Where the app's files live: shipped assets and checkpoints, and the folder for runs and uploads.

Every location is read when it is asked for, so an environment variable set before a call takes effect:

* ``DDPM_PLAYGROUND_ASSETS`` — the folder holding ``mnist_5k.npz`` and the example photo;
* ``DDPM_PLAYGROUND_CHECKPOINTS`` — the folder holding ``digits-base/``, ``digits-live/`` and ``classifier/``;
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


def shipped_model_dir() -> Path:
    """The digit model the app starts with."""
    return checkpoints_dir() / "digits-base"


def student_model_dir() -> Path:
    """The few-step student distilled from the shipped model, for live guidance."""
    return checkpoints_dir() / "digits-live"


def classifier_dir() -> Path:
    """The project's digit classifier (the quality meter)."""
    return checkpoints_dir() / "classifier"


def bundled_digits_path() -> Path:
    """The 5,000 real MNIST digits that ship with the app."""
    return assets_dir() / "mnist_5k.npz"


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
