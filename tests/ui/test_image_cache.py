"""Two requests returning the same picture at once never hand a client a half-written cached file."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from gradio import processing_utils
from PIL import Image

from ddpm_ui import image_cache


def short_reads(save, cache_dir: Path, seconds: float = 1.0) -> tuple[int, int]:
    """Save one picture over and over while another thread reads it back; (reads shorter than the file, reads)."""
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path = Path(save(picture, str(cache_dir), format="png"))
    full = path.stat().st_size
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            save(picture, str(cache_dir), format="png")

    thread = threading.Thread(target=writer)
    thread.start()
    short = reads = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            reads += 1
            short += len(path.read_bytes()) != full
    finally:
        stop.set()
        thread.join()
    return short, reads


def test_the_app_installs_the_atomic_cache(app_module) -> None:
    assert processing_utils.save_pil_to_cache is image_cache.save_pil_to_cache


def test_cached_pictures_are_always_whole(tmp_path: Path) -> None:
    short, reads = short_reads(image_cache.save_pil_to_cache, tmp_path)
    assert reads > 100 and short == 0
    (cached,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert cached.name == "image.png"  # one file, no temporary left behind
    with Image.open(cached) as img:
        assert img.size == (64, 64)
