"""Pictures from arrays: line plots, labelled strips, image grids, PNG and GIF files.

Nothing here knows about diffusion; callers pass plain numbers and uint8 images. Plots are drawn on
matplotlib's Agg canvas through the object-oriented API (no pyplot, so no global figure registry and
no backend switch for the rest of the process) and come back as RGB uint8 arrays [H, W, 3].

Plots that change only by a marker (the current step on a slider) are rendered once with
:func:`render_curves`; :meth:`CurveCanvas.with_marker` then draws the marker with numpy in well under
a millisecond, so a slider can move it live.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]

MARKER_COLOR: RGB = (214, 39, 40)
_LINE_STYLES = ("-", "--", "-.", ":")
_RENDER_LOCK = threading.Lock()  # matplotlib is not guaranteed thread-safe; Gradio calls us from threads


# ----------------------------------------------------------------------------------------------
# Line plots
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurvePanel:
    """One axes of a stacked plot: named series sharing the x values, optional log y axis and y limits."""

    title: str
    ylabel: str
    series: Mapping[str, np.ndarray]
    log_y: bool = False
    ylim: tuple[float, float] | None = None
    note: str | None = None  # small grey text in the lower-left corner


@dataclass(frozen=True)
class _AxesMap:
    """Pixel geometry of one rendered axes: col = ax·x + bx, row = ay·g(y) + by with g = log10 for log axes."""

    ax: float
    bx: float
    ay: float
    by: float
    top: int
    bottom: int
    left: int
    right: int
    log_y: bool

    def row(self, y: float) -> float | None:
        """Image row of the data value ``y``, or None when it cannot be shown."""
        if not math.isfinite(y) or (self.log_y and y <= 0):
            return None
        return self.ay * (math.log10(y) if self.log_y else y) + self.by


@dataclass(frozen=True)
class CurveCanvas:
    """A rendered stacked plot (RGB uint8 [H, W, 3]) that remembers where its axes lie in pixels."""

    image: np.ndarray
    axes: tuple[_AxesMap, ...] = field(repr=False)

    def column(self, x: float) -> float:
        """Image column of the data value ``x`` (all panels share the x axis)."""
        first = self.axes[0]
        return first.ax * x + first.bx

    def with_marker(
        self,
        x: float,
        points: Sequence[Sequence[float]] | None = None,
        label: str | None = None,
        color: RGB = MARKER_COLOR,
        width: int = 2,
        radius: int = 4,
    ) -> np.ndarray:
        """A copy with a vertical line at ``x`` through every panel, dots at ``points[i]`` (y values of panel i)
        and an optional ``label`` next to the line in the first panel."""
        out = self.image.copy()
        col = round(self.column(x))
        for geo in self.axes:
            lo = min(max(geo.left, col - width // 2), geo.right + 1 - width)
            out[geo.top : geo.bottom + 1, lo : lo + width] = color
        if points is not None:
            offsets = np.arange(-radius, radius + 1)
            disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
            for geo, ys in zip(self.axes, points, strict=False):
                for y in ys:
                    row = geo.row(float(y))
                    if row is None or not geo.top <= row <= geo.bottom:
                        continue
                    _stamp(out, disc, round(row), col, color)
        if label:
            image = Image.fromarray(out)
            draw = ImageDraw.Draw(image)
            font = _font(13)
            first = self.axes[0]
            text_width = draw.textlength(label, font=font)
            left = col + 6 if col + 6 + text_width < first.right else col - 6 - text_width
            draw.text((left, first.top + 4), label, font=font, fill=color)
            out = np.asarray(image).copy()
        return out


def _stamp(out: np.ndarray, mask: np.ndarray, row: int, col: int, color: RGB) -> None:
    """Paint ``color`` where the odd-sized boolean ``mask`` is true, centred at (row, col), clipped to ``out``."""
    r, c = mask.shape[0] // 2, mask.shape[1] // 2
    top, left = max(0, row - r), max(0, col - c)
    bottom, right = min(out.shape[0], row + r + 1), min(out.shape[1], col + c + 1)
    if top >= bottom or left >= right:
        return
    window = mask[top - (row - r) : bottom - (row - r), left - (col - c) : right - (col - c)]
    out[top:bottom, left:right][window] = color


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib figure on an Agg canvas and return RGB uint8 [H, W, 3]."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def render_curves(
    x: np.ndarray,
    panels: Sequence[CurvePanel],
    title: str | None = None,
    xlabel: str = "t",
    size: tuple[float, float] = (6.4, 4.2),
    dpi: int = 100,
) -> CurveCanvas:
    """Plot each panel's series against ``x`` in vertically stacked axes sharing x; see :class:`CurveCanvas`."""
    if not panels:
        raise ValueError("need at least one panel")
    x = np.asarray(x, dtype=np.float64)
    with _RENDER_LOCK:
        fig = Figure(figsize=size, dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, panel in zip(axes, panels, strict=True):
            for i, (name, values) in enumerate(panel.series.items()):
                style = _LINE_STYLES[i % len(_LINE_STYLES)]  # dashes keep overlapping curves visible
                ax.plot(x, np.asarray(values, dtype=np.float64), label=name, linewidth=1.6, linestyle=style)
            if panel.log_y:
                ax.set_yscale("log")
            if panel.ylim is not None:
                ax.set_ylim(*panel.ylim)
            ax.set_title(panel.title, fontsize=10, loc="left")
            ax.set_ylabel(panel.ylabel)
            ax.grid(True, alpha=0.3)
            if len(panel.series) > 1:
                ax.legend(fontsize=8, loc="best")
            if panel.note:
                ax.text(0.01, 0.03, panel.note, transform=ax.transAxes, fontsize=7, color="0.35")
        axes[-1].set_xlabel(xlabel)
        axes[-1].set_xlim(float(x.min()), float(x.max()))
        if title:
            fig.suptitle(title, fontsize=11)
        image = figure_to_array(fig)
        geometry = tuple(_axes_map(ax, image.shape[0]) for ax in axes)
    return CurveCanvas(image, geometry)


def _axes_map(ax, height: int) -> _AxesMap:
    """Linear maps from data to image pixels for a drawn axes (display y runs upwards, rows downwards)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    log_y = ax.get_yscale() == "log"
    (c0, r0), (c1, r1) = ax.transData.transform([(x0, y0), (x1, y1)])
    g0, g1 = (math.log10(y0), math.log10(y1)) if log_y else (y0, y1)
    ax_scale = (c1 - c0) / (x1 - x0)
    ay_scale = -(r1 - r0) / (g1 - g0)
    box = ax.get_window_extent()
    return _AxesMap(
        ax=ax_scale,
        bx=c0 - ax_scale * x0,
        ay=ay_scale,
        by=(height - r0) - ay_scale * g0,
        top=max(0, math.ceil(height - box.y1)),
        bottom=min(height - 1, math.floor(height - box.y0)),
        left=max(0, math.ceil(box.x0)),
        right=math.floor(box.x1),
        log_y=log_y,
    )


# ----------------------------------------------------------------------------------------------
# Labelled strips and grids
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans from matplotlib (it has Greek letters and combining accents), else PIL's default."""
    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except OSError:
        return ImageFont.load_default(size)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] → [H, W, 3] (alpha dropped)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected [H, W] or [H, W, C] with C in 1, 3, 4; got {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[..., :3]


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor along H and W (other axes untouched)."""
    if scale < 1:
        raise ValueError("scale must be at least 1")
    if scale == 1:
        return image
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def labelled_strip(
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    scale: int = 1,
    pad: int = 8,
    font_size: int = 14,
    background: int = 255,
    text_color: RGB = (20, 20, 20),
) -> np.ndarray:
    """Images side by side, each with its (possibly multi-line) caption above it; RGB uint8 [H, W, 3]."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not images:
        raise ValueError("need at least one image")
    tiles = [upscale(_as_rgb(im), scale) for im in images]
    font = _font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = font_size + 4
    caption_height = max(label.count("\n") + 1 for label in labels) * line_height + 4
    widths = [
        max(tile.shape[1], math.ceil(max(measure.textlength(ln, font=font) for ln in lab.split("\n"))))
        for tile, lab in zip(tiles, labels, strict=True)
    ]
    height = caption_height + max(tile.shape[0] for tile in tiles) + 2 * pad
    total_width = sum(widths) + pad * (len(tiles) + 1)
    canvas = Image.new("RGB", (total_width, height), (background,) * 3)
    draw = ImageDraw.Draw(canvas)
    left = pad
    for tile, label, width in zip(tiles, labels, widths, strict=True):
        for i, line in enumerate(label.split("\n")):
            draw.text((left, pad + i * line_height), line, font=font, fill=text_color)
        canvas.paste(Image.fromarray(tile), (left + (width - tile.shape[1]) // 2, pad + caption_height))
        left += width + pad
    return np.asarray(canvas).copy()


def image_grid(
    images: np.ndarray | Sequence[np.ndarray], nrow: int, scale: int = 1, pad: int = 1, pad_value: int = 0
) -> np.ndarray:
    """Tile uint8 images [N, H, W] or [N, H, W, C] into a grid with ``nrow`` images per row (torchvision's
    meaning of nrow), ``pad`` pixels between and around them, then enlarge by ``scale`` (nearest neighbour).

    Returns [H', W'] for [N, H, W] input and [H', W', C] for [N, H, W, C].
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"expected a non-empty [N, H, W] or [N, H, W, C] array, got shape {images.shape}")
    if nrow < 1 or pad < 0:
        raise ValueError("nrow must be at least 1 and pad at least 0")
    n, h, w = images.shape[:3]
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *images.shape[3:]), pad_value, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = image
    return upscale(grid, scale)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 [H, W] or [H, W, C] array as a PNG, creating the folder; returns the path."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 10.0, hold_last: float = 0.0) -> Path:
    """Write uint8 frames (all [H, W] or all [H, W, 3]) as a GIF that loops forever; ``hold_last`` adds seconds
    to the last frame. Creates the folder; returns the path."""
    if not frames:
        raise ValueError("need at least one frame")
    if fps <= 0:
        raise ValueError("fps must be positive")
    stack = np.stack([np.asarray(f) for f in frames])
    if stack.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {stack.dtype}")
    if stack.ndim == 4 and stack.shape[3] == 1:
        stack = stack[..., 0]
    frame_ms = 1000.0 / fps
    durations = [frame_ms] * len(stack)
    durations[-1] += 1000.0 * hold_last
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, stack, extension=".gif", plugin="pillow", duration=durations, loop=0)
    return path


# ----------------------------------------------------------------------------------------------
# Digit sheets and animations
# ----------------------------------------------------------------------------------------------


def captioned_grid(
    images: np.ndarray,
    captions: Sequence[str],
    colors: Sequence[RGB],
    ncol: int,
    scale: int = 3,
    pad: int = 6,
    font_size: int = 12,
) -> np.ndarray:
    """Grey uint8 images [N, H, W] in rows of ``ncol``, each with a coloured caption underneath; RGB [H', W', 3].

    Cells are as wide as the widest caption. The font is DejaVu Sans (see :func:`_font`), which has the check
    and cross marks ✓ ✗ (U+2713, U+2717) that a caption can carry so that its meaning is not in the colour alone.
    """
    images = np.asarray(images)
    if images.ndim != 3 or len(images) == 0 or len(captions) != len(images) or len(colors) != len(images):
        raise ValueError("need N images [N, H, W] with N captions and N colours")
    n, h, w = images.shape
    font = _font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_widths = [measure.textlength(caption, font=font) for caption in captions]
    cell_w = max(w * scale, math.ceil(max(text_widths)) + 4)
    cell_h = h * scale + font_size + 6
    cols = min(ncol, n)
    rows = math.ceil(n / cols)
    canvas = Image.new("RGB", (cols * (cell_w + pad) + pad, rows * (cell_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (image, caption, color, text_w) in enumerate(zip(images, captions, colors, text_widths, strict=True)):
        r, c = divmod(i, cols)
        left, top = pad + c * (cell_w + pad), pad + r * (cell_h + pad)
        tile = Image.fromarray(upscale(image, scale)).convert("RGB")
        canvas.paste(tile, (left + (cell_w - w * scale) // 2, top))
        draw.text((left + (cell_w - text_w) / 2, top + h * scale + 2), caption, font=font, fill=color)
    return np.asarray(canvas).copy()


def column_titles(
    grid: np.ndarray,
    titles: Sequence[str],
    cell_width: int,
    pad: int = 1,
    font_size: int = 12,
    background: int = 255,
    ink: int = 20,
) -> np.ndarray:
    """``grid`` (an :func:`image_grid` of ``len(titles)`` columns, cells ``cell_width`` px wide between ``pad`` px
    gaps) under a band naming each column; grey [H, W] stays grey, RGB stays RGB.

    The font shrinks (down to 8 px) until the longest title fits its cell, so "Ankle boot" sits over a 28-px
    item drawn at 2×; a title that still does not fit is cut with "…".
    """
    grid = np.asarray(grid)
    if grid.dtype != np.uint8 or grid.ndim not in (2, 3) or not titles:
        raise ValueError("need a uint8 grid [H, W] or [H, W, 3] and at least one title")
    if len(titles) * (cell_width + pad) + pad > grid.shape[1]:
        raise ValueError(f"{len(titles)} columns of {cell_width} px do not fit a grid {grid.shape[1]} px wide")
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    size = font_size
    while size > 8 and max(measure.textlength(t, font=_font(size)) for t in titles) > cell_width:
        size -= 1
    font = _font(size)

    def fitted(title: str) -> str:
        while len(title) > 1 and measure.textlength(title, font=font) > cell_width:
            title = title[:-2] + "…"
        return title

    band = Image.new("L", (grid.shape[1], size + 6), background)
    draw = ImageDraw.Draw(band)
    for c, title in enumerate(titles):
        text = fitted(title)
        left = pad + c * (cell_width + pad) + (cell_width - measure.textlength(text, font=font)) / 2
        draw.text((left, 2), text, font=font, fill=ink)
    header = np.asarray(band)
    if grid.ndim == 3:
        header = np.repeat(header[..., None], grid.shape[2], axis=2)
    return np.concatenate([header, grid], axis=0)


def denoising_frames(
    xs: Sequence[np.ndarray],
    pred_x0s: Sequence[np.ndarray],
    ncol: int,
    scale: int = 3,
    gap: int = 12,
    titles: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """Two-track animation frames: the grid of x_t on the left, the grid of predicted x̂_0 on the right.

    ``xs[k]`` and ``pred_x0s[k]`` are uint8 [N, H, W] for recorded step k; each frame is [H', W'] uint8.
    ``titles`` (one per column, e.g. the class names) are written above both grids' columns.
    """
    if len(xs) != len(pred_x0s) or not xs:
        raise ValueError("need the same, non-zero number of x_t and x̂_0 snapshots")
    frames = []
    for k, (x, x0) in enumerate(zip(xs, pred_x0s, strict=True)):
        left = image_grid(x, nrow=ncol, scale=scale, pad=1)
        right = image_grid(x0, nrow=ncol, scale=scale, pad=1)
        if titles is not None:
            cell = x.shape[-1] * scale
            left, right = (column_titles(g, titles, cell, pad=scale, background=128, ink=255) for g in (left, right))
        spacer = np.full((left.shape[0], gap), 128, dtype=np.uint8)
        frame = np.concatenate([left, spacer, right], axis=1)
        # a progress bar along the bottom: shows how far the chain is, and keeps every frame distinct
        # (GIF writers merge identical consecutive frames, which would hide recorded steps)
        bar = np.full((4, frame.shape[1]), 40, dtype=np.uint8)
        bar[:, : round(frame.shape[1] * (k + 1) / len(xs))] = 220
        frames.append(np.concatenate([frame, bar], axis=0))
    return frames


def labelled_rows(
    rows: Sequence[np.ndarray],
    captions: Sequence[str],
    scale: int = 3,
    pad: int = 6,
    font_size: int = 13,
    titles: Sequence[str] | None = None,
) -> np.ndarray:
    """Rows of grey uint8 images (each [N_i, H, W]) stacked vertically, each under its caption; RGB uint8.

    ``titles`` (one per column of the rows, e.g. the class names) go in a band across the top.
    """
    if not rows or len(rows) != len(captions):
        raise ValueError("need one caption per row and at least one row")
    strips = [_as_rgb(image_grid(r, nrow=len(r), scale=scale, pad=1)) for r in rows]
    band = None
    if titles is not None:
        empty = np.zeros((0, max(s.shape[1] for s in strips), 3), dtype=np.uint8)
        band = column_titles(empty, titles, rows[0].shape[-1] * scale, pad=scale, font_size=font_size - 1)
    font = _font(font_size)
    line = font_size + 6
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max(math.ceil(measure.textlength(c, font=font)) for c in captions)
    width = max(max(s.shape[1] for s in strips), text_width) + 2 * pad
    top = pad + (band.shape[0] if band is not None else 0)
    height = top + sum(s.shape[0] + line + pad for s in strips)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    if band is not None:
        canvas.paste(Image.fromarray(band), (pad, pad))
    draw = ImageDraw.Draw(canvas)
    for strip, caption in zip(strips, captions, strict=True):
        draw.text((pad, top), caption, font=font, fill=(20, 20, 20))
        canvas.paste(Image.fromarray(strip), (pad, top + line))
        top += line + strip.shape[0] + pad
    return np.asarray(canvas).copy()
