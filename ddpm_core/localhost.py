"""Starting, probing and stopping a local server: what the tests and the benchmark need to run the app."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path


def isolated_app_env(home: Path) -> dict[str, str]:
    """The environment for a ``python app.py`` of its own: runs and uploads under ``home``, offline, unbuffered.

    Its training runs and generated files go to ``home/runs`` and Gradio's upload cache to ``home/gradio-tmp``
    (created here), so nothing leaks into the real temp folders or between servers.
    """
    (home / "gradio-tmp").mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DDPM_PLAYGROUND_HOME": str(home / "runs"),
        "GRADIO_TEMP_DIR": str(home / "gradio-tmp"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True if a GET of ``url`` (bypassing any proxy) answers 200."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stop_process(process: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """Ctrl-C first (Gradio's normal way out), then SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)
