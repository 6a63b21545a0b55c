"""Shared fixtures. One Gradio server runs for the whole session; every tab's client tests can use it.

``app_server`` launches ``app.demo`` on 127.0.0.1 at a free port (the same launch options as
``python app.py``) and closes it after the last test; ``gradio_client`` is a client connected to it.
``one_torch_thread`` runs a module's tests on one torch thread (``pytest.mark.usefixtures`` in that module).
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported anywhere
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `app` lives at the repository root; plain `pytest` does not add it
    sys.path.insert(0, str(ROOT))

from ddpm_core.localhost import free_port  # noqa: E402  (needs the path fix above)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module: on a busy 2-core machine two threads can run many times slower, not faster."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def app_module() -> ModuleType:
    """The imported ``app`` module (building the UI, computing nothing)."""
    import app

    return app


@pytest.fixture(scope="session")
def app_server(app_module: ModuleType) -> Iterator[str]:
    """Launch ``app.demo`` once per session; yields its base URL."""
    demo = app_module.demo
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
        **app_module.launch_options(),
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="session")
def gradio_client(app_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A ``gradio_client.Client`` connected to the session's server; downloads go to a temporary folder."""
    from gradio_client import Client

    client = Client(
        app_server,
        verbose=False,
        analytics_enabled=False,
        download_files=str(tmp_path_factory.mktemp("client-downloads")),
    )
    try:
        yield client
    finally:
        client.close()
