"""Every kind of upload: good pictures in odd modes decode correctly, bad ones raise ImageInputError."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_core.image_io import MAX_BYTES, ImageInputError, load_image_info, to_uint8


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def as_value(pixel: float) -> float:
    """8-bit value → [−1, 1]."""
    return pixel / 127.5 - 1.0


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height but holds almost no pixel data: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# ---------------------------------------------------------------------------------------------- good input


def test_rgb_jpeg_is_resized_keeping_aspect(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = save(Image.fromarray(rng.integers(0, 256, (300, 512, 3), dtype=np.uint8)), tmp_path / "a.jpg")
    info = load_image_info(path, max_side=256)
    assert info.tensor.shape == (3, 150, 256)
    assert info.tensor.dtype == torch.float32
    assert -1.0 <= float(info.tensor.min()) and float(info.tensor.max()) <= 1.0
    assert info.original_size == (512, 300) and info.format == "JPEG"
    assert any("resized" in note for note in info.notes)


def test_small_images_are_not_enlarged_and_bytes_work(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (40, 20), (255, 0, 0)), tmp_path / "small.png")
    x = load_image_info(path.read_bytes(), max_side=256).tensor
    assert x.shape == (3, 20, 40)
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = save(Image.new("L", (8, 6), 64), tmp_path / "gray.png")
    x = load_image_info(path).tensor
    assert x.shape == (3, 6, 8)
    assert torch.allclose(x, torch.full_like(x, as_value(64)), atol=1e-6)


def test_palette_image_uses_its_palette(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    path = save(image, tmp_path / "palette.png")
    assert Image.open(path).mode == "P"
    x = load_image_info(path).tensor
    assert torch.allclose(x[:, 2, 2], torch.tensor([as_value(10), as_value(200), as_value(30)]), atol=1e-6)


def test_palette_transparency_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    path = save(image, tmp_path / "transparent.png", transparency=0)
    x = load_image_info(path).tensor
    assert torch.allclose(x, torch.ones_like(x))


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    path = save(Image.new("RGBA", (5, 5), (255, 0, 0, 128)), tmp_path / "rgba.png")
    x = load_image_info(path).tensor
    # 128/255 of red over white: red stays 255, green and blue become 255·(1 − 128/255) = 127.
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, as_value(127), as_value(127)]), atol=1.5 / 127.5)


def test_sixteen_bit_png_is_scaled_by_65535(tmp_path: Path) -> None:
    values = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    info = load_image_info(path)
    expected = torch.tensor(values[0] / 65535.0 * 2 - 1, dtype=torch.float32)
    for channel in range(3):
        assert torch.allclose(info.tensor[channel, 0], expected, atol=1e-5)
    assert any("16-bit" in note for note in info.notes)


def test_animated_gif_uses_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 6), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    info = load_image_info(path)
    assert torch.allclose(info.tensor[:, 3, 3], torch.tensor([1.0, -1.0, -1.0]), atol=0.02)
    assert any("first frame" in note for note in info.notes)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (30, 10), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown
    path = save(image, tmp_path / "rotated.jpg", exif=exif.tobytes())
    info = load_image_info(path)
    assert info.tensor.shape == (3, 30, 10)
    assert info.original_size == (10, 30) and not info.notes
    big = save(Image.new("RGB", (600, 200), (0, 0, 255)), tmp_path / "big.jpg", exif=exif.tobytes())
    assert load_image_info(big, max_side=100).tensor.shape == (3, 100, 33)


@pytest.mark.parametrize("size", [(1000, 333), (333, 1000), (4000, 3000), (257, 256)])
def test_jpeg_draft_decoding_gives_the_exact_fitted_size(tmp_path: Path, size: tuple[int, int]) -> None:
    path = save(Image.new("RGB", size, (10, 20, 30)), tmp_path / "d.jpg")
    scale = 256 / max(size)
    expected = (3, max(1, round(size[1] * scale)), max(1, round(size[0] * scale)))
    x = load_image_info(path).tensor
    assert x.shape == expected
    assert torch.allclose(x[:, 5, 5], torch.tensor([as_value(10), as_value(20), as_value(30)]), atol=0.03)


# ---------------------------------------------------------------------------------------------- bad input


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: write(d / "empty.png", b""), "empty"),
        (lambda d: write(d / "notes.png", b"these are not pixels"), "not an image"),
        (lambda d: write(d / "script.jpg", b"#!/bin/sh\necho hi\n"), "not an image"),
        (lambda d: d / "missing.png", "could not be found"),
        (lambda d: d, "not a file"),
    ],
    ids=["zero-size", "text-file", "script-named-jpg", "missing", "directory"],
)
def test_unusable_files_are_refused(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(ImageInputError, match=message):
        load_image_info(make(tmp_path))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_truncated_files_are_refused(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(1)
    full = save(Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)), tmp_path / "full", format=fmt)
    data = full.read_bytes()
    with pytest.raises(ImageInputError, match=r"damaged|truncated"):
        load_image_info(data[: len(data) // 2])


def test_corrupt_png_chunk_is_refused(tmp_path: Path) -> None:
    data = bytearray(save(Image.new("RGB", (64, 64), (1, 2, 3)), tmp_path / "c.png").read_bytes())
    data[40:60] = b"\xff" * 20  # scribble over the compressed pixel data
    with pytest.raises(ImageInputError):
        load_image_info(bytes(data))


def test_formats_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (16, 16), (9, 9, 9)), tmp_path / "icon.ico", format="ICO")
    with pytest.raises(ImageInputError, match="not an image we can read"):
        load_image_info(path)


@pytest.mark.parametrize("size", [(8000, 6000), (20000, 20000), (100_000, 100_000)])
def test_too_many_pixels_is_refused_before_decoding(size: tuple[int, int]) -> None:
    # 48 MP is under PIL's own limit but over ours; 400 MP and 10 GP trip PIL's bomb check as well.
    with pytest.raises(ImageInputError, match="megapixels"):
        load_image_info(png_header_only(*size))


def test_pixel_limit_is_configurable(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (100, 100)), tmp_path / "ok.png")
    assert load_image_info(path, max_pixels=10_000).tensor.shape == (3, 100, 100)
    with pytest.raises(ImageInputError, match="megapixels"):
        load_image_info(path, max_pixels=9_999)


def test_oversized_files_are_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with path.open("wb") as handle:
        handle.truncate(MAX_BYTES + 1)  # sparse: nothing is written, only the size matters
    with pytest.raises(ImageInputError, match="limit"):
        load_image_info(path)
    with pytest.raises(ImageInputError, match="limit"):
        load_image_info(b"\x89PNG" + b"\0" * 100, max_bytes=50)
    with pytest.raises(ImageInputError, match="empty"):
        load_image_info(b"")


def test_wrong_argument_type_is_an_image_input_error() -> None:
    with pytest.raises(ImageInputError):
        load_image_info(12345)  # type: ignore[arg-type]
    assert issubclass(ImageInputError, ValueError)


# ---------------------------------------------------------------------------------------------- uint8 helpers


def test_to_uint8_clips_and_transposes() -> None:
    x = torch.tensor([[[-3.0, -1.0], [0.0, 5.0]], [[1.0, 1.0], [1.0, 1.0]], [[-1.0, -1.0], [-1.0, -1.0]]])
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out[..., 0].tolist() == [[0, 0], [128, 255]]  # 0 → 127.5 rounds to 128 (round half to even)
    assert (out[..., 1] == 255).all() and (out[..., 2] == 0).all()
    assert to_uint8(torch.zeros(2, 3, 4, 5)).shape == (2, 4, 5, 3)
    # One channel (a batch of digits, a single grey image) is dropped rather than kept as a trailing 1.
    assert to_uint8(torch.zeros(2, 1, 4, 5)).shape == (2, 4, 5)
    assert to_uint8(torch.zeros(1, 4, 5)).shape == (4, 5)
    assert to_uint8(torch.zeros(4, 5)).shape == (4, 5)
    with pytest.raises(ValueError, match="expected"):
        to_uint8(torch.zeros(5))


def test_uint8_round_trip_through_the_model_range() -> None:
    rng = np.random.default_rng(2)
    array = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    x = torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0  # the inverse map, written out
    assert np.array_equal(to_uint8(x), array)
