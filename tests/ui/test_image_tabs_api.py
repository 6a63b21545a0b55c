"""Tabs 1 and 2 through the running server, as any API client sees them (uploads, queue, files, errors)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from ddpm_ui import common

TAB12_ENDPOINTS = {"/forward_view", "/oracle_view", "/error_curve", "/oracle_chain"}


def image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()  # a complete, decodable file
        return image.size


def test_api_lists_the_tab_endpoints_and_hides_helpers(gradio_client) -> None:
    named = set(gradio_client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert named >= TAB12_ENDPOINTS
    assert not any("retarget" in name or "seed" in name for name in named)


def test_the_page_only_handlers_stay_out_of_the_api(gradio_client) -> None:
    """The page draws through *_for_page handlers (pictures with alt text); API clients keep plain pictures."""
    api = gradio_client.view_api(return_format="dict", print_info=False)
    named = set(api["named_endpoints"]) | set(api["unnamed_endpoints"])
    assert not any("for_page" in str(name) or "load_example" in str(name) for name in named)
    outputs = {name: len(api["named_endpoints"][name]["returns"]) for name in TAB12_ENDPOINTS}
    assert outputs == {"/forward_view": 6, "/oracle_view": 2, "/error_curve": 1, "/oracle_chain": 2}
    assert len(api["named_endpoints"]["/model_loss_curve"]["returns"]) == 2  # the plot and its caption in words


def test_forward_view_over_the_api(gradio_client, example: str) -> None:
    result = gradio_client.predict(handle_file(example), 250, "linear", 1000, 3, api_name="/forward_view")
    mean, samples, noise, single, plot, info = result
    assert image_size(mean) == (218, 256) and image_size(noise) == (218, 256)
    assert image_size(samples)[0] > 3 * 218 and image_size(single)[0] > 3 * 218
    assert image_size(plot)[0] >= 400
    assert "t = 250" in info and "seed 3" in info
    again = gradio_client.predict(handle_file(example), 250, "linear", 1000, 3, api_name="/forward_view")
    assert Path(again[1]).read_bytes() == Path(samples).read_bytes()  # same seed, same noise


def test_oracle_view_over_the_api(gradio_client, example: str) -> None:
    panels, table = gradio_client.predict(handle_file(example), 999, "cosine", 1000, 0, api_name="/oracle_view")
    assert image_size(panels)[0] > 4 * 218
    row = next(line for line in table.splitlines() if line.startswith(r"| oracle $\hat x_0$"))
    assert float(row.rstrip(" |").split("|")[-1]) < 1e-5


def test_error_curve_over_the_api(gradio_client, example: str) -> None:
    plot = gradio_client.predict(handle_file(example), 100, "linear", 150, 0, api_name="/error_curve")
    width, height = image_size(plot)
    assert width >= 400 and height >= 300


def test_oracle_chain_over_the_api(gradio_client, example: str) -> None:
    strip, summary = gradio_client.predict(handle_file(example), "linear", 150, 5, api_name="/oracle_chain")
    assert image_size(strip)[0] > 6 * 109  # six snapshots of the 109 × 128 copy
    error = float(re.search(r"max \|·\| = \*\*([0-9.e+-]+)\*\*", summary).group(1))
    assert error < 1e-5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        ("TRUNCATED", "damaged or truncated"),
        (b"plain words, no pixels", "not an image we can read"),
    ],
)
def test_bad_uploads_get_a_readable_error_and_the_server_stays_up(
    gradio_client, example: str, tmp_path: Path, content: bytes | str, message: str
) -> None:
    bad = tmp_path / "upload.jpg"
    bad.write_bytes(Path(example).read_bytes()[:6000] if content == "TRUNCATED" else content)
    with pytest.raises(AppError, match=message) as info:
        gradio_client.predict(handle_file(str(bad)), 10, "linear", 1000, 0, api_name="/forward_view")
    assert "Traceback" not in str(info.value)
    # The server still answers.
    _, table = gradio_client.predict(handle_file(example), 10, "linear", 1000, 0, api_name="/oracle_view")
    assert "t = 10" in table


def test_bad_settings_over_the_api(gradio_client, example: str) -> None:
    with pytest.raises(AppError, match="between 0 and 149"):
        gradio_client.predict(handle_file(example), 500, "linear", 150, 0, api_name="/oracle_view")
    with pytest.raises(AppError, match="T must be one of"):
        gradio_client.predict(handle_file(example), 5, "linear", 77, 0, api_name="/error_curve")


def test_uploads_over_the_size_limit_are_refused(gradio_client, app_server: str, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as handle:
        handle.truncate(21 * 1024 * 1024)
    # The client already refuses, from the limit the server announces ...
    with pytest.raises(ValueError, match="maximum file size"):
        gradio_client.predict(handle_file(str(big)), 10, "linear", 1000, 0, api_name="/forward_view")
    # ... and the server's upload route refuses too, whoever calls it.
    upload = app_server + "gradio_api/upload"
    response = httpx.post(upload, files={"files": ("big.png", big.read_bytes(), "image/png")}, timeout=60)
    assert response.status_code == 413
    small = httpx.post(upload, files={"files": ("small.png", b"\0" * 100, "image/png")}, timeout=60)
    assert small.status_code == 200


def test_server_files_cannot_be_named_as_uploads(app_server: str) -> None:
    """The image handlers read the upload themselves (preprocess=False); Gradio must still refuse paths
    that were not uploaded, such as the app's own files."""
    call = app_server + "gradio_api/call/forward_view"
    for path in ("/etc/hostname", str(common.DEFAULT_IMAGE)):
        payload = {"path": path, "meta": {"_type": "gradio.FileData"}}
        event = httpx.post(call, json={"data": [payload, 10, "linear", 1000, 0]}, timeout=60).json()["event_id"]
        stream = httpx.get(f"{call}/{event}", timeout=60).text
        assert "event: error" in stream and "not uploaded by a user" in stream
        assert "event: complete" not in stream
