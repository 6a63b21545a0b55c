"""Eight people at once: concurrent ``gradio_client`` users against ``python app.py`` for a bounded time.

Each user is a separate ``Client`` (its own session) in its own thread. Three calls in four move the
Forward-noise slider (``/forward_view`` at a random t, uploading the image as an API client does); one in
four samples a digit of each class with the default settings (``/sample_digits``). The test asserts that
no request fails and that every answer is the one asked for; it prints the request count, errors and
latency percentiles (run with ``-s`` to see them in full) and writes them to ``load-report.json`` in the
test's temporary folder, or to ``$DDPM_LOAD_REPORT`` when that is set. Timings are not asserted: this
machine is shared.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))  # the shared `python app.py` launcher

from appserver import ROOT, AppProcess, running_app

USERS = 8
DURATION_S = 25.0  # no new request starts after this
MAX_REQUESTS = 600  # a bound on the total, in case the machine is fast
SAMPLE_SHARE = 0.25
EXAMPLE = ROOT / "assets" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    with running_app(tmp_path_factory.mktemp("load-app")) as app:
        yield app


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 3),
        "p95": round(float(np.percentile(array, 95)), 3),
        "p99": round(float(np.percentile(array, 99)), 3),
        "max": round(float(array.max()), 3),
    }


class Tickets:
    """At most ``limit`` requests in all, and none started after the deadline."""

    def __init__(self, limit: int) -> None:
        self._left, self._deadline, self._lock = limit, float("inf"), threading.Lock()

    def start_clock(self, seconds: float) -> float:
        """Start the window now; returns the start time."""
        now = time.monotonic()
        with self._lock:
            self._deadline = now + seconds
        return now

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0 or time.monotonic() >= self._deadline:
                return False
            self._left -= 1
            return True


def one_user(
    index: int,
    url: str,
    downloads: Path,
    tickets: Tickets,
    start: threading.Barrier,
    records: list,
    errors: list,
    compute: list,
) -> None:
    from gradio_client import Client, handle_file

    rng = random.Random(index)
    try:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads))
    except Exception as exc:  # a user who cannot even connect is an error too
        errors.append({"user": index, "endpoint": "connect", "error": f"{type(exc).__name__}: {exc}"})
        start.wait()
        return
    start.wait()
    try:
        while tickets.take():
            if rng.random() < SAMPLE_SHARE:
                endpoint, args, expected = "/sample_digits", (), "10 digits in"
            else:
                t = rng.randrange(1000)
                endpoint, expected = "/forward_view", f"**t = {t}**"
                args = (handle_file(str(EXAMPLE)), t, "linear", 1000, index)
            began = time.perf_counter()
            try:
                result = client.predict(*args, api_name=endpoint)
                text = result[-1]
                if expected not in text:
                    raise AssertionError(f"unexpected answer {text[:80]!r}")
                if endpoint == "/sample_digits":  # the sampler's own time, as the app reports it
                    compute.append(float(re.search(r"in \*\*([0-9.]+) s\*\*", text).group(1)))
            except Exception as exc:
                errors.append({"user": index, "endpoint": endpoint, "error": f"{type(exc).__name__}: {exc}"[:300]})
            finally:
                records.append((endpoint, time.perf_counter() - began))
    finally:
        client.close()


def test_eight_concurrent_users(server: AppProcess, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gradio_client import Client, handle_file

    load_before = os.getloadavg()[0]  # other work on this machine skews the figures: record it
    # Warm up once (loads the shipped model, fills the caches), outside the measured window.
    warm = Client(server.url, verbose=False, analytics_enabled=False, download_files=str(tmp_path))
    warm.predict(handle_file(str(EXAMPLE)), 10, "linear", 1000, 0, api_name="/forward_view")
    warm.predict(api_name="/sample_digits")
    warm.close()

    records: list[tuple[str, float]] = []
    errors: list[dict] = []
    compute: list[float] = []
    tickets = Tickets(MAX_REQUESTS)
    start = threading.Barrier(USERS + 1)  # the clock starts once every user has connected
    threads = []
    for i in range(USERS):
        downloads = tmp_path / f"user-{i}"
        downloads.mkdir()
        args = (i, server.url, downloads, tickets, start, records, errors, compute)
        threads.append(threading.Thread(target=one_user, args=args, name=f"load-user-{i}", daemon=True))
    for thread in threads:
        thread.start()
    start.wait(timeout=300)
    t0 = tickets.start_clock(DURATION_S)
    for thread in threads:
        thread.join(timeout=DURATION_S + 300)
    wall = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads), "a user is still waiting for an answer 5 minutes after the end"

    by_endpoint = {name: [d for n, d in records if n == name] for name in ("/forward_view", "/sample_digits")}
    report = {
        "users": USERS,
        "window_s": DURATION_S,
        "wall_s": round(wall, 1),
        "requests": len(records),
        "errors": len(errors),
        "requests_per_s": round(len(records) / wall, 2),
        "latency_s": percentiles([d for _, d in records]),
        "by_endpoint": {name: {"requests": len(v), **percentiles(v)} for name, v in by_endpoint.items()},
        "sampling_compute_s": percentiles(compute),  # the part of a /sample_digits request spent sampling
        "error_samples": errors[:5],
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_before": round(load_before, 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
    }
    out = Path(os.environ.get("DDPM_LOAD_REPORT") or tmp_path / "load-report.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    lat = report["latency_s"]
    lines = [
        f"load test: {USERS} users, {report['requests']} requests in {report['wall_s']} s, "
        f"{report['errors']} errors; latency p50 {lat['p50']} s, p95 {lat['p95']} s, p99 {lat['p99']} s "
        f"({os.cpu_count()} CPUs, load average {load_before:.1f} before; report: {out})",
        *(
            f"  {name}: {v['requests']} requests, p50 {v['p50']} s, p95 {v['p95']} s, p99 {v['p99']} s"
            for name, v in report["by_endpoint"].items()
        ),
        f"  of which sampling itself (as the app reports it): p50 {report['sampling_compute_s']['p50']} s, "
        f"p95 {report['sampling_compute_s']['p95']} s",
    ]
    with capsys.disabled():
        print("\n" + "\n".join(lines))

    assert not errors, f"{len(errors)} of {len(records)} requests failed, e.g. {errors[:3]}"
    assert len(by_endpoint["/forward_view"]) >= USERS and len(by_endpoint["/sample_digits"]) >= 1
    assert server.answers(), f"the server stopped answering after the load:\n{server.log_tail()}"
