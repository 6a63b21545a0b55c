"""A fix for a race in Gradio's image cache, installed by ``app.build_demo``.

Gradio (6.31) caches every output picture under a folder named after the hash of its encoded bytes and
rewrites that file in place each time (``gradio.processing_utils.save_pil_to_cache``). When two requests
return the same picture at once (a class opening the page together gets the same forward views; the same
seed gives the same digits), one request truncates the file while another's client is downloading it,
and that client gets a broken response ("Too little data for declared Content-Length"). Here the file is
written once, through a temporary file and a rename: a cached picture is always whole. Its name holds
the hash of its bytes, so a file already there is the same picture and is only touched (Gradio's
``delete_cache`` ages files by their time stamps).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gradio import processing_utils
from PIL import Image

from ddpm_core.files import write_file_atomically


def save_pil_to_cache(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's ``save_pil_to_cache`` with the same contract, writing each cached file once and atomically."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    path = (Path(cache_dir) / processing_utils.hash_bytes(data) / f"{name}.{format}").resolve()
    if path.exists():
        with contextlib.suppress(OSError):
            os.utime(path)
    else:
        write_file_atomically(path, lambda tmp: tmp.write_bytes(data), durable=False)  # a cache: no fsync
    return str(path)


def install() -> None:
    """Route Gradio's image caching through :func:`save_pil_to_cache` (idempotent)."""
    processing_utils.save_pil_to_cache = save_pil_to_cache
