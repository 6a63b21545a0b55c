"""A mixed load: eight people using ``python app.py`` at once, with latency per endpoint, peak RSS and CPU.

Run it from the repository root::

    python -m benchmarks.crowd                         # 60 s, appends a line to assets/benchmarks/crowd-….jsonl
    python -m benchmarks.crowd --seconds 20 --out -    # shorter, print only
    python -m benchmarks.crowd --only slider,live      # a subset of the people (see --help for the roles)

The app runs as ``python app.py`` (its default of one torch thread) with its own ``DDPM_PLAYGROUND_HOME``
and ``GRADIO_TEMP_DIR`` in a temporary folder. After one warm-up call of each view (loading the models,
outside the measured window), eight simulated people start together, each a ``gradio_client.Client`` of
its own (its own session), and each sends its next request as soon as the last answer arrived:

* ``slider`` ×3 — scrub the Forward-noise slider: ``/forward_view`` at a random t, the picture uploaded
  once per person and then reused;
* ``sample`` ×2 — ``/sample_digits`` at the page's defaults for a few random classes;
* ``live`` ×1 — drag live guidance: ``/live_digits`` at a random w in 0…5;
* ``train`` ×1 — one short training run (``/train_model``, ``--train-minutes`` / ``--train-steps``),
  followed to the end (``/model_info`` first, as the page does); ``/stop_training`` if it would outlast
  the window; then ``/model_info`` now and then;
* ``sweep`` ×1 — a guidance sweep at the largest settings the page allows (8 values of w, 8 digits per
  class, every class, the DDPM sampler over all T steps, guided at every step; while the app refuses
  that much work in one request, the next smaller of :data:`SWEEP_LADDER` at once), abandoned
  ``--abandon-after`` seconds after it started running (``job.cancel()`` and ``client.close()``, as a
  closed tab; or at the end of the window if it is still queued then), then slider
  calls from a new session for ``--sweep-every`` seconds, then another sweep, and so on.

Every answer is checked (the forward view comes back at the uploaded picture's size, for the t asked; the
samples are the digits asked for, with their files; the live grid is the w asked for; the training run
finishes or stops). Outcomes per call: ``ok``; ``refused`` (a readable message from the app, e.g. a busy
trainer or a cap on the work); ``abandoned`` (a sweep cancelled on purpose); ``error`` (anything else: a
wrong answer, a server error, no answer within the window plus ``--grace`` seconds). Latencies (p50, p95,
max) are over the ``ok`` calls, from the request until the pictures the page would show have been fetched
(over one keep-alive connection per person, as a browser does), as the person sees it. The people run
in this process, on the same cores as the server: ``load_generator_cpu_s_in_window`` says what they cost.

Meanwhile the server's RSS (VmRSS of it and any child processes, every 0.5 s; and its own VmHWM) gives
the peak, and its CPU time (utime + stime from /proc) over the ``--quiet-seconds`` after every person has
stopped says whether the abandoned sweeps really stopped (the last sweep is abandoned as the window
ends). Goals (issue 13), on 2 cores under this mix: slider p95 ≤ 1 s, peak RSS ≤ 1.5 GiB, 0 errors; and
here ≤ 0.5 CPU-seconds in the quiet window. The table is printed; one JSON line per run is appended to
``--out`` (default ``assets/benchmarks/crowd-<date>-<cpu capability>.jsonl``; ``-`` prints only).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from benchmarks.bench import REPO_ROOT, rounded
from ddpm_core.cli import make_parser
from ddpm_core.localhost import http_ok, running_app
from ddpm_core.runtime import cpu_capability

ROLES: dict[str, int] = {"slider": 3, "sample": 2, "live": 1, "train": 1, "sweep": 1}  # eight people
ENDPOINTS: tuple[str, ...] = (
    "forward_view", "sample_digits", "live_digits", "train_model", "stop_training", "model_info", "guidance_sweep",
)  # fmt: skip
EXAMPLE = REPO_ROOT / "assets" / "grace_hopper.jpg"
OUT_DIR = REPO_ROOT / "assets" / "benchmarks"
T_STEPS = 1000  # the forward tab's default T (linear schedule)
IMAGE_SIDE = 256  # the app fits an upload's longest side to this (ddpm_ui.common.IMAGE_SIDE)
LIVE_W = (0.0, 5.0)  # the student's range of w
SWEEP = {  # the largest guidance sweep the page allows (ddpm_ui.sample_tab: MAX_SWEEP_WS, MAX_PER_CLASS)
    "classes": [str(c) for c in range(10)],
    "per_class": 8,
    "ws_text": "0.5, 1.5, 2, 3, 4, 5, 6, 8",  # 8 values, none of them 0 or 1: two network passes each
    "sampler": "ddpm",  # all T steps
    "sampler_steps": 250,
    "eta": 1.0,
    "mid_guidance": False,  # guided at every step
}
SWEEP_LADDER: tuple[dict[str, Any], ...] = (  # what the sweep person falls back to while the app refuses the work
    {},
    {"mid_guidance": True},
    *({"sampler": "dpmpp", "sampler_steps": steps} for steps in (250, 125, 64, 32, 16, 8)),
)
GOALS = {"forward_view_p95_s": 1.0, "peak_rss_mb": 1536.0, "errors": 0, "cpu_s_after_end": 0.5}
RSS_EVERY_S = 0.5
INTERNAL_FAILURE = re.compile(r"unexpectedly|went wrong|not enabled verbose error|^error$", re.IGNORECASE)
GENERIC_APP_ERROR = "has raised an exception but has not enabled verbose error reporting"


# ----------------------------------------------------------------------------------------------
# The server: launch, and what /proc says about it
# ----------------------------------------------------------------------------------------------


def _status_kib(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB (VmRSS, VmHWM), 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards), or [] if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return []
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (scanning /proc: this kernel may not have /proc/<pid>/task/*/children)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid``, its live descendants, and the children it has waited for."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for i, p in enumerate(process_tree(pid)):
        fields = _stat_fields(p)
        if fields:  # utime, stime are fields 14, 15; cutime, cstime 16, 17 (counted once, at the root)
            total += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if i == 0 else 0)
    return total / ticks


def machine_busy_seconds() -> float:
    """CPU-seconds this machine has been busy (all cores, all processes) since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait; guest time is inside user
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    """Samples the summed VmRSS of a process tree every ``every_s`` seconds; keeps the peak and VmHWMs."""

    def __init__(self, pid: int, every_s: float = RSS_EVERY_S) -> None:
        super().__init__(daemon=True, name="crowd-rss")
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, int]] = []  # (monotonic time, KiB)
        self.children_hwm_kib = 0
        self.children_seen = 0
        self._halt = threading.Event()

    def sample(self) -> int:
        tree = process_tree(self.pid)
        kib = sum(_status_kib(p, "VmRSS") for p in tree)
        for child in tree[1:]:
            self.children_hwm_kib = max(self.children_hwm_kib, _status_kib(child, "VmHWM"))
        self.children_seen = max(self.children_seen, len(tree) - 1)
        self.samples.append((time.monotonic(), kib))
        return kib

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def summary(self, window_start: float, every_s: float = 5.0) -> dict[str, Any]:
        """MiB: the peak, the server's VmHWM, the first sample, the last before the people start, the last,
        and one sample every ``every_s`` seconds from the people's start (``timeline``)."""
        samples = self.samples or [(window_start, 0)]
        before = [kib for t, kib in samples if t <= window_start] or [samples[0][1]]
        timeline, next_t = [], window_start
        for t, kib in samples:
            if t >= next_t:
                timeline.append(kib / 1024)
                next_t += every_s
        return {
            "peak_sampled": max(kib for _, kib in samples) / 1024,
            "server_vmhwm": _status_kib(self.pid, "VmHWM") / 1024,
            "children_vmhwm_max": self.children_hwm_kib / 1024,
            "children_seen": self.children_seen,
            "at_start": samples[0][1] / 1024,
            "at_window_start": before[-1] / 1024,
            "at_end": samples[-1][1] / 1024,
            "samples": len(samples),
            f"timeline_every_{every_s:g}_s": timeline,
        }


# ----------------------------------------------------------------------------------------------
# Calls and their outcomes
# ----------------------------------------------------------------------------------------------


class WrongAnswer(Exception):
    """The app answered, but not with what was asked for."""


@dataclass
class Call:
    endpoint: str
    user: str
    outcome: str  # ok, refused, abandoned, error
    seconds: float
    message: str = ""


@dataclass
class Tally:
    """Every call of every person, thread-safe."""

    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def of(self, endpoint: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.endpoint == endpoint]


def classify_failure(exc: BaseException) -> tuple[str, str]:
    """('refused', message) for a readable refusal from the app; ('error', what happened) for anything else."""
    from gradio_client.exceptions import AppError

    if isinstance(exc, WrongAnswer):
        return "error", f"wrong answer: {exc}"
    if isinstance(exc, TimeoutError):
        return "error", f"no answer: {exc}"
    if isinstance(exc, AppError):
        message = str(getattr(exc, "message", "") or "").strip()
        if message and GENERIC_APP_ERROR not in message and not INTERNAL_FAILURE.search(message):
            return "refused", message[:200]
        return "error", f"AppError ({getattr(exc, 'title', '')}): {message[:200]}"
    return "error", f"{type(exc).__name__}: {exc}"[:300]


def timed_call(
    tally: Tally,
    user: str,
    endpoint: str,
    tab: Tab,
    check: Callable[[Any], None],
    timeout_s: float,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Submit one request, wait for its final answer (at most ``timeout_s``), check it and record the outcome.

    Returns the answer when it was ``ok``, else None.
    """
    start = time.perf_counter()
    job = None
    try:
        job = tab.submit(*args, api_name=f"/{endpoint}", **kwargs)
        result = job.result(timeout=timeout_s)
        check(result)
    except Exception as exc:  # every failure is recorded; the person carries on
        if isinstance(exc, TimeoutError) and job is not None:
            with contextlib.suppress(Exception):
                job.cancel()
            exc = TimeoutError(f"nothing within {timeout_s:.0f} s")
        outcome, message = classify_failure(exc)
        tally.add(Call(endpoint, user, outcome, time.perf_counter() - start, message))
        return None
    tally.add(Call(endpoint, user, "ok", time.perf_counter() - start))
    return result


class Tab:
    """One open page: a ``gradio_client.Client`` (its own session) and a keep-alive HTTP connection that
    fetches the pictures an answer shows, as the browser would.

    (The client's own downloads would open a new connection per file, hash every byte and leave an empty
    folder in the system temp dir per file; on two cores the load generator would then take CPU from the
    server it measures.)
    """

    def __init__(self, url: str) -> None:
        import httpx
        from gradio_client import Client

        self.url = url
        self.gradio = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        self.http = httpx.Client(timeout=60.0, trust_env=False)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        return self.gradio.submit(*args, **kwargs)

    def fetch(self, payload: Any) -> bytes:
        """The bytes of a file in an answer (a FileData dict with its URL)."""
        if not isinstance(payload, dict) or not (payload.get("url") or payload.get("path")):
            raise WrongAnswer(f"no file (got {str(payload)[:80]!r})")
        url = payload.get("url") or f"{self.url}gradio_api/file={payload['path']}"
        response = self.http.get(url)
        response.raise_for_status()
        if not response.content:
            raise WrongAnswer(f"an empty file at {url}")
        return response.content

    def image_size(self, payload: Any) -> tuple[int, int]:
        """(width, height) of a picture in an answer, fetched."""
        from PIL import Image

        try:
            with Image.open(io.BytesIO(self.fetch(payload))) as picture:
                return picture.size
        except OSError as err:
            raise WrongAnswer(f"not a picture: {err}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.gradio.close()
        with contextlib.suppress(Exception):
            self.http.close()


def expected_view_size(path: Path = EXAMPLE) -> tuple[int, int]:
    """(width, height) the app shows an upload at: the longest side fitted to IMAGE_SIDE, never enlarged."""
    from PIL import Image, ImageOps

    with Image.open(path) as picture:
        width, height = (ImageOps.exif_transpose(picture) or picture).size
    scale = min(1.0, IMAGE_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# ----------------------------------------------------------------------------------------------
# The people
# ----------------------------------------------------------------------------------------------


@dataclass
class Crowd:
    """What every person shares: the server, the clock, the tally and the settings."""

    url: str
    tally: Tally
    seconds: float
    grace_s: float
    train_minutes: float
    train_steps: int
    abandon_after_s: float
    sweep_every_s: float
    seed: int
    view_size: tuple[int, int]
    deadline: float = float("inf")  # time.monotonic(); set when everyone has connected
    notes: dict[str, Any] = field(default_factory=dict)
    notes_lock: threading.Lock = field(default_factory=threading.Lock)

    def tab(self) -> Tab:
        """A new page (a new session)."""
        return Tab(self.url)

    def start_clock(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self) -> float:
        """How long a request started now may wait: the rest of the window plus the grace."""
        return max(0.0, self.left()) + self.grace_s

    def note(self, key: str, value: Any) -> None:
        with self.notes_lock:
            self.notes.setdefault(key, []).append(value)


def upload_once(tab: Tab, path: Path = EXAMPLE) -> dict[str, Any]:
    """Upload ``path`` to the server once; returns a payload that later calls pass without uploading again.

    (``handle_file`` would upload it on every call; the page uploads once and then only moves the slider.)
    This uses the client's own upload; should a later gradio_client change it, ``handle_file`` it is.
    """
    from gradio_client import handle_file

    try:
        endpoint = tab.gradio.endpoints[tab.gradio._infer_fn_index("/forward_view", None)]
        uploaded = endpoint._upload_file(handle_file(str(path)), 0)
        return {"path": uploaded["path"], "orig_name": uploaded.get("orig_name", path.name)}  # no "meta": as is
    except (AttributeError, KeyError, IndexError, TypeError):
        return handle_file(str(path))


def forward_check(crowd: Crowd, tab: Tab, t: int) -> Callable[[Any], None]:
    """The five pictures (fetched), the mean at the size the upload is shown at, and the numbers at t."""

    def check(result: Any) -> None:
        if not isinstance(result, (list, tuple)) or len(result) != 6:
            raise WrongAnswer(f"{type(result).__name__} instead of the six views")
        if f"**t = {t}**" not in str(result[-1]):
            raise WrongAnswer(f"not the view at t = {t}: {str(result[-1])[:80]!r}")
        sizes = [tab.image_size(picture) for picture in result[:5]]
        if sizes[0] != crowd.view_size:
            raise WrongAnswer(f"mean image {sizes[0][0]}×{sizes[0][1]}, the upload shows at {crowd.view_size}")

    return check


def slide(crowd: Crowd, tab: Tab, user: str, rng: random.Random, until: float) -> None:
    """Scrub the Forward-noise slider until ``until`` (monotonic)."""
    try:
        image = upload_once(tab)
    except Exception as exc:
        crowd.tally.add(Call("forward_view", user, "error", 0.0, f"upload failed: {type(exc).__name__}: {exc}"))
        return
    while time.monotonic() < until:
        t = rng.randrange(T_STEPS)
        timed_call(
            crowd.tally, user, "forward_view", tab, forward_check(crowd, tab, t), crowd.timeout(),
            image, t, "linear", T_STEPS, rng.randrange(100),
        )  # fmt: skip


def sample_check(tab: Tab, n_digits: int) -> Callable[[Any], None]:
    """The sheet and the GIF (fetched), the three files listed, the number of digits asked for."""

    def check(result: Any) -> None:
        sheet, gif, files, summary = result
        if f"{n_digits} digits in" not in str(summary):
            raise WrongAnswer(f"not {n_digits} digits: {str(summary)[:80]!r}")
        tab.image_size(sheet)
        tab.image_size(gif)
        names = sorted(Path(str(f.get("orig_name") or f.get("path"))).suffix for f in files or [])
        if names != [".gif", ".npz", ".png"] or not all(f.get("size") for f in files):
            raise WrongAnswer(f"files {[f.get('orig_name') for f in files or []]!r}")

    return check


def live_check(tab: Tab, w: float) -> Callable[[Any], None]:
    """The grid (fetched) at the w asked for; a note with ⚠ is the app refusing the request."""

    def check(result: Any) -> None:
        picture, note = result
        if str(note).startswith("⚠"):
            from gradio_client.exceptions import AppError

            raise AppError(message=str(note).lstrip("⚠️ "))
        if not str(note).startswith(f"w = {w:g},"):
            raise WrongAnswer(f"not the grid at w = {w:g}: {str(note)[:80]!r}")
        tab.image_size(picture)

    return check


def info_check(result: Any) -> None:
    if not str(result or "").strip():
        raise WrongAnswer("an empty model card")


def slider_person(crowd: Crowd, tab: Tab, user: str, rng: random.Random) -> None:
    slide(crowd, tab, user, rng, crowd.deadline)


def sample_person(crowd: Crowd, tab: Tab, user: str, rng: random.Random) -> None:
    while crowd.left() > 0:
        classes = sorted(rng.sample(range(10), rng.randint(2, 4)))
        timed_call(
            crowd.tally, user, "sample_digits", tab, sample_check(tab, len(classes)), crowd.timeout(),
            classes=[str(c) for c in classes], per_class=1, seed=rng.randrange(10_000),
        )  # fmt: skip


def live_person(crowd: Crowd, tab: Tab, user: str, rng: random.Random) -> None:
    labels = [str(c) for c in range(10)]
    while crowd.left() > 0:
        w = round(rng.uniform(*LIVE_W), 1)
        timed_call(crowd.tally, user, "live_digits", tab, live_check(tab, w), crowd.timeout(), labels, w, 7)


def train_person(crowd: Crowd, tab: Tab, user: str, rng: random.Random) -> None:
    """The model card (as the page shows it on opening); one short training run, followed to its end (stopped
    at the end of the window); then the model card now and then."""
    timed_call(crowd.tally, user, "model_info", tab, info_check, crowd.timeout())
    start = time.perf_counter()
    first: float | None = None
    stop_sent = False
    job = tab.submit(minutes=crowd.train_minutes, max_steps=crowd.train_steps, api_name="/train_model")
    hard_end = crowd.deadline + crowd.grace_s
    outcome, message = "ok", ""
    while not job.done():
        if first is None and job.outputs():
            first = time.perf_counter() - start
        if not stop_sent and crowd.left() <= 0:
            stop_sent = True
            timed_call(crowd.tally, user, "stop_training", tab, lambda r: None, crowd.grace_s)
        if time.monotonic() > hard_end:
            job.cancel()
            outcome, message = "error", f"the run did not end within {crowd.grace_s:.0f} s of the window"
            break
        time.sleep(0.1)
    if outcome == "ok":
        try:
            status = job.result(timeout=5)[0]
            if not re.search(r"finished|stopped", str(status)):
                raise WrongAnswer(f"the run ended with {str(status)[:120]!r}")
            crowd.note("train_final_status", str(status)[:200])
        except Exception as exc:
            outcome, message = classify_failure(exc)
    crowd.tally.add(Call("train_model", user, outcome, time.perf_counter() - start, message))
    crowd.note("train_first_update_s", first)
    crowd.note("train_updates", len(job.outputs()))
    crowd.note("train_stop_sent", stop_sent)
    while crowd.left() > 0:  # the run is over: look at the model card now and then
        timed_call(crowd.tally, user, "model_info", tab, info_check, crowd.timeout())
        time.sleep(min(1.0, max(0.0, crowd.left())))


def is_running(job: Any) -> bool:
    """True once the server works on the job (no longer queued)."""
    from gradio_client.utils import Status

    try:
        code = job.status().code
    except Exception:
        return False
    return code not in (Status.STARTING, Status.JOINING_QUEUE, Status.QUEUE_FULL, Status.IN_QUEUE, Status.SENDING_DATA)


def sweep_settings(level: int) -> dict[str, Any]:
    return {**SWEEP, **SWEEP_LADDER[min(level, len(SWEEP_LADDER) - 1)]}


def describe_sweep(settings: dict[str, Any]) -> str:
    steps = "all T steps" if settings["sampler"] == "ddpm" else f"{settings['sampler_steps']} steps"
    guided = "guided in the middle" if settings["mid_guidance"] else "guided at every step"
    ws = len(settings["ws_text"].split(","))
    return f"{ws} w × {settings['per_class']} per class × {len(settings['classes'])} classes, " + (
        f"{settings['sampler']} {steps}, {guided}"
    )


def sweep_person(crowd: Crowd, tab: Tab, user: str, rng: random.Random) -> None:
    """The largest sweep the app accepts, abandoned (cancel, close) after a few seconds; slider calls; again.

    It starts at the largest settings the page offers; while the app refuses them (a cap on the work of one
    request), it steps down :data:`SWEEP_LADDER` at once, and keeps the first level the app accepts.
    """
    level = 0
    while crowd.left() > 0:
        settings = sweep_settings(level)
        start = time.perf_counter()
        job = tab.submit(seed=rng.randrange(10_000), api_name="/guidance_sweep", **settings)
        running_since = None  # the person waits for the sweep to start, then gives up a few seconds later
        while not job.done() and crowd.left() > 0:
            if running_since is None and is_running(job):
                running_since = time.perf_counter()
            if running_since is not None and time.perf_counter() - running_since >= crowd.abandon_after_s:
                break
            time.sleep(0.05)
        if job.done():  # refused as it started (a cap on the work), or, on a very fast machine, finished
            try:
                job.result(timeout=5)
                crowd.tally.add(Call("guidance_sweep", user, "ok", time.perf_counter() - start))
                crowd.note("sweep_finished", describe_sweep(settings))
            except Exception as exc:
                outcome, message = classify_failure(exc)
                crowd.tally.add(Call("guidance_sweep", user, outcome, time.perf_counter() - start, message))
                if outcome == "refused" and level < len(SWEEP_LADDER) - 1:
                    level += 1
                    continue  # at once, a little smaller
        else:
            crowd.note("sweep_abandoned_at_s", crowd.seconds - crowd.left())
            job.cancel()
            tab.close()  # the tab is closed
            when = "cancelled while running" if running_since is not None else "cancelled while queued"
            crowd.tally.add(Call("guidance_sweep", user, "abandoned", time.perf_counter() - start, when))
            crowd.note("sweep_abandoned", f"{describe_sweep(settings)} ({when})")
        if crowd.left() <= 0:
            break
        tab.close()
        tab = crowd.tab()  # a new tab: a new session
        # The last sweep starts so that it is abandoned as the window ends: then the quiet window after it
        # shows whether the server really stopped working on it.
        slide(
            crowd, tab, user, rng, min(crowd.deadline - crowd.abandon_after_s, time.monotonic() + crowd.sweep_every_s)
        )
        if crowd.left() < min(1.0, crowd.abandon_after_s):
            break
    tab.close()


PEOPLE: dict[str, Callable[[Crowd, Tab, str, random.Random], None]] = {
    "slider": slider_person,
    "sample": sample_person,
    "live": live_person,
    "train": train_person,
    "sweep": sweep_person,
}


def person(crowd: Crowd, role: str, index: int, start: threading.Barrier) -> None:
    """One person: open the page (before the clock starts), wait for everyone, then act until the window ends."""
    user = f"{role}-{index}"
    rng = random.Random(f"{crowd.seed}-{user}")
    tab = None
    try:
        began = time.perf_counter()
        tab = crowd.tab()
        crowd.note("connect_s", time.perf_counter() - began)
    except Exception as exc:
        crowd.tally.add(Call("connect", user, "error", 0.0, f"{type(exc).__name__}: {exc}"[:300]))
    try:
        start.wait()
    except threading.BrokenBarrierError:
        return
    if tab is None:
        return
    try:
        PEOPLE[role](crowd, tab, user, rng)
    except Exception as exc:  # a bug in this person's script, or the client gave up: counted, not fatal
        crowd.tally.add(Call(f"{role} script", user, "error", 0.0, f"{type(exc).__name__}: {exc}"[:300]))
    finally:
        tab.close()


def warm_up(crowd: Crowd) -> float:
    """One call of each view before the clock starts: loads the models and fills the caches."""
    start = time.perf_counter()
    tab = crowd.tab()
    try:
        for endpoint, args, kwargs in (
            ("/forward_view", (upload_once(tab), 10, "linear", T_STEPS, 0), {}),
            ("/sample_digits", (), {"classes": ["0", "1"], "per_class": 1}),
            ("/live_digits", ([str(c) for c in range(10)], 3.0, 0), {}),
        ):
            tab.submit(*args, api_name=endpoint, **kwargs).result(timeout=300)
    finally:
        tab.close()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_s": None, "p95_s": None, "max_s": None}
    array = np.asarray(values)
    return {
        "p50_s": float(np.percentile(array, 50)),
        "p95_s": float(np.percentile(array, 95)),
        "max_s": float(array.max()),
    }


def endpoint_rows(tally: Tally) -> dict[str, dict[str, Any]]:
    """Per endpoint: calls, outcomes, how many people called it, latency of the ok calls, the refusals."""
    rows = {}
    names = list(ENDPOINTS) + sorted({c.endpoint for c in tally.calls} - set(ENDPOINTS))
    for name in names:
        calls = tally.of(name)
        if not calls:
            continue
        count = {o: sum(c.outcome == o for c in calls) for o in ("ok", "refused", "abandoned", "error")}
        refusals: dict[str, int] = {}
        for c in calls:
            if c.outcome == "refused":
                refusals[c.message] = refusals.get(c.message, 0) + 1
        rows[name] = {
            "calls": len(calls),
            "ok": count["ok"],
            "refused": count["refused"],
            "abandoned": count["abandoned"],
            "errors": count["error"],
            "users": len({c.user for c in calls}),
            **percentiles([c.seconds for c in calls if c.outcome == "ok"]),
            **({"refusals": refusals} if refusals else {}),
        }
    return rows


def machine() -> dict[str, Any]:
    """Where this ran: cores, torch's CPU capability, the CPU's name, the versions that matter."""
    import importlib.metadata

    import torch

    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "")
    versions = {}
    for package in ("gradio", "gradio_client"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cores": os.cpu_count(),
        "cpu_capability": cpu_capability(),
        "cpu_model": model,
        "torch": torch.__version__,
        "python": platform.python_version(),
        **versions,
        "host": platform.node(),
    }


def traceback_count(log: str) -> tuple[int, str]:
    """How many tracebacks the app logged, and the last one (its final lines)."""
    count = log.count("Traceback (most recent call last)")
    last = log[log.rindex("Traceback (most recent call last)") :] if count else ""
    return count, "\n".join(last.splitlines()[-6:])


def run_crowd(
    seconds: float = 60.0,
    roles: dict[str, int] | None = None,
    *,
    train_minutes: float = 1.0,
    train_steps: int = 200,
    abandon_after_s: float = 3.0,
    sweep_every_s: float = 20.0,
    quiet_s: float = 5.0,
    grace_s: float = 60.0,
    seed: int = 0,
    torch_threads: int | None = None,
    out: Path | None = None,
    stream: IO[str] | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the mix against a fresh ``python app.py``; print the table, append the JSON line to ``out``; return it.

    ``workdir`` holds the app's home and its log (default: a temporary folder,
    deleted afterwards).
    """
    roles = dict(ROLES if roles is None else roles)
    stream = stream or sys.stdout
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ddpm-crowd-")))
        launched = time.perf_counter()
        extra_args = ["--torch-threads", str(torch_threads)] if torch_threads is not None else []
        server = stack.enter_context(running_app(workdir / "app", extra_args=extra_args))
        startup_s = time.perf_counter() - launched
        pid = server.process.pid
        crowd = Crowd(
            server.url, Tally(), seconds, grace_s, train_minutes, train_steps,
            abandon_after_s, sweep_every_s, seed, expected_view_size(),
        )  # fmt: skip
        sampler = RssSampler(pid)
        sampler.start()
        warm_s = warm_up(crowd)
        people = [(role, i) for role, n in roles.items() for i in range(n)]
        start = threading.Barrier(len(people) + 1, action=crowd.start_clock)  # the clock starts with everyone
        threads = [
            threading.Thread(target=person, args=(crowd, role, i, start), daemon=True, name=f"crowd-{role}-{i}")
            for role, i in people
        ]
        for thread in threads:
            thread.start()
        start.wait(timeout=300)  # everyone has connected
        t0 = crowd.deadline - seconds
        cpu_0, own_0, all_0 = cpu_seconds(pid), time.process_time(), machine_busy_seconds()
        for thread in threads:
            thread.join(timeout=max(0.0, crowd.deadline - time.monotonic()) + grace_s + 30)
        stuck = [t.name for t in threads if t.is_alive()]
        wall = time.monotonic() - t0
        cpu_1, own_1, all_1 = cpu_seconds(pid), time.process_time(), machine_busy_seconds()
        time.sleep(quiet_s)
        cpu_2 = cpu_seconds(pid)
        sampler.stop()
        sampler.sample()
        rss = sampler.summary(window_start=t0)
        answers_after = http_ok(server.url, timeout=30)
        alive_after = server.process.poll() is None
        tracebacks, last_traceback = traceback_count(server.log_text())
    rows = endpoint_rows(crowd.tally)
    errors = [c for c in crowd.tally.calls if c.outcome == "error"]
    refused = [c for c in crowd.tally.calls if c.outcome == "refused"]
    slider = rows.get("forward_view", {})
    peak = max(rss["peak_sampled"], rss["server_vmhwm"])
    cpu_after = cpu_2 - cpu_1
    measured = {
        "forward_view_p95_s": slider.get("p95_s"),
        "peak_rss_mb": peak,
        "errors": len(errors) + len(stuck),
        "cpu_s_after_end": cpu_after,
    }
    goals = {
        name: {"goal": goal, "measured": measured[name], "met": measured[name] is not None and measured[name] <= goal}
        for name, goal in GOALS.items()
    }
    notes = crowd.notes
    line = rounded({
        "metric": "crowd_mixed_load",
        "value": slider.get("p95_s"),
        "unit": "s",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **machine(),
        "app_torch_threads": torch_threads if torch_threads is not None else "app default",
        "server": "python app.py (own DDPM_PLAYGROUND_HOME and GRADIO_TEMP_DIR)",
        "users": len(people),
        "roles": roles,
        "seconds": seconds,
        "wall_s": wall,
        "startup_s": startup_s,
        "warm_up_s": warm_s,
        "connect_s_max": max(notes.get("connect_s", [0.0])),
        "load_average_1m_before": load_before,
        "load_average_1m_after": os.getloadavg()[0],
        "endpoints": rows,
        "calls": len(crowd.tally.calls),
        "errors": len(errors),
        "refused": len(refused),
        "first_errors": [f"{c.endpoint} ({c.user}): {c.message}" for c in errors[:5]],
        "stuck_users": stuck,
        "peak_rss_mb": peak,
        "rss_mb": rss,
        "server_cpu_s_in_window": cpu_1 - cpu_0,
        "server_cores_busy_in_window": (cpu_1 - cpu_0) / wall if wall > 0 else None,
        "server_cpu_s_after_end": cpu_after,
        "load_generator_cpu_s_in_window": own_1 - own_0,  # the eight clients, on the same cores
        # what else ran on this machine meanwhile (a shared machine): busy CPU-seconds that were not ours
        "other_processes_cpu_s_in_window": max(0.0, (all_1 - all_0) - (cpu_1 - cpu_0) - (own_1 - own_0)),
        "quiet_window_s": quiet_s,
        "abandoned_sweeps": int(rows.get("guidance_sweep", {}).get("abandoned") or 0),
        "train": {
            "minutes": train_minutes,
            "steps": train_steps,
            "first_update_s": (notes.get("train_first_update_s") or [None])[0],
            "updates": (notes.get("train_updates") or [None])[0],
            "stop_sent": (notes.get("train_stop_sent") or [None])[0],
            "final_status": (notes.get("train_final_status") or [None])[0],
        },
        "sweep": {
            "largest": describe_sweep(SWEEP),
            "abandoned": sorted(set(notes.get("sweep_abandoned", []))),
            "finished": sorted(set(notes.get("sweep_finished", []))),
            "abandon_after_s": abandon_after_s,
            "last_abandoned_at_s": max(notes.get("sweep_abandoned_at_s", [None]), key=_or_minus_inf),
        },
        "server_answers_after": answers_after,
        "server_alive_after": alive_after,
        "app_tracebacks": tracebacks,
        "app_last_traceback": last_traceback,
        "goals": goals,
    })  # fmt: skip
    print(table(line), file=stream, flush=True)
    text = json.dumps(line, ensure_ascii=False)
    print(text, file=stream, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as file:
            file.write(text + "\n")
    return line


def _or_minus_inf(value: float | None) -> float:
    return -float("inf") if value is None else value


def _s(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}"


def table(line: dict[str, Any]) -> str:
    """The readable summary of one run."""
    head = (
        f"crowd: {line['users']} people for {line['seconds']:g} s against python app.py on {line['cores']} cores "
        f"({line['cpu_capability']}, {line['cpu_model'] or 'cpu'}), torch {line['torch']}, "
        f"load average {line['load_average_1m_before']:.2f} before, {line['load_average_1m_after']:.2f} after"
    )
    rows = [f"{'endpoint':<16}{'users':>6}{'calls':>7}{'ok':>6}{'refused':>9}{'abandon':>9}{'errors':>8}"
            f"{'p50 s':>8}{'p95 s':>8}{'max s':>8}"]  # fmt: skip
    for name, r in line["endpoints"].items():
        rows.append(
            f"{name:<16}{r['users']:>6}{r['calls']:>7}{r['ok']:>6}{r['refused']:>9}{r['abandoned']:>9}"
            f"{r['errors']:>8}{_s(r['p50_s']):>8}{_s(r['p95_s']):>8}{_s(r['max_s']):>8}"
        )
    rss = line["rss_mb"]
    goals = line["goals"]

    def verdict(name: str) -> str:
        return "met" if goals[name]["met"] else "NOT met"

    tail = [
        f"peak RSS {line['peak_rss_mb']:.0f} MiB (sampled {rss['peak_sampled']:.0f}, server VmHWM "
        f"{rss['server_vmhwm']:.0f}, {rss['children_seen']} child processes; {rss['at_start']:.0f} at launch, "
        f"{rss['at_window_start']:.0f} at the start, {rss['at_end']:.0f} at the end) — goal ≤ "
        f"{GOALS['peak_rss_mb']:.0f} MiB: {verdict('peak_rss_mb')}",
        f"forward_view p95 {_s(goals['forward_view_p95_s']['measured'])} s — goal ≤ "
        f"{GOALS['forward_view_p95_s']:g} s: {verdict('forward_view_p95_s')}",
        f"errors {goals['errors']['measured']} (refused {line['refused']}) — goal 0: {verdict('errors')}",
        f"CPU-seconds in the {line['wall_s']:.0f} s window: the server {line['server_cpu_s_in_window']:.1f} "
        f"({line['server_cores_busy_in_window']:.2f} cores), the eight clients "
        f"{line['load_generator_cpu_s_in_window']:.1f}, other processes on this machine "
        f"{line['other_processes_cpu_s_in_window']:.1f}",
        f"server CPU in the {line['quiet_window_s']:g} s after the end: {line['server_cpu_s_after_end']:.2f} s "
        f"({line['abandoned_sweeps']} sweeps abandoned) — goal ≤ {GOALS['cpu_s_after_end']:g} s: "
        f"{verdict('cpu_s_after_end')}",
        f"sweeps: largest offered {line['sweep']['largest']}; abandoned: "
        f"{'; '.join(line['sweep']['abandoned']) or 'none'}; the last at "
        f"{_s(line['sweep']['last_abandoned_at_s'])} s of {line['seconds']:g} s",
        f"training: first update after {_s(line['train']['first_update_s'])} s, "
        f"{line['train']['final_status'] or 'no final status'}",
    ]
    if line["first_errors"]:
        tail += ["first errors:", *(f"  {e}" for e in line["first_errors"])]
    if line["app_tracebacks"]:
        tail.append(f"the app logged {line['app_tracebacks']} tracebacks; the last ends: {line['app_last_traceback']}")
    return "\n".join([head, *rows, *tail])


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def default_out() -> Path:
    capability = cpu_capability().lower().replace(" ", "-")
    return OUT_DIR / f"crowd-{datetime.date.today().isoformat()}-{capability}.jsonl"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m benchmarks.crowd", __doc__, paragraphs=3)
    p.add_argument("--seconds", type=float, default=60.0, help="how long the people keep going")
    p.add_argument(
        "--only", default=None, help=f"comma-separated subset of the people: {', '.join(ROLES)} (default: all)"
    )
    p.add_argument("--train-minutes", type=float, default=1.0, help="the training run's time budget, in minutes")
    p.add_argument("--train-steps", type=int, default=200, help="the training run's step budget")
    p.add_argument("--abandon-after", type=float, default=3.0, help="seconds a sweep runs before it is abandoned")
    p.add_argument("--sweep-every", type=float, default=20.0, help="seconds of slider calls between two sweeps")
    p.add_argument("--quiet-seconds", type=float, default=5.0, help="the quiet window after the end (CPU)")
    p.add_argument("--grace", type=float, default=60.0, help="how long a request may outlast the window")
    p.add_argument("--torch-threads", type=int, default=None, help="passed to app.py (default: the app's own)")
    p.add_argument("--seed", type=int, default=0, help="seed of the people's choices")
    p.add_argument(
        "--out", default=None, help="append the JSON line here (default: assets/benchmarks/crowd-….jsonl; - : none)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    roles = dict(ROLES)
    if args.only is not None:
        chosen = [r.strip() for r in args.only.split(",") if r.strip()]
        unknown = sorted(set(chosen) - set(ROLES))
        if unknown or not chosen:
            print(f"error: unknown people {', '.join(unknown)}; choose from {', '.join(ROLES)}", file=sys.stderr)
            return 2
        roles = {r: n for r, n in ROLES.items() if r in chosen}
    out = None if args.out == "-" else Path(args.out) if args.out else default_out()
    run_crowd(
        args.seconds, roles, train_minutes=args.train_minutes, train_steps=args.train_steps,
        abandon_after_s=args.abandon_after, sweep_every_s=args.sweep_every, quiet_s=args.quiet_seconds,
        grace_s=args.grace, seed=args.seed, torch_threads=args.torch_threads, out=out,
    )  # fmt: skip
    if out is not None:
        print(f"appended to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
