"""Image loading against a corpus of bad and unusual files generated here."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from emotion.imageio import ImageLoadError, load_image


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _photo(size=(64, 48)) -> Image.Image:
    gradient = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3).astype(np.uint8)
    return Image.fromarray(gradient, "RGB")


def test_zero_bytes():
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"", name="empty.jpg")


def test_truncated_jpeg():
    data = _encode(_photo((256, 256)), "JPEG")
    with pytest.raises(ImageLoadError, match="damaged or truncated"):
        load_image(data[: len(data) // 2], name="cut.jpg")


def test_text_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(path)


def test_declared_huge_png_is_rejected_before_decoding():
    # A valid PNG header declaring 20000x20000 pixels with almost no data behind it.
    small = _encode(Image.new("L", (1, 1)), "PNG")
    ihdr = small.index(b"IHDR")
    import struct
    import zlib

    header = struct.pack(">II", 20000, 20000) + small[ihdr + 12 : ihdr + 17]
    chunk = b"IHDR" + header
    forged = (
        small[: ihdr - 4] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + small[ihdr + 21 :]
    )
    with pytest.raises(ImageLoadError, match="pixels"):
        load_image(forged, name="bomb.png")


def test_missing_path(tmp_path):
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_unsupported_format():
    data = _encode(_photo(), "TGA")
    with pytest.raises(ImageLoadError, match="supported"):
        load_image(data, name="x.tga")


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = load_image(buffer.getvalue(), name="anim.gif")
    assert out.shape == (32, 32, 3)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


def test_16bit_png_scaled_not_clipped():
    deep = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    data = _encode(Image.fromarray(deep), "PNG")  # Pillow stores uint16 as mode I;16
    out = load_image(data, name="deep.png")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255


def test_rgba_composited_on_white():
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    out = load_image(_encode(rgba, "PNG"), name="clear.png")
    assert out.shape == (16, 16, 3) and out.min() == 255


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # red in CMYK
    out = load_image(_encode(cmyk, "JPEG"), name="cmyk.jpg")
    assert out.shape == (20, 20, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60


def test_palette_and_grey():
    assert load_image(_encode(_photo().convert("P"), "PNG")).shape == (48, 64, 3)
    assert load_image(_encode(_photo().convert("L"), "PNG")).shape == (48, 64, 3)


def test_exif_orientation_applied():
    image = _photo((60, 30))  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": displayed portrait
    out = load_image(_encode(image, "JPEG", exif=exif.tobytes()), name="rotated.jpg")
    assert out.shape == (60, 30, 3)


def test_oversized_file(monkeypatch):
    import emotion.imageio as imageio

    monkeypatch.setattr(imageio, "MAX_IMAGE_BYTES", 1000)
    with pytest.raises(ImageLoadError, match="limit"):
        load_image(_encode(_photo((256, 256)), "PNG"), name="big.png")
