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


# EXIF blocks that made Pillow's parser raise struct.error and TypeError (found by mutating a valid
# block, as scripts/fuzz_uploads.py does): the image still loads, as stored.
BROKEN_EXIF = {
    "struct_error": (
        "4578696600004d4d002a000000080005012000020000000443616d000112000300000001000600000132000200000014"
        "0000004a876900dc000000010000005e88250004000000010000008400000000323032308030313a30312030303ac830"
        "3a303000000190030002000000140000007000002800323032303a30313a30312030303a30303a303000000100020005"
        "000000030000009600000000fc0000010000000100000002000000010000000300000001"
    ),
    "type_error": (
        "4578696600004d4d002a000000080005010f00020000000443616d000112000300000001000600000132000200000014"
        "0000004a87690004000000010000005e88250004000000010000008400000000323032303a30313a30312030303a3030"
        "3a3030000001900300020000001400000070009d0000323032303a30313a30312030303a303090303000d2a100020005"
        "00000003000000960000d100000000010000000100000002000000010000000300000001"
    ),
    "truncated_ifd": "457869660000" + "4d4d002a00000008000501" + "12",
    "bad_offset": "457869660000" + "49492a00ffffff7f",
}


@pytest.mark.parametrize("case", sorted(BROKEN_EXIF))
def test_malformed_exif_keeps_the_pixels(case: str) -> None:
    data = _encode(Image.new("RGB", (40, 30), (200, 100, 50)), "JPEG", exif=bytes.fromhex(BROKEN_EXIF[case]))
    image = load_image(data)
    assert image.shape == (30, 40, 3) and abs(int(image[15, 20, 0]) - 200) < 8


def test_decoded_size_counts_bands_and_bytes() -> None:
    from emotion.imageio import decoded_size

    assert decoded_size(Image.new("RGBA", (100, 50))) == 100 * 50 * 4
    assert decoded_size(Image.new("L", (100, 50))) == 100 * 50
    assert decoded_size(Image.new("I;16", (100, 50))) == 100 * 50 * 2
    assert decoded_size(Image.new("F", (100, 50))) == 100 * 50 * 4
    assert decoded_size(Image.new("1", (100, 50))) == 100 * 50


def test_limit_is_by_decoded_bytes_not_pixels() -> None:
    """A tiny RGBA PNG declaring many pixels is refused from its header (no pixel is decoded); the
    same pixel count in grey fits."""
    from emotion import config

    side = int((config.MAX_DECODED_IMAGE_BYTES / 6) ** 0.5)  # RGBA (4) + RGB result (3) > limit > L (1) + 3
    rgba = _encode(Image.new("RGBA", (side, side)), "PNG", optimize=True)
    assert len(rgba) < 1_000_000 and side * side < config.MAX_IMAGE_PIXELS
    with pytest.raises(ImageLoadError, match="MB to decode; the limit is"):
        load_image(rgba, name="bomb.png")
    grey = load_image(_encode(Image.new("L", (side, side), 80), "PNG"))
    assert grey.shape == (side, side, 3) and grey[0, 0, 0] == 80


def test_large_decodes_take_turns(monkeypatch) -> None:
    """Decodes over LARGE_DECODE_BYTES hold one of MAX_CONCURRENT_LARGE_DECODES slots; small ones never wait."""
    import threading
    import time

    from emotion import imageio

    monkeypatch.setattr(imageio, "LARGE_DECODE_BYTES", 1000)
    monkeypatch.setattr(imageio, "_LARGE_DECODES", threading.BoundedSemaphore(1))
    active, peak, lock = [0], [0], threading.Lock()
    original = imageio._to_rgb

    def slow_to_rgb(image):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        return original(image)

    monkeypatch.setattr(imageio, "_to_rgb", slow_to_rgb)
    large = _encode(Image.new("RGB", (64, 64)), "PNG")  # 12 KB decoded: "large" under the patched limit
    threads = [threading.Thread(target=load_image, args=(large,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 1
    small = _encode(Image.new("RGB", (8, 8)), "PNG")  # 192 bytes: no slot needed
    peak[0] = 0
    threads = [threading.Thread(target=load_image, args=(small,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] > 1
