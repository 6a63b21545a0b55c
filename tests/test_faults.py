"""Faults a public server meets, tried against ``python app.py`` through ``gradio_client``, plus crashes of the
training command line and the settings a public deployment relies on.

* Bad image uploads (corrupt, not an image, a decompression bomb by header and a real one, over 20 MB):
  a readable error, never a stack trace or a server path, and the server answers afterwards.
* Bad checkpoint uploads to ``/load_model`` (corrupt, truncated, another architecture, pickles, a zip
  holding a pickle, a config that is not JSON): a readable error, no pickle ever runs, and this page's model
  is unchanged (``/model_info`` before and after).
* Two users asking to train at once: the second is told a run is already going, and cannot stop it.
* ``python -m ddpm_core.cli.train`` killed with SIGKILL mid-run, repeatedly, including during its saves: the
  checkpoint folder (or its ``.previous`` fallback) always loads and holds one complete save.
* Deployment settings: README front matter, ``--help``, GRADIO_SERVER_NAME/PORT, analytics, upload
  limit, queue bound and per-event concurrency limits, no ``allowed_paths``, errors without tracebacks.

The tally (cases tried, server crashes, data lost) is printed at the end of the module and written to
``fault-tally.json`` in pytest's temporary folder (or to ``$DDPM_FAULT_REPORT`` when set).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))  # the shared `python app.py` launcher

from appserver import ROOT, AppProcess, running_app

from ddpm_core import checkpoints as ck
from ddpm_core.files import complete_folder
from ddpm_core.schedule import make_schedule
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet

EXAMPLE = ROOT / "assets" / "grace_hopper.jpg"
SHIPPED = ROOT / "checkpoints" / "digits-base"
SHIPPED_NAME = json.loads((SHIPPED / ck.CONFIG_FILE).read_text(encoding="utf-8")).get("name") or SHIPPED.name
LEAKS = re.compile(r"Traceback|File \"|site-packages|" + re.escape(str(ROOT)) + r"|/tmp/|\.py\b")


# ---------------------------------------------------------------------------------------------
# The tally
# ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    cases: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, group: str, case: str, *, crashed: bool = False, lost: bool = False, note: str = "") -> None:
        self.cases.append({"group": group, "case": case, "crashed": crashed, "data_lost": lost, "note": note})

    def summary(self) -> dict[str, Any]:
        groups: dict[str, dict[str, int]] = {}
        for c in self.cases:
            g = groups.setdefault(c["group"], {"cases": 0, "crashes": 0, "data_lost": 0})
            g["cases"] += 1
            g["crashes"] += c["crashed"]
            g["data_lost"] += c["data_lost"]
        return {
            "cases": len(self.cases),
            "crashes": sum(c["crashed"] for c in self.cases),
            "data_lost": sum(c["data_lost"] for c in self.cases),
            "groups": groups,
            "notes": self.notes,
            "details": self.cases,
        }


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tally]:
    tally = Tally()
    yield tally
    summary = tally.summary()
    out = Path(os.environ.get("DDPM_FAULT_REPORT") or tmp_path_factory.getbasetemp() / "fault-tally.json")
    out.write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"fault tally: {summary['cases']} cases tried, {summary['crashes']} server crashes, "
        f"{summary['data_lost']} with data lost (report: {out})"
    ]
    lines += [
        f"  {name}: {g['cases']} cases, {g['crashes']} crashes, {g['data_lost']} data lost"
        for name, g in summary["groups"].items()
    ]
    lines += [f"  note: {n}" for n in tally.notes]
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(lines))


# ---------------------------------------------------------------------------------------------
# The server under test
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    with running_app(tmp_path_factory.mktemp("faults-app")) as app:
        yield app


def new_client(server: AppProcess, downloads: Path) -> Any:
    from gradio_client import Client

    downloads.mkdir(parents=True, exist_ok=True)
    return Client(server.url, verbose=False, analytics_enabled=False, download_files=str(downloads))


@pytest.fixture(scope="module")
def client(server: AppProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    c = new_client(server, tmp_path_factory.mktemp("faults-downloads"))
    yield c
    c.close()


def still_serving(server: AppProcess, client: Any) -> bool:
    """The process is alive and a normal request still gets a normal answer."""
    from gradio_client import handle_file

    if not server.alive():
        return False
    try:
        info = client.predict(handle_file(str(EXAMPLE)), 123, "linear", 1000, 0, api_name="/forward_view")[-1]
    except Exception:
        return False
    return "**t = 123**" in info


def assert_clean_message(message: str) -> None:
    """Meant for people: no stack trace, no source file, no server path."""
    assert not LEAKS.search(message), f"the error shows server internals: {message!r}"


# ---------------------------------------------------------------------------------------------
# Image uploads
# ---------------------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def grey_png(width: int, height: int, rows: bytes | None = None) -> bytes:
    """An 8-bit greyscale PNG; ``rows`` is the filtered scanline data (all zeros if None)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if rows is None:
        rows = b"\x00" * ((width + 1) * height)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows, 9))
        + png_chunk(b"IEND", b"")
    )


def corrupt_png() -> bytes:
    """A real 96 × 96 photo-like PNG with 200 bytes of its compressed pixels overwritten (CRC fixed up)."""
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT")
    length = struct.unpack(">I", data[start - 4 : start])[0]
    body = bytearray(data[start + 4 : start + 4 + length])
    body[100:300] = rng.integers(0, 255, 200, dtype=np.uint8).tobytes()
    return bytes(data[: start - 4]) + png_chunk(b"IDAT", bytes(body)) + bytes(data[start + 8 + length :])


IMAGE_FAULTS = {
    # name: (file name, bytes maker, message the user must see)
    "corrupt PNG": ("photo.png", corrupt_png, "damaged"),
    "text named .png": ("holiday.png", lambda: b"these are words, not pixels\n" * 50, "not an image we can read"),
    "HTML named .jpg": ("x.jpg", lambda: b"<html><script>alert(1)</script></html>", "not an image we can read"),
    "bomb: header says 50000 x 50000": ("bomb.png", lambda: grey_png(50000, 50000, b"\x00" * 50001), "too many pixels"),
    "bomb: real 9000 x 9000 of zeros": ("zeros.png", lambda: grey_png(9000, 9000), "9000×9000 pixels"),
    "truncated JPEG": ("cut.jpg", lambda: EXAMPLE.read_bytes()[:5000], "damaged or truncated"),
}


@pytest.mark.parametrize("name", list(IMAGE_FAULTS))
def test_bad_image_upload(name: str, server: AppProcess, client: Any, tally: Tally, tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    filename, make, expected = IMAGE_FAULTS[name]
    bad = tmp_path / filename
    bad.write_bytes(make())
    try:
        with pytest.raises(AppError) as raised:
            client.predict(handle_file(str(bad)), 300, "linear", 1000, 0, api_name="/forward_view")
        message = str(raised.value)
        assert expected in message, f"{name}: {message!r}"
        assert_clean_message(message)
    finally:
        serving = still_serving(server, client)
        tally.record("image uploads", name, crashed=not serving)
    assert serving, f"the server stopped answering after {name}:\n{server.log_tail()}"


def test_oversize_image_upload(server: AppProcess, client: Any, tally: Tally, tmp_path: Path) -> None:
    from gradio_client import handle_file

    big = tmp_path / "huge.png"
    big.write_bytes(grey_png(64, 64) + os.urandom(21 * 1024 * 1024))  # a valid PNG with 21 MB of trailing bytes
    try:
        # The client refuses from the limit the server announces ...
        with pytest.raises(ValueError, match="maximum file size") as raised:
            client.predict(handle_file(str(big)), 300, "linear", 1000, 0, api_name="/forward_view")
        assert "20" in str(raised.value)
        # ... and the upload route refuses it too, whoever calls it.
        upload = httpx.post(
            server.url + "gradio_api/upload", files={"files": ("huge.png", big.read_bytes(), "image/png")}, timeout=120
        )
        assert upload.status_code == 413, upload.text[:300]
        assert_clean_message(upload.text)
    finally:
        serving = still_serving(server, client)
        tally.record("image uploads", "over 20 MB", crashed=not serving)
    assert serving


# ---------------------------------------------------------------------------------------------
# Checkpoint uploads
# ---------------------------------------------------------------------------------------------


class Payload:
    """Unpickling this creates a folder: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 3-step tiny checkpoint (T = 50), made with the training command line."""
    out = tmp_path_factory.mktemp("fault-ckpt") / "tiny"
    command = [sys.executable, "-m", "ddpm_core.cli.train", "--steps", "3", "--preset", "tiny", "--T", "50", "--out"]
    subprocess.run([*command, str(out)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    return out


def checkpoint_fault(name: str, tiny: Path, work: Path, marker: Path) -> list[Path]:
    """The files one bad upload consists of."""
    weights, config = (tiny / ck.MODEL_FILE).read_bytes(), tiny / ck.CONFIG_FILE
    model = work / ck.MODEL_FILE
    if name == "corrupt weights":
        model.write_bytes(bytes(random.Random(0).getrandbits(8) for _ in range(len(weights))))
        return [model, config]
    if name == "truncated weights":
        model.write_bytes(weights[: len(weights) // 2])
        return [model, config]
    if name == "weights of another architecture":
        model.write_bytes(weights)  # tiny weights, but the config of the shipped base-width model
        return [model, SHIPPED / ck.CONFIG_FILE]
    if name == "pickle named model.safetensors":
        model.write_bytes(pickle.dumps({"weights": Payload(marker)}))
        return [model, config]
    if name == "pickle as model.pt":
        pt = work / "model.pt"
        pt.write_bytes(pickle.dumps({"weights": Payload(marker)}))
        return [pt, config]
    if name == "zip holding a pickle":
        archive = work / "checkpoint.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(f"ckpt/{ck.MODEL_FILE}", pickle.dumps({"weights": Payload(marker)}))
            zf.write(config, f"ckpt/{ck.CONFIG_FILE}")
        return [archive]
    if name == "config that is a pickle":
        bad_config = work / ck.CONFIG_FILE
        bad_config.write_bytes(pickle.dumps({"config": Payload(marker)}))
        model.write_bytes(weights)
        return [model, bad_config]
    raise KeyError(name)


CHECKPOINT_FAULTS = {
    "corrupt weights": "not a readable safetensors file",
    "truncated weights": "not a readable safetensors file",
    "weights of another architecture": "the architecture needs",
    "pickle named model.safetensors": "not a readable safetensors file",
    "pickle as model.pt": ".safetensors",
    "zip holding a pickle": "not a readable safetensors file",
    "config that is a pickle": "not valid JSON",
}


@pytest.mark.parametrize("name", list(CHECKPOINT_FAULTS))
def test_bad_checkpoint_upload(
    name: str, server: AppProcess, client: Any, tiny_checkpoint: Path, tally: Tally, tmp_path: Path
) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    marker = tmp_path / "pickle-ran"
    files = checkpoint_fault(name, tiny_checkpoint, tmp_path, marker)
    before = client.predict(api_name="/model_info")
    assert f"This page's model: `{SHIPPED_NAME}`" in before
    changed = True
    try:
        with pytest.raises(AppError) as raised:
            client.predict([handle_file(str(f)) for f in files], api_name="/load_model")
        message = str(raised.value)
        assert CHECKPOINT_FAULTS[name] in message, f"{name}: {message!r}"
        assert_clean_message(message)
        assert not marker.exists(), "a pickle in the upload was executed"
        changed = client.predict(api_name="/model_info") != before
        assert not changed, "the page's model changed after a refused upload"
    finally:
        serving = still_serving(server, client)
        tally.record("checkpoint uploads", name, crashed=not serving, lost=changed)
    assert serving


def test_a_good_checkpoint_still_loads_after_the_bad_ones(
    server: AppProcess, client: Any, tiny_checkpoint: Path, tally: Tally
) -> None:
    """The refusals above are specific: the same route accepts a good upload (then the shipped model goes back)."""
    from gradio_client import handle_file

    files = [handle_file(str(tiny_checkpoint / n)) for n in (ck.MODEL_FILE, ck.CONFIG_FILE)]
    assert "This page's model: `tiny`" in client.predict(files, api_name="/load_model")
    shipped = [handle_file(str(SHIPPED / n)) for n in (ck.MODEL_FILE, ck.CONFIG_FILE)]
    assert f"This page's model: `{SHIPPED_NAME}`" in client.predict(shipped, api_name="/load_model")
    tally.record("checkpoint uploads", "good upload, then the shipped model back", crashed=not server.alive())


# ---------------------------------------------------------------------------------------------
# Two users training at once
# ---------------------------------------------------------------------------------------------


def test_second_training_request_is_told_one_is_going(
    server: AppProcess, client: Any, tally: Tally, tmp_path: Path
) -> None:
    from gradio_client.exceptions import AppError

    alice, bob = new_client(server, tmp_path / "alice"), new_client(server, tmp_path / "bob")
    args = (1, 0, "tiny", 16, 0.002, 0.15, 0, "start fresh")  # one minute or until stopped
    first = alice.submit(*args, api_name="/train_model")
    try:
        deadline = time.monotonic() + 120
        while not any("Training…" in out[0] for out in first.outputs()):
            assert time.monotonic() < deadline, "the first run never reported progress"
            assert not first.done(), f"the first run ended early: {first.outputs()[-1:]}"
            time.sleep(0.2)
        with pytest.raises(AppError, match="already going") as raised:
            bob.predict(*args, api_name="/train_model")
        assert_clean_message(str(raised.value))
        with pytest.raises(AppError, match="another visitor's") as raised:
            bob.predict(api_name="/stop_training")
        assert_clean_message(str(raised.value))
    finally:
        stopped = alice.predict(api_name="/stop_training")
        final = first.result(timeout=120)[0]
        alice.close()
        bob.close()
    assert stopped.startswith("Stopping")
    assert final.startswith("Training stopped at step")
    serving = still_serving(server, client)
    tally.record("concurrent training", "second user asks while a run is going", crashed=not serving)
    assert serving


# ---------------------------------------------------------------------------------------------
# The training command line killed mid-run
# ---------------------------------------------------------------------------------------------

TRAIN = [sys.executable, "-m", "ddpm_core.cli.train", "--preset", "tiny", "--T", "50"]
LONG_RUN = ["--steps", "100000", "--minutes", "5", "--preset", "tiny", "--T", "50"]
SAVE_EVERY_S = 0.3
KILL_ROUNDS = int(os.environ.get("DDPM_FAULT_KILL_ROUNDS", "6"))

# The real command line (saving every SAVE_EVERY_S seconds instead of every 60, by its flag), with one change
# made from outside: a log line (fsynced) before and after each save that names the step and the SHA-256 of
# the weights file the save will write. The saving code itself is untouched.
LOGGED_TRAIN = r"""
import hashlib, os, sys
from safetensors.torch import save
import ddpm_core.cli.train as cli
import ddpm_core.training as training
from ddpm_core.checkpoints import FORMAT

log_path = sys.argv[1]
real_save = training.save_checkpoint


def note(line):
    with open(log_path, "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def logged_save(directory, model, schedule, metadata=None, training_state=None):
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    digest = hashlib.sha256(save(weights, metadata={"format": FORMAT})).hexdigest()
    step = (metadata or {}).get("training", {}).get("steps")
    note(f"begin {os.getpid()} {step} {digest}")
    result = real_save(directory, model, schedule, metadata, training_state)
    note(f"done {os.getpid()} {step} {digest}")
    return result


training.save_checkpoint = logged_save
sys.exit(cli.main(sys.argv[2:]))
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def read_log(log: Path) -> list[tuple[str, int, int, str]]:
    if not log.exists():
        return []
    entries = []
    for line in log.read_text().splitlines():
        kind, pid, step, digest = line.split()
        entries.append((kind, int(pid), int(step), digest))
    return entries


def wait_for(condition: Any, process: subprocess.Popen, what: str, timeout: float, output: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"training exited ({process.returncode}) before {what}:\n{output.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{output.read_text()[-2000:]}")
        time.sleep(0.001)


def check_after_kill(folder: Path, allowed: set[tuple[int, str]]) -> tuple[bool, str]:
    """Does the folder (or its fallback) load, and is it exactly one complete save from ``allowed``?"""
    where = complete_folder(folder)
    try:
        loaded = ck.load_checkpoint(folder, with_training_state=True)
    except ck.CheckpointError as err:
        return False, f"does not load: {err}"
    step = int(loaded.config["training"]["steps"])
    if loaded.training_state is None or int(loaded.training_state["step"][0]) != step:
        return False, "training state missing or from another save"
    found = (step, sha256(where / ck.MODEL_FILE))
    if found not in allowed:
        return False, f"holds step {step} with weights {found[1][:12]}…, which is not the last complete save"
    return True, f"step {step} from {where.name}"


@pytest.mark.slow
def test_training_killed_mid_run_never_loses_the_checkpoint(tmp_path: Path, tally: Tally) -> None:
    folder = tmp_path / "run"
    out = tmp_path / "output.txt"
    subprocess.run(
        [*TRAIN, "--steps", "3", "--out", str(folder)], cwd=ROOT, check=True, capture_output=True, timeout=300
    )
    first = folder_bytes(folder)
    first_step = int(json.loads(first[ck.CONFIG_FILE])["training"]["steps"])

    # Round 0: exactly the command line, killed a few seconds in, before its first (60 s) periodic save.
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ddpm_core.cli.train", *LONG_RUN, "--resume", str(folder), "--out", str(folder)],
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: re.search(rb"step [1-9]\d* loss", out.read_bytes()), process, "training steps", 180, out)
        time.sleep(random.uniform(0.0, 2.0))
    finally:
        process.kill()
        process.wait()
    intact = folder_bytes(folder) == first and not folder.with_name("run.previous").exists()
    tally.record("training killed (SIGKILL)", "real CLI, before its first save", lost=not intact)
    assert intact, "a run killed before its first save changed the checkpoint it resumed from"

    # Rounds 1…N: resume into the same folder, saving every SAVE_EVERY_S; kill at a random moment after a
    # save, or deliberately during one.
    log = tmp_path / "saves.log"
    rng = random.Random(1234)
    problems = []
    mid_save = rounds = 0
    for round_no in range(1, KILL_ROUNDS + 1):
        rounds = round_no
        during_save = round_no % 2 == 0
        command = [sys.executable, "-c", LOGGED_TRAIN, str(log), "--checkpoint-every", str(SAVE_EVERY_S), *LONG_RUN[:4]]
        command += ["--resume", str(folder), "--out", str(folder)]
        with out.open("wb") as sink:
            process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        pid = process.pid

        def saves(kind: str, pid: int = pid) -> int:
            return sum(1 for e in read_log(log) if e[0] == kind and e[1] == pid)

        try:
            wait_for(lambda: saves("done") >= 1, process, "a first complete save", 180, out)
            if during_save:
                begun = saves("begin")
                wait_for(lambda n=begun: saves("begin") > n, process, "the next save", 60, out)
                time.sleep(rng.uniform(0.0, 0.01))
            else:
                time.sleep(rng.uniform(0.0, 2 * SAVE_EVERY_S))
        finally:
            process.kill()
            process.wait()
        entries = read_log(log)
        last_done = max(i for i, e in enumerate(entries) if e[0] == "done")
        # Allowed: the last complete save, or a save that had begun after it (it may have finished its swap).
        allowed = {entries[last_done][2:]} | {e[2:] for e in entries[last_done + 1 :] if e[0] == "begin"}
        cut = entries[-1][0] == "begin" and entries[-1][1] == pid
        mid_save += cut
        ok, detail = check_after_kill(folder, allowed)
        note = f"{'during a save' if cut else 'between saves'}: {detail}"
        tally.record("training killed (SIGKILL)", f"round {round_no}", lost=not ok, note=note)
        if not ok:
            problems.append(f"round {round_no}: {note}")
            break  # the next round would resume from a broken folder

    leftovers = sorted(p.name for p in tmp_path.iterdir() if ".partial-" in p.name)
    summary = f"{rounds} kills after a save, {mid_save} during one; partial folders left behind: {len(leftovers)}"
    tally.notes.append(summary)
    assert not problems, f"{summary}\n" + "\n".join(problems)
    assert mid_save >= 1, f"no kill landed during a save, so that case went untested ({summary})"
    assert ck.load_checkpoint(folder).config["training"]["steps"] > first_step  # the rounds did train on


def _tiny_model(seed: int) -> ContextUNet:
    import torch

    torch.manual_seed(seed)
    return ContextUNet(WIDTH_PRESETS["tiny"])


def test_a_crash_in_the_save_after_a_crash_keeps_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ckpt"
    schedule = make_schedule("cosine", 50)
    ck.save_checkpoint(folder, _tiny_model(0), schedule, {"name": "first"})
    # A crash between the two renames of a later save leaves only the fallback; it loads.
    os.replace(folder, folder.with_name("ckpt.previous"))
    assert ck.load_checkpoint(folder).config["name"] == "first"

    class Killed(BaseException):
        pass

    def die(*_args: Any) -> None:
        raise Killed

    # The next save (after resuming from the fallback) dies at its first rename: whatever it removed by then is
    # gone, as after a SIGKILL.
    monkeypatch.setattr(os, "replace", die)  # os.replace, as ddpm_core.files calls it
    with pytest.raises(Killed):
        ck.save_checkpoint(folder, _tiny_model(1), schedule, {"name": "second"})
    monkeypatch.undo()
    assert ck.load_checkpoint(folder).config["name"] in ("first", "second")


# ---------------------------------------------------------------------------------------------
# Settings a public deployment relies on
# ---------------------------------------------------------------------------------------------


def test_help_lists_share_host_and_port() -> None:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    result = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for flag in ("--share", "--host", "--port"):
        assert flag in result.stdout, f"{flag} missing from --help:\n{result.stdout}"


def test_launch_and_queue_settings(app_module: ModuleType) -> None:
    assert os.environ.get("GRADIO_ANALYTICS_ENABLED") == "False"
    assert app_module.demo.analytics_enabled is False
    options = app_module.launch_options()
    assert options.get("max_file_size") in ("20mb", 20 * 1024 * 1024)
    assert "allowed_paths" not in options and "blocked_paths" not in options
    queue = app_module.demo._queue
    assert queue.max_size is not None and 0 < queue.max_size <= 256
    default_limit = queue.default_concurrency_limit
    assert isinstance(default_limit, int) and default_limit >= 1
    unlimited_ok = {"stop_training"}  # answers at once and must get through while a run is going
    for fn in app_module.demo.fns.values():
        if not fn.queue or fn.api_name in unlimited_ok:
            continue
        limit = default_limit if fn.concurrency_limit == "default" else fn.concurrency_limit
        assert isinstance(limit, int) and limit >= 1, f"{fn.api_name} has no concurrency limit"
    heavy = {fn.api_name: fn for fn in app_module.demo.fns.values() if fn.api_name}
    assert heavy["oracle_chain"].concurrency_limit == 1
    assert heavy["load_model"].concurrency_limit == 1
    assert heavy["sample_digits"].concurrency_id == heavy["guidance_sweep"].concurrency_id  # share the CPU budget


def test_running_server_announces_the_same_settings(server: AppProcess, tally: Tally) -> None:
    config = httpx.get(server.url + "config", timeout=60).json()
    assert config["analytics_enabled"] is False
    assert config["max_file_size"] == 20 * 1024 * 1024
    assert config["enable_queue"] is True
    # No allowed_paths: the app's own files are not served.
    for path in (ROOT / "app.py", SHIPPED / ck.CONFIG_FILE):
        response = httpx.get(f"{server.url}gradio_api/file={path}", timeout=60)
        assert response.status_code in (403, 404), f"{path} is served ({response.status_code})"
        assert "DDPM Playground" not in response.text and '"format"' not in response.text
    tally.record("settings", "server files not served", crashed=not server.alive())


@pytest.mark.parametrize(
    ("endpoint", "data", "expected"),
    [
        ("forward_view", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, 5, "linear", 1000, 0], "not"),
        ("error_curve", [None, 5, "linear", 77, 0], "T must be one of 1000, 150"),
        ("sample_digits", [[], 1, 3, "dpmpp", 15, 0, 0, True], "at least one digit"),
        ("train_model", [0, 0, "tiny", 16, 0.002, 0.15, 0, "start fresh", "fast", "bundled"], "time budget"),
    ],
)
def test_error_responses_have_no_traceback_or_paths(
    server: AppProcess, tally: Tally, endpoint: str, data: list, expected: str
) -> None:
    """Raw HTTP, as any script would call it: the error event carries a message and nothing from the server."""
    call = f"{server.url}gradio_api/call/{endpoint}"
    event = httpx.post(call, json={"data": data}, timeout=60).json()["event_id"]
    stream = httpx.get(f"{call}/{event}", timeout=120).text
    assert "event: error" in stream and "event: complete" not in stream, stream[:500]
    assert expected in stream, stream[:500]
    assert_clean_message(stream.replace("/etc/passwd", ""))
    tally.record("settings", f"error from /{endpoint} is clean", crashed=not server.alive())


@pytest.mark.parametrize("variable", ["DDPM_PLAYGROUND_PRECISION", "DDPM_PLAYGROUND_RUNTIME"])
def test_a_mistyped_precision_or_runtime_stops_the_launch_with_a_plain_message(variable: str) -> None:
    env = {**os.environ, variable: "half", "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run(
        [sys.executable, "app.py", "--port", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert f"error: {variable}='half' is not one of auto" in done.stderr
    assert "Traceback" not in done.stderr
