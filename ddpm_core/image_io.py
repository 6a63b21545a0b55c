"""Loading user images safely, and converting between [-1, 1] tensors and uint8 arrays.

Uploads are untrusted: :func:`load_image_info` refuses anything it cannot turn into a modest RGB picture
(empty, too many bytes, too many pixels, not an image, a format we do not decode, a corrupt or
truncated file) with a single exception type, :class:`ImageInputError`, whose message can be shown
to a person as it is. The pixel count is checked from the header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 20 * 1024 * 1024
"""Largest file accepted (20 MiB)."""

MAX_PIXELS = 40_000_000
"""Largest width × height accepted (40 megapixels), checked before decoding."""

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
"""Formats PIL may use to decode uploads; nothing that calls external programs (such as EPS)."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_EXIF_ORIENTATION = 0x0112


class ImageInputError(ValueError):
    """An image could not be used; the message says why in words fit for the person who sent it."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``tensor`` is float32 [3, H, W] in [−1, 1]; ``notes`` say what was changed."""

    tensor: torch.Tensor
    original_size: tuple[int, int]  # (width, height) as shown, i.e. after any EXIF rotation
    original_mode: str
    format: str
    notes: tuple[str, ...] = ()


def _read_bytes(source: str | os.PathLike | bytes | bytearray | memoryview, max_bytes: int) -> bytes:
    """The raw bytes of ``source``, refusing empty, missing and oversized inputs before reading them."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise ImageInputError(f"The image is {_megabytes(len(data))}; the limit is {_megabytes(max_bytes)}.")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as err:
            raise ImageInputError("The image file could not be found or opened.") from err
        if not path.is_file():
            raise ImageInputError("That is not a file.")
        if size > max_bytes:
            raise ImageInputError(f"The image is {_megabytes(size)}; the limit is {_megabytes(max_bytes)}.")
        try:
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        except OSError as err:
            raise ImageInputError("The image file could not be read.") from err
        if len(data) > max_bytes:  # the file grew after stat()
            raise ImageInputError(f"The image is larger than the limit of {_megabytes(max_bytes)}.")
    else:
        raise ImageInputError(f"Expected an image file, got {type(source).__name__}.")
    if not data:
        raise ImageInputError("The image file is empty (0 bytes).")
    return data


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _too_many_pixels(max_pixels: int) -> str:
    return f"The image has too many pixels; the limit is {max_pixels / 1e6:.0f} megapixels."


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Open the header only and check format and pixel count; nothing is decoded yet."""
    with warnings.catch_warnings():
        # PIL warns above Image.MAX_IMAGE_PIXELS and raises above twice that; treat both as refusals.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageInputError(_too_many_pixels(max_pixels)) from err
        except UnidentifiedImageError as err:
            raise ImageInputError(
                "This file is not an image we can read. Please upload a PNG, JPEG, GIF, BMP, WebP or TIFF file."
            ) from err
        except Exception as err:  # PIL raises many types for malformed headers
            raise ImageInputError("The image file is damaged and could not be opened.") from err
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageInputError("The image has no pixels.")
    if width * height > max_pixels:
        raise ImageInputError(
            f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels."
        )
    return image


def _to_float_rgb(image: Image.Image) -> np.ndarray:
    """Decode to float32 [H, W, 3] in [0, 1]: alpha composited on white, 16-bit scaled by 65535."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        gray = np.asarray(image, dtype=np.float64)
        gray = np.clip(gray, 0, 65535) / 65535.0
        return np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    if mode == "F":
        gray = np.asarray(image, dtype=np.float64)
        gray = np.nan_to_num(gray, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(gray.min()), float(gray.max())
        if low < 0.0 or high > 1.0:  # not already in [0, 1]: stretch to fill it
            gray = (gray - low) / (high - low) if high > low else np.zeros_like(gray)
        return np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    has_alpha = has_alpha or (mode in ("L", "RGB") and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
    else:
        rgb = image.convert("RGB")
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so the longest side is at most ``max_side``; never enlarged."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def load_image_info(
    source: str | os.PathLike | bytes | bytearray | memoryview,
    max_side: int = 256,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> LoadedImage:
    """Like :func:`load_image`, but also report the original size, mode, format and what was changed."""
    if max_side < 1:
        raise ValueError("max_side must be at least 1")
    data = _read_bytes(source, max_bytes)
    image = _open_checked(data, max_pixels)
    notes: list[str] = []
    original_size, original_mode, fmt = image.size, image.mode, image.format or "unknown"
    try:
        if getattr(image, "is_animated", False):
            notes.append(f"animated image with {image.n_frames} frames: using the first frame")
            image.seek(0)
        target = _fit_size(*image.size, max_side)
        if fmt in ("JPEG", "MPO") and target != image.size:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still leaves at least the target size.
            image.draft("RGB", target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "palette images with transparency expressed in bytes"
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # shown rotated by 90°
                original_size = (original_size[1], original_size[0])
            image = ImageOps.exif_transpose(image) or image
            pixels = _to_float_rgb(image)
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageInputError(_too_many_pixels(max_pixels)) from err
    except Exception as err:  # truncated data, bad chunks, unsupported modes, …
        raise ImageInputError("The image file is damaged or truncated and could not be decoded.") from err

    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
    # The size is fitted from the stored size (as shown), not from a JPEG draft's already-reduced one.
    new_width, new_height = _fit_size(*original_size, max_side)
    if (new_height, new_width) != tuple(x.shape[1:]):
        size = (new_height, new_width)
        x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    if (new_width, new_height) != original_size:
        notes.append(f"resized from {original_size[0]}×{original_size[1]} to {new_width}×{new_height}")
    if original_mode in _SIXTEEN_BIT_MODES or original_mode == "I":
        notes.append("16-bit grayscale scaled to [0, 1] by 65535")
    x = (x.clamp(0.0, 1.0) * 2.0 - 1.0).contiguous()
    return LoadedImage(x, original_size, original_mode, fmt, tuple(notes))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[−1, 1] tensor → uint8 numpy with channels last, clipped; a single channel is dropped.

    [3, H, W] → [H, W, 3], [N, 3, H, W] → [N, H, W, 3], [N, 1, H, W] → [N, H, W], [1, H, W] and [H, W] → [H, W].
    """
    x = x.detach().to("cpu", torch.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim not in (3, 4):
        raise ValueError(f"expected [H, W], [C, H, W] or [N, C, H, W], got shape {tuple(x.shape)}")
    x = x.clamp(-1.0, 1.0).add_(1.0).mul_(127.5).round_().to(torch.uint8)
    if x.shape[-3] == 1:
        return x.squeeze(-3).contiguous().numpy()
    return x.movedim(-3, -1).contiguous().numpy()
