"""Hostile inputs to the image handlers and the API (issue 13, parts 5 and 7).

* Image inputs are read only from Gradio's upload folder or the shipped assets: every other path (a server
  file, a missing one, a folder, a symlink or ``..`` leading out, a real image elsewhere) gets one and the
  same message, decided before anything is looked up on disk, so answers never tell what exists.
* Numbers are parsed by :func:`ddpm_ui.common.parse_int` / :func:`~ddpm_ui.common.parse_float`: NaN, ±inf,
  text, ``None``, huge and fractional values get a plain sentence naming the field and its range.
* :func:`ddpm_ui.common.friendly_errors` never shows Python's or torch's wording.
* Against a running ``python app.py`` with raw HTTP: the same refusals through ``/gradio_api/call``;
  malformed bodies, unknown endpoint names and unknown event ids get plain JSON (422/404), never pydantic's
  text or a 500; payloads Gradio itself rejects before a handler runs get a plain sentence too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
from gradio.data_classes import FileData
from gradio.exceptions import InvalidPathError

sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))  # the shared `python app.py` launcher

from appserver import ROOT, AppProcess, running_app

from ddpm_core.files import fresh_folder
from ddpm_ui import api_errors, common

EXAMPLE = ROOT / "assets" / "grace_hopper.jpg"
REFUSED = common.NOT_RECEIVED
INTERNALS = ("Traceback", "pydantic", "Input should", "json_invalid", '"loc"', "cannot convert", "could not convert")


# ---------------------------------------------------------------------------------------------
# In process: which files an image input may name
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private Gradio upload folder ($GRADIO_TEMP_DIR) holding a copy of the example, as an upload would."""
    folder = tmp_path / "gradio-uploads"
    (folder / "0123abcd").mkdir(parents=True)
    shutil.copy(EXAMPLE, folder / "0123abcd" / "photo.jpg")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    common.load_image_version.cache_clear()
    return folder


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A real, readable image outside every allowed folder."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "real.jpg")
    return folder / "real.jpg"


def refused_paths(uploads: Path, outside: Path) -> dict[str, str]:
    """Paths that must all be refused the same way, by what makes each one different."""
    link = uploads / "0123abcd" / "link.jpg"
    link.symlink_to(outside)
    (uploads / "a-folder").mkdir()
    return {
        "a server file": "/etc/passwd",
        "a missing file": "/no/such/place/photo.png",
        "a missing file in the upload folder": str(uploads / "0123abcd" / "gone.jpg"),
        "a folder": "/etc",
        "a folder in the upload folder": str(uploads / "a-folder"),
        "the upload folder itself": str(uploads),
        "a symlink in the upload folder leading out": str(link),
        "a path climbing out with ..": str(uploads / "0123abcd" / ".." / ".." / "elsewhere" / "real.jpg"),
        "a real image elsewhere": str(outside),
        "a relative path to a source file": "app.py",
        "a NUL byte": "/tmp/x\x00.png",
        "a sibling folder sharing the prefix": str(uploads) + "-evil/photo.jpg",
    }


def test_every_refused_path_gets_the_same_message(uploads: Path, outside: Path) -> None:
    (Path(str(uploads) + "-evil")).mkdir()
    shutil.copy(EXAMPLE, Path(str(uploads) + "-evil") / "photo.jpg")
    for why, path in refused_paths(uploads, outside).items():
        for payload in (path, {"path": path}, {"path": path, "meta": {"_type": "gradio.FileData"}}):
            with pytest.raises(common.InputError) as info:
                common.load_image(payload)
            assert str(info.value) == REFUSED, why


def test_handlers_show_only_that_message(uploads: Path, outside: Path) -> None:
    from ddpm_ui import forward_tab

    messages = set()
    for path in refused_paths(uploads, outside).values():
        with pytest.raises(gr.Error) as info:
            forward_tab.forward_view({"path": path}, 200, "linear", 1000, 0)
        messages.add(info.value.message)
    assert messages == {REFUSED}


def test_refused_paths_are_never_looked_up_on_disk(
    uploads: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder check comes first: no stat, no open of the named file (so no timing or error tells)."""
    paths = refused_paths(uploads, outside)
    outside_paths = [paths[k] for k in ("a server file", "a missing file", "a folder", "a real image elsewhere")]
    looked_up: list[str] = []
    real_stat = os.stat

    def spy_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        looked_up.append(os.fspath(path))
        return real_stat(path, *args, **kwargs)

    def no_decoding(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a refused path reached the decoder")

    monkeypatch.setattr(os, "stat", spy_stat)
    monkeypatch.setattr(common, "load_image_info", no_decoding)
    for path in outside_paths:
        with pytest.raises(common.InputError, match="not one the app received"):
            common.load_image(path)
    assert not [p for p in looked_up if p in outside_paths or p == os.path.realpath(str(outside))]


def test_uploads_and_the_shipped_example_still_load(uploads: Path) -> None:
    upload = uploads / "0123abcd" / "photo.jpg"
    inner_link = uploads / "0123abcd" / "same.jpg"
    inner_link.symlink_to(upload)  # a link that stays inside the upload folder is fine
    for payload in (
        str(EXAMPLE),
        {"path": str(EXAMPLE)},
        str(upload),
        upload,
        {"path": str(upload), "meta": {"_type": "gradio.FileData"}},
        FileData(path=str(upload)),
        str(inner_link),
    ):
        loaded, key = common.load_image(payload)
        assert loaded.tensor.shape == (3, 256, 218)
        assert key[0] in (os.path.realpath(EXAMPLE), os.path.realpath(upload))


def test_a_non_image_inside_the_upload_folder_keeps_its_own_message(uploads: Path) -> None:
    text = uploads / "0123abcd" / "holiday.png"
    text.write_text("definitely not pixels")
    with pytest.raises(common.ImageInputError, match="not an image we can read"):
        common.load_image(str(text))


@pytest.mark.parametrize("payload", [None, "", 5, 2.5, True, ["/etc/passwd"], {"path": 3}, {"url": "x"}, b"/etc"])
def test_payloads_that_name_no_file_ask_for_an_upload(payload: Any) -> None:
    with pytest.raises(common.InputError) as info:
        common.load_image(payload)
    assert str(info.value) == common.NO_IMAGE


# ---------------------------------------------------------------------------------------------
# In process: numbers
# ---------------------------------------------------------------------------------------------

BAD_NUMBERS = [None, "", "abc", "nan", "NaN", float("nan"), float("inf"), -float("inf"), "1e999", True, [3], {"n": 3}]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
def test_parse_int_refuses_what_is_not_a_number(value: Any) -> None:
    with pytest.raises(common.InputError) as info:
        common.parse_int(value, "The step t", 0, 999)
    assert str(info.value) == "The step t must be a number: a whole number between 0 and 999."


@pytest.mark.parametrize("value", [10**400, 1e308, -1, 1000, 2.5, "2.5", 999.000001], ids=repr)
def test_parse_int_refuses_huge_out_of_range_and_fractional_values(value: Any) -> None:
    with pytest.raises(common.InputError) as info:
        common.parse_int(value, "The step t", 0, 999, note=" when T = 1000")
    assert str(info.value) == "The step t must be a whole number between 0 and 999 when T = 1000."


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (999, 999), (7.0, 7), ("150", 150), (" 42 ", 42)])
def test_parse_int_accepts_whole_numbers_as_json_sends_them(value: Any, expected: int) -> None:
    assert common.parse_int(value, "The step t", 0, 999) == expected


@pytest.mark.parametrize("value", [*BAD_NUMBERS, 10**400, 1e308, -0.5, 10.5], ids=repr)
def test_parse_float_refuses_non_numbers_and_out_of_range(value: Any) -> None:
    with pytest.raises(common.InputError) as info:
        common.parse_float(value, "The guidance weight w", 0, 10)
    assert str(info.value) == "The guidance weight w must be a number between 0 and 10."


def test_parse_float_accepts_numbers_and_defaults_for_an_empty_box() -> None:
    assert common.parse_float("2.5", "w", 0, 10) == 2.5 and common.parse_float(10, "w", 0, 10) == 10.0
    assert common.parse_float(None, "w", 0, 10, default=1.5) == 1.5


def test_the_image_tab_parsers_and_helpers_are_built_on_them() -> None:
    assert common.parse_seed(None) == 0 and common.parse_seed("12") == 12
    for bad in (float("nan"), "abc", -1, 0.5, 2**31):
        with pytest.raises(common.InputError, match=r"The seed must be a .*between 0 and 2147483647"):
            common.parse_seed(bad)
    with pytest.raises(common.InputError, match=r"^T must be one of 1000, 150\.$"):
        common.parse_T(float("nan"))
    with pytest.raises(common.InputError, match="between 0 and 149 when T = 150"):
        common.parse_step(float("inf"), 150)
    # Helpers behind buttons and sliders never fail, whatever the box holds.
    assert common.next_seed(float("inf")) == 0 and common.next_seed("abc") == 0 and common.next_seed(41) == 42
    assert common.next_seed(common.MAX_SEED) == 0 and common.next_seed(None) == 0 and common.next_seed("") == 0
    assert common.step_slider_update(150, float("nan"), fallback=7)["value"] == 7
    assert common.step_slider_update(150, 1e308)["value"] == 149
    with pytest.raises(gr.Error, match="T must be one of"):
        common.retarget_step("lots", 10)


# ---------------------------------------------------------------------------------------------
# In process: which error messages a person sees
# ---------------------------------------------------------------------------------------------


def handlers_in_our_package() -> tuple[Callable[[str], Any], Callable[[str], Any]]:
    """Two handlers compiled as if they lived in ddpm_ui: one raises its own ValueError, one lets float() fail."""
    source = (
        "def own_check(text):\n"
        "    raise ValueError('Choose at least one digit class.')\n"
        "def converts(text):\n"
        "    return float(text)\n"
    )
    namespace: dict[str, Any] = {"__name__": "ddpm_ui.some_tab"}
    exec(compile(source, "ddpm_ui/some_tab.py", "exec"), namespace)
    return common.friendly_errors(namespace["own_check"]), common.friendly_errors(namespace["converts"])


def test_our_own_value_errors_are_shown_but_pythons_wording_is_not() -> None:
    own_check, converts = handlers_in_our_package()
    with pytest.raises(gr.Error) as info:
        own_check("x")
    assert info.value.message == "Choose at least one digit class."
    with pytest.raises(gr.Error) as info:
        converts("abc")
    assert info.value.message == common.INVALID_INPUT


@pytest.mark.parametrize(
    "failure",
    [
        lambda: int(float("nan")),  # cannot convert float NaN to integer
        lambda: float("abc"),  # could not convert string to float
        lambda: int(float("inf")),  # OverflowError
        lambda: __import__("torch").zeros(2).view(3),  # a torch RuntimeError
        lambda: __import__("torch").zeros(2) + None,  # TypeError
    ],
)
def test_python_and_torch_errors_are_hidden(failure: Callable[[], Any]) -> None:
    with pytest.raises(gr.Error) as info:
        common.friendly_errors(failure)()
    assert info.value.message in (common.INVALID_INPUT, common.UNEXPECTED)
    assert not any(word in info.value.message for word in ("convert", "float", "shape", "NaN", "torch"))


def test_errors_written_for_people_are_shown_as_they_are() -> None:
    from ddpm_core import pictures
    from ddpm_core.checkpoints import CheckpointError
    from ddpm_core.image_io import ImageInputError

    for err in (common.InputError("The seed is odd."), ImageInputError("Bad pixels."), CheckpointError("No.")):

        def fail(err: Exception = err) -> None:
            raise err

        with pytest.raises(gr.Error) as info:
            common.friendly_errors(fail)()
        assert info.value.message == str(err)
    # A core check's own `raise ValueError(...)` is meant for people too.
    with pytest.raises(gr.Error) as info:
        common.friendly_errors(pictures.labelled_strip)([], [])
    assert info.value.message == "need at least one image"
    assert common.readable_message(RuntimeError("CUDA out of memory at 0x7f")) is None


def test_gradio_error_payloads_keep_our_messages_and_hide_the_rest() -> None:
    ours = api_errors.plain_error_payload(common.user_error("The seed is odd."), show_error=True)
    assert ours["error"] == "The seed is odd." and ours["title"] == "Cannot show this"
    hidden = api_errors.plain_error_payload(RuntimeError("boom at /srv/app/x.py line 3"), show_error=True)
    assert hidden["error"] == api_errors.SERVER_ERROR
    assert api_errors.plain_error_payload(None, show_error=True)["error"] == api_errors.SERVER_ERROR  # not "None"
    assert api_errors.plain_error_payload(RuntimeError("boom"), show_error=False)["error"] is None
    refused_input = InvalidPathError(
        "Cannot move /etc/passwd to the gradio cache dir because it was not uploaded by a user."
    )
    assert api_errors.plain_message(refused_input) == api_errors.NOT_UPLOADED
    refused_output = InvalidPathError(
        "Cannot move /srv/x.png to the gradio cache dir because it was not created by ..."
    )
    assert api_errors.plain_message(refused_output) == api_errors.SERVER_ERROR


def test_request_folders_spare_every_folder_asked_for(tmp_path: Path) -> None:
    names = ("old", "kept-a", "kept-b", "holds-kept", "as-string")
    for name in names:
        (tmp_path / name).mkdir()
    (tmp_path / "holds-kept" / "model").mkdir()
    long_ago = time.time() - 7200
    for name in names:
        os.utime(tmp_path / name, (long_ago, long_ago))
    keep = {tmp_path / "kept-a", tmp_path / "kept-b", tmp_path / "holds-kept" / "model"}
    fresh_folder(tmp_path, 3600, keep=[*keep, str(tmp_path / "as-string")])
    assert not (tmp_path / "old").exists()
    assert all((tmp_path / name).exists() for name in names[1:])
    fresh_folder(tmp_path, 3600, keep=str(tmp_path / "as-string"))  # one folder, given as a string
    assert (tmp_path / "as-string").exists() and not (tmp_path / "kept-a").exists()
    fresh_folder(tmp_path, 3600, keep=None)
    assert not (tmp_path / "as-string").exists()


# ---------------------------------------------------------------------------------------------
# Against `python app.py`, with raw HTTP
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    with running_app(tmp_path_factory.mktemp("hostile-app")) as app:
        yield app


def call(server: AppProcess, name: str, data: list[Any] | str) -> tuple[str, Any, float]:
    """POST /gradio_api/call/<name>, then read its event stream: (last event, its data, seconds taken)."""
    url = f"{server.url}gradio_api/call/{name}"
    started = time.monotonic()
    if isinstance(data, str):  # a hand-written body (NaN is not valid JSON for httpx's encoder)
        posted = httpx.post(url, content=data, headers={"content-type": "application/json"}, timeout=60)
    else:
        posted = httpx.post(url, json={"data": data}, timeout=60)
    assert posted.status_code == 200, posted.text
    stream = httpx.get(f"{url}/{posted.json()['event_id']}", timeout=120).text
    took = time.monotonic() - started
    events = [line.removeprefix("event: ") for line in stream.splitlines() if line.startswith("event: ")]
    payloads = [line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")]
    assert events, stream
    last = [e for e in events if e != "heartbeat"][-1]
    return last, json.loads(payloads[events.index(last)]), took


def error_text(data: Any) -> str:
    """The message of an error event (Gradio sends a string, or a dict holding it)."""
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)
    return str(data)


def test_paths_the_app_did_not_receive_are_refused_the_same_way(server: AppProcess) -> None:
    uploads = server.home / "gradio-tmp"
    elsewhere = server.home / "elsewhere.jpg"
    shutil.copy(EXAMPLE, elsewhere)
    (uploads / "trap").mkdir(exist_ok=True)
    link = uploads / "trap" / "photo.jpg"
    if not link.is_symlink():
        link.symlink_to(elsewhere)
    paths = [
        "/etc/passwd",
        "/no/such/file.png",
        "/etc",
        str(elsewhere),  # a real image
        str(link),  # a link in the upload folder leading out
        str(uploads / "trap" / ".." / ".." / "elsewhere.jpg"),
        str(server.log),  # the server's own log
        "app.py",  # relative to the server's working directory
    ]
    for path in paths:
        event, data, took = call(server, "forward_view", [{"path": path}, 200, "linear", 1000, 0])
        assert event == "error", (path, event)
        assert error_text(data) == REFUSED, (path, data)
        assert "root:" not in json.dumps(data) and "Traceback" not in json.dumps(data)
        assert took <= 1.0, (path, took)
    for name, data in (
        ("oracle_view", [{"path": "/etc/passwd"}, 200, "linear", 1000, 0]),
        ("error_curve", [{"path": "/etc/passwd"}, 200, "linear", 1000, 0]),
        ("oracle_chain", [{"path": "/etc/passwd"}, "linear", 150, 0]),
    ):
        event, answer, _ = call(server, name, data)
        assert (event, error_text(answer)) == ("error", REFUSED), name


def test_uploads_and_the_shipped_example_are_served(server: AppProcess) -> None:
    upload = httpx.post(
        f"{server.url}gradio_api/upload",
        files={"files": ("photo.jpg", EXAMPLE.read_bytes(), "image/jpeg")},
        timeout=60,
    )
    assert upload.status_code == 200
    uploaded = upload.json()[0]
    for path in (uploaded, str(EXAMPLE)):
        payload = {"path": path, "meta": {"_type": "gradio.FileData"}} if path == uploaded else {"path": path}
        event, data, _ = call(server, "forward_view", [payload, 200, "linear", 1000, 0])
        assert event == "complete", (path, data)
        assert "t = 200" in data[-1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"data": [{"path": "EXAMPLE"}, NaN, "linear", 1000, 0]}', "The step t must be a number"),
        ('{"data": [{"path": "EXAMPLE"}, Infinity, "linear", 1000, 0]}', "The step t must be a number"),
        ('{"data": [{"path": "EXAMPLE"}, 1e308, "linear", 1000, 0]}', "between 0 and 999 when T = 1000"),
        ('{"data": [{"path": "EXAMPLE"}, "abc", "linear", 1000, 0]}', "The step t must be a number"),
        ('{"data": [{"path": "EXAMPLE"}, 200, "linear", 1000, "abc"]}', "The seed must be a number"),
        ('{"data": [{"path": "EXAMPLE"}, 200, "linear", 1000, NaN]}', "The seed must be a number"),
        ('{"data": [{"path": "EXAMPLE"}, 200, "linear", NaN, 0]}', "T must be one of 1000, 150."),
        ('{"data": [{"path": "EXAMPLE"}, 200, ["linear"], 1000, 0]}', "The schedule must be one of"),
    ],
)
def test_bad_numbers_over_the_api_get_plain_messages(server: AppProcess, body: str, message: str) -> None:
    event, data, took = call(server, "forward_view", body.replace("EXAMPLE", str(EXAMPLE)))
    text = error_text(data)
    assert event == "error" and message in text, data
    assert not any(word in text for word in INTERNALS), text
    assert took <= 1.0


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("gradio_api/call/forward_view", b"{not json", 422),
        ("gradio_api/call/forward_view", b'{"data": 5}', 422),
        ("gradio_api/call/forward_view", b"{}", 422),
        ("gradio_api/call/forward_view", b"[]", 422),
        ("gradio_api/queue/join", b"[[[", 422),
        ("gradio_api/queue/join", b'{"data": 5, "fn_index": 0, "session_hash": "x"}', 422),
        ("gradio_api/call/no_such_endpoint", b'{"data": []}', 404),
        ("gradio_api/run/no_such_endpoint", b'{"data": []}', 404),
        ("gradio_api/queue/join", b'{"data": [], "fn_index": 99999, "session_hash": "abc"}', 404),
    ],
)
def test_malformed_requests_get_plain_json(server: AppProcess, path: str, body: bytes, status: int) -> None:
    started = time.monotonic()
    response = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"}, timeout=60)
    took = time.monotonic() - started
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.endswith(".")
    assert not any(word in response.text for word in INTERNALS), response.text
    assert "no_such_endpoint" not in detail and "99999" not in detail  # nothing echoed back
    assert took <= 1.0


def endpoint_whose_first_input_is(server: AppProcess, *components: str) -> tuple[str, int]:
    """(name, number of inputs) of an endpoint whose first input is one of ``components``."""
    named = httpx.get(f"{server.url}gradio_api/info", timeout=60).json()["named_endpoints"]
    for name, endpoint in named.items():
        parameters = endpoint["parameters"]
        if parameters and parameters[0]["component"] in components:
            return name.strip("/"), len(parameters)
    pytest.skip(f"no endpoint takes a {' or '.join(components)} first")


def test_payloads_gradio_rejects_before_a_handler_runs_get_plain_sentences(server: AppProcess) -> None:
    cases = [
        ("forward_view", [{"path": 5}, 200, "linear", 1000, 0], api_errors.BAD_INPUT_FORM),
        ("forward_view", ["abc", 200, "linear", 1000, 0], api_errors.BAD_INPUT_FORM),
        ("forward_view", [{"path": str(EXAMPLE), "size": "big"}, 200, "linear", 1000, 0], api_errors.BAD_INPUT_FORM),
        (
            "forward_view",
            [1],
            "An event handler (forward_view) didn't receive enough input values (needed: 5, got: 1).",
        ),
        (
            "forward_view",
            [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, 200, "linear", 1000, 0],
            api_errors.NOT_UPLOADED,
        ),
    ]
    for name, data, message in cases:
        event, answer, took = call(server, name, data)
        assert (event, error_text(answer)) == ("error", message), data
        assert took <= 1.0
    name, count = endpoint_whose_first_input_is(server, "Slider", "Number")
    event, answer, _ = call(server, name, ["abc"] * count)
    assert event == "error" and re.match(r"Input 1 \(a (slider|number)\) is not in the form", error_text(answer))
    name, count = endpoint_whose_first_input_is(server, "Checkboxgroup")
    event, answer, _ = call(server, name, ["x"] * count)
    assert event == "error" and error_text(answer).startswith("'x' is not one of the choices offered: [")
    assert "<class" not in error_text(answer)


def test_an_unknown_event_stream_is_a_plain_404(server: AppProcess) -> None:
    started = time.monotonic()
    response = httpx.get(f"{server.url}gradio_api/call/forward_view/no-such-event", timeout=60)
    assert time.monotonic() - started <= 1.0
    assert response.status_code == 404 and response.json() == {"detail": api_errors.UNKNOWN_EVENT}


def test_the_server_still_answers_afterwards(server: AppProcess) -> None:
    assert server.answers()
    event, data, _ = call(server, "forward_view", [{"path": str(EXAMPLE)}, 10, "cosine", 150, 1])
    assert event == "complete" and "t = 10" in data[-1]
