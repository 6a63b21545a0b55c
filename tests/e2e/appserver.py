"""Run ``python app.py`` as a separate process on a free port, the way a user starts it.

Used by the browser tests (``tests/e2e``), the screenshot script, the load test and the fault suite.
Each server gets its own ``DDPM_PLAYGROUND_HOME`` (training runs, uploads, samples) and its own
``GRADIO_TEMP_DIR`` (Gradio's upload cache), so nothing leaks into the real temp folders or between
servers, and each runs with the thread settings of ``python app.py`` rather than those of pytest.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run by hand (python tests/e2e/appserver.py), ddpm_core is not on the path
    sys.path.insert(0, str(ROOT))

from ddpm_core.localhost import free_port, http_ok, isolated_app_env, stop_process  # noqa: E402  (needs the path fix above)

START_TIMEOUT_S = 180.0  # importing torch and gradio on a busy 2-core machine can take a while


@dataclass
class AppProcess:
    """A running ``python app.py``: its base URL (ending in /), the process and its log file."""

    url: str
    process: subprocess.Popen
    log: Path
    home: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def answers(self, timeout: float = 30.0) -> bool:
        """True if the process is up and its page answers with HTTP 200."""
        if not self.alive():
            return False
        try:
            return httpx.get(self.url, timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False


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
def running_app(home: Path, *, extra_env: dict[str, str] | None = None) -> Iterator[AppProcess]:
    """Start ``python app.py --host 127.0.0.1 --port N`` with its state under ``home``; stop it afterwards."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**isolated_app_env(home), **(extra_env or {})}
    log = home / "app.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    app = AppProcess(url=f"http://127.0.0.1:{port}/", process=process, log=log, home=home)
    try:
        _wait_until_up(app, START_TIMEOUT_S)
        yield app
    finally:
        stop_process(process)


if __name__ == "__main__":  # handy by hand: python tests/e2e/appserver.py /tmp/somewhere
    import tempfile

    with running_app(Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())) as running:
        print(f"serving {running.url} (log: {running.log}); Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while running.alive():
                time.sleep(1)
