"""Plot, strip, grid and file helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddpm_core import pictures

RED = np.array(pictures.MARKER_COLOR, dtype=np.uint8)


def red_columns(image: np.ndarray, row: int) -> list[int]:
    return [int(c) for c in np.flatnonzero((image[row] == RED).all(axis=1))]


def test_render_curves_and_marker_position() -> None:
    x = np.arange(101)
    canvas = pictures.render_curves(
        x,
        [
            pictures.CurvePanel("rising", "y", {"y": x / 100.0}),
            pictures.CurvePanel("log", "z", {"a": 10.0 ** (-x / 10), "b": np.ones(101)}, log_y=True, note="n"),
        ],
        title="test",
    )
    assert canvas.image.dtype == np.uint8 and canvas.image.ndim == 3 and canvas.image.shape[2] == 3
    assert len(canvas.axes) == 2
    # The marker at x = 50 sits halfway between the columns of x = 0 and x = 100.
    assert canvas.column(50) == pytest.approx((canvas.column(0) + canvas.column(100)) / 2)
    marked = canvas.with_marker(50, [[0.5], [10.0**-5]], label="t = 50")
    assert not np.array_equal(marked, canvas.image)
    middle_row = (canvas.axes[0].top + canvas.axes[0].bottom) // 2
    cols = red_columns(marked, middle_row)
    assert cols and abs(np.mean(cols) - canvas.column(50)) <= 1.5
    # The dot for y = 0.5 on the linear panel is on the row the axes map gives.
    dot_row = round(canvas.axes[0].row(0.5))
    assert len(red_columns(marked, dot_row)) > len(red_columns(marked, middle_row + 30))
    # The canvas itself is untouched, so it can be reused for the next marker.
    assert red_columns(canvas.image, middle_row) == []


def test_marker_at_the_right_edge_stays_visible() -> None:
    x = np.arange(10)
    canvas = pictures.render_curves(x, [pictures.CurvePanel("p", "y", {"y": x * 1.0})])
    marked = canvas.with_marker(9)
    row = (canvas.axes[0].top + canvas.axes[0].bottom) // 2
    assert red_columns(marked, row)


def test_labelled_strip_places_images_and_captions() -> None:
    a = np.zeros((20, 30, 3), dtype=np.uint8)
    b = np.full((10, 10), 200, dtype=np.uint8)
    strip = pictures.labelled_strip([a, b], ["first\nsecond line", "x̂₀ μ̃ₜ₋₁"], scale=2, pad=4)
    assert strip.dtype == np.uint8 and strip.shape[2] == 3
    assert strip.shape[0] > 40 and strip.shape[1] >= 60 + 20 + 3 * 4
    assert (strip == 0).all(axis=2).sum() >= 40 * 60  # the black tile, upscaled, is there
    with pytest.raises(ValueError):
        pictures.labelled_strip([a], ["one", "two"])


def test_image_grid_layout_padding_and_scale() -> None:
    images = np.stack([np.full((2, 3), i * 10 + 1, dtype=np.uint8) for i in range(5)])
    grid = pictures.image_grid(images, nrow=2, pad=1, pad_value=0)
    assert grid.shape == (3 * (2 + 1) + 1, 2 * (3 + 1) + 1)
    assert grid[1, 1] == 1 and grid[1, 5] == 11 and grid[4, 1] == 21 and grid[7, 1] == 41
    assert grid[0, 0] == 0 and grid[7, 5] == 0  # padding and the empty sixth cell
    big = pictures.image_grid(images, nrow=2, pad=1, scale=3)
    assert big.shape == (grid.shape[0] * 3, grid.shape[1] * 3)
    assert np.array_equal(big[::3, ::3], grid)
    colour = pictures.image_grid(np.zeros((3, 4, 4, 3), dtype=np.uint8), nrow=5, pad=0)
    assert colour.shape == (4, 12, 3)
    with pytest.raises(ValueError):
        pictures.image_grid(images.astype(np.float32), nrow=2)


def test_save_png_round_trip(tmp_path: Path) -> None:
    array = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    path = pictures.save_png(array, tmp_path / "nested" / "a.png")
    assert np.array_equal(np.asarray(Image.open(path)), array)
    gray = pictures.save_png(np.zeros((3, 5, 1), dtype=np.uint8), tmp_path / "g.png")
    assert Image.open(gray).size == (5, 3)


def test_save_gif_loops_with_the_frame_rate(tmp_path: Path) -> None:
    frames = [np.full((8, 8), v, dtype=np.uint8) for v in (0, 120, 240)]
    path = pictures.save_gif(frames, tmp_path / "out" / "a.gif", fps=5, hold_last=1.0)
    gif = Image.open(path)
    assert gif.n_frames == 3 and gif.info.get("loop") == 0
    durations = []
    for i in range(gif.n_frames):
        gif.seek(i)
        durations.append(gif.info["duration"])
    assert durations == [200, 200, 1200]
    gif.seek(1)
    assert abs(int(np.asarray(gif.convert("L"))[4, 4]) - 120) <= 2
    with pytest.raises(ValueError):
        pictures.save_gif([], tmp_path / "b.gif")


def caption_ink(caption: str, pad: int = 6) -> np.ndarray:
    """Where a one-digit captioned grid (black tile, black text on white) has ink below its 28-pixel tile."""
    sheet = pictures.captioned_grid(np.zeros((1, 28, 28), np.uint8), [caption], [(0, 0, 0)], ncol=1, scale=1, pad=pad)
    return (sheet[pad + 28 :] < 128).all(axis=2)


def test_captions_draw_check_and_cross_marks() -> None:
    """The verdict marks ✓ (U+2713) and ✗ (U+2717) are real glyphs in the picture font, not its missing-glyph box."""
    check, cross, missing = caption_ink("✓"), caption_ink("✗"), caption_ink("\U000f0000")  # private use: no glyph
    assert check.any() and cross.any()
    assert not np.array_equal(check, cross)  # a font without them draws the same box for both
    assert not np.array_equal(check, missing) and not np.array_equal(cross, missing)


def test_captioned_cells_are_as_wide_as_their_captions() -> None:
    caption = "✗ read as 5 · 100%"
    ink = caption_ink(caption)
    text_width = pictures._font(12).getlength(caption)
    assert ink.shape[1] >= text_width + 2 * 6  # the cell grew past the 28-pixel tile to hold the caption
    columns = np.flatnonzero(ink.any(axis=0))
    assert columns[0] >= 6 and columns[-1] < ink.shape[1] - 6  # nothing cut off at either edge
    assert columns[-1] - columns[0] >= 0.8 * text_width
