"""Helpers the UI tests share (fixtures are in this folder's conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace

import gradio as gr
import pytest

# The example photo is 512 × 600; shrunk to a longest side of 256 it is 218 × 256 (W × H).
EXAMPLE_HW = (256, 218)


def numbers_after(text: str, label: str) -> float:
    """The first number after ``label`` in ``text``."""
    match = re.search(re.escape(label) + r"[^0-9]*([0-9.]+(?:e[-+]?[0-9]+)?)", text)
    assert match, f"{label!r} not found in {text!r}"
    return float(match.group(1))


def error_text(excinfo: pytest.ExceptionInfo) -> str:
    """The message a person would read, from a gr.Error or any other exception."""
    return str(excinfo.value.message if isinstance(excinfo.value, gr.Error) else excinfo.value)


def last(generator: Iterator) -> tuple:
    """The final output of a streaming handler."""
    outputs = list(generator)
    assert outputs, "the handler yielded nothing"
    return outputs[-1]


def page(name: str) -> SimpleNamespace:
    """A stand-in for the ``gr.Request`` of one browser page (session): handlers only read its session hash."""
    return SimpleNamespace(session_hash=name)
