"""Starting, probing and stopping a local ``python app.py``: what the tests and the benchmarks need to run it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ddpm_core.paths import app_script

START_TIMEOUT_S = 180.0  # importing torch and gradio on a busy 2-core machine can take a while


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


@dataclass
class AppProcess:
    """A running ``python app.py``: its base URL (ending in /), the process, its log file and its home folder."""

    url: str
    process: subprocess.Popen
    log: Path
    home: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def answers(self, timeout: float = 30.0) -> bool:
        """True if the process is up and its page answers with HTTP 200."""
        return self.alive() and http_ok(self.url, timeout=timeout)


def _wait_until_up(app: AppProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not app.alive():
            raise RuntimeError(f"python app.py exited with code {app.process.returncode}:\n{app.log_tail()}")
        if http_ok(app.url, timeout=5):
            return
        time.sleep(0.5)
    raise RuntimeError(f"python app.py did not answer on {app.url} within {timeout:.0f} s:\n{app.log_tail()}")


@contextlib.contextmanager
def running_app(
    home: Path, *, extra_env: dict[str, str] | None = None, extra_args: Sequence[str] = (),
    timeout_s: float = START_TIMEOUT_S,
) -> Iterator[AppProcess]:  # fmt: skip
    """Start ``python app.py --host 127.0.0.1 --port N`` (plus ``extra_args``) with its state under ``home``
    (:func:`isolated_app_env`) and its output in ``home/app.log``; stop it afterwards."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**isolated_app_env(home), **(extra_env or {})}
    app_py = app_script()
    log = home / "app.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(app_py), "--host", "127.0.0.1", "--port", str(port), *extra_args],
            cwd=app_py.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    app = AppProcess(url=f"http://127.0.0.1:{port}/", process=process, log=log, home=home)
    try:
        _wait_until_up(app, timeout_s)
        yield app
    finally:
        stop_process(process)
