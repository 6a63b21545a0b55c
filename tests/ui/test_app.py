"""app.py: the four tabs, the command line and the launch settings."""

from __future__ import annotations

from types import ModuleType

import gradio as gr
import pytest


def test_the_four_tabs_in_order(app_module: ModuleType) -> None:
    tabs = [block for block in app_module.demo.blocks.values() if isinstance(block, gr.Tab)]
    assert [tab.label for tab in tabs] == ["Forward noise", "Oracle reconstruction", "Train or load", "Sample"]


def test_command_line_honours_gradio_environment(app_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    args = app_module._parse_args([])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8080")
    args = app_module._parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    args = app_module._parse_args(["--host", "10.0.0.1", "--port", "9000", "--share"])
    assert (args.host, args.port, args.share) == ("10.0.0.1", 9000, True)


def test_launch_and_queue_settings(app_module: ModuleType) -> None:
    options = app_module.launch_options()
    assert options["max_file_size"] == "20mb" and options["show_error"] is True
    assert app_module.demo.analytics_enabled is False
    queue = app_module.demo._queue  # no public accessor; checked so a refactor cannot drop the limits silently
    assert queue.max_size == 64 and queue.default_concurrency_limit == 2
