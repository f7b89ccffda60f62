"""Image loading from bytes or a path, with every failure a typed, readable error.

Returns RGB uint8 (H, W, 3) with EXIF orientation applied. RGBA and LA are composited on white;
palette, 16-bit, CMYK and grey images are converted. Zero-byte, truncated, non-image,
unsupported-format and over-sized (decompression bomb) inputs raise ImageLoadError, whose
message can be shown to a user as is.

Memory is bounded before any pixel is decoded: the header's width x height x bands x bytes per band
must fit MAX_DECODED_IMAGE_BYTES, and decodes over LARGE_DECODE_BYTES take one of a few process-wide
slots, so concurrent large uploads queue instead of adding up (limits in emotion.config). A damaged
EXIF block costs only the orientation: the pixels are used as stored.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from emotion.config import (
    ALLOWED_IMAGE_FORMATS,
    DECODE_WAIT_S,
    LARGE_DECODE_BYTES,
    MAX_CONCURRENT_LARGE_DECODES,
    MAX_DECODED_IMAGE_BYTES,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
)

log = logging.getLogger(__name__)
_LARGE_DECODES = threading.BoundedSemaphore(MAX_CONCURRENT_LARGE_DECODES)
# What Pillow's decoders and metadata parsers raise on hostile input besides OSError (found by
# scripts/fuzz_uploads.py); all mean "this file cannot be decoded".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError, KeyError, TypeError)


class ImageLoadError(ValueError):
    """An input that is not a usable image; str(error) is a message for the user."""


def load_image(source: bytes | str | Path, *, name: str | None = None) -> np.ndarray:
    """Decode an image file (bytes or path) to RGB uint8 (H, W, 3), upright per its EXIF tag."""
    label = name or (Path(source).name if isinstance(source, (str, Path)) else "the file")
    data = _read_bytes(source, label)
    if not data:
        raise ImageLoadError(f"{label} is empty (0 bytes).")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageLoadError(f"{label} is {len(data) / 1e6:.1f} MB; the limit is {MAX_IMAGE_BYTES / 1e6:.0f} MB.")
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than raises) between MAX_IMAGE_PIXELS and twice that: make it an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            decoded = _check_header(image, label)
            with _decode_slot(decoded, label):
                image.load()
                image = _upright(image, label)
                return _to_rgb(image)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{label} is not an image file Pillow can read (JPEG, PNG, WebP, BMP).") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(f"{label} declares too many pixels (over {MAX_IMAGE_PIXELS:,}).") from None
    except MemoryError:
        raise ImageLoadError(f"{label} is too large to decode on this server right now.") from None
    except _DECODE_ERRORS as error:
        raise ImageLoadError(f"{label} is damaged or truncated and cannot be decoded ({error}).") from None


def decoded_size(image: Image.Image) -> int:
    """Bytes the decoded pixels of an opened (not yet loaded) image take: width x height x bands x
    bytes per band of its mode (Pillow's ImageMode table; "1" is stored as one byte per pixel)."""
    width, height = image.size
    mode = ImageMode.getmode(image.mode)
    band_bytes = max(1, int(mode.typestr[-1])) if mode.typestr[-1].isdigit() else 1
    return width * height * len(mode.bands) * band_bytes


@contextmanager
def _decode_slot(decoded: int, label: str) -> Iterator[None]:
    """Hold one of the few large-decode slots while a large image is decoded and converted."""
    if decoded <= LARGE_DECODE_BYTES:
        yield
        return
    if not _LARGE_DECODES.acquire(timeout=DECODE_WAIT_S):
        raise ImageLoadError(f"The server is busy decoding other large images; try {label} again in a minute.")
    try:
        yield
    finally:
        _LARGE_DECODES.release()


def _upright(image: Image.Image, label: str) -> Image.Image:
    """The image turned per its EXIF orientation; as stored when the EXIF block cannot be parsed."""
    try:
        return ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as error:
        log.warning("%s: EXIF metadata unreadable (%s); orientation left as stored", label, error)
        return image


def _read_bytes(source: bytes | str | Path, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    if not path.is_file():
        raise ImageLoadError(f"{label} does not exist or is not a file.")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise ImageLoadError(
            f"{label} is {path.stat().st_size / 1e6:.1f} MB; the limit is {MAX_IMAGE_BYTES / 1e6:.0f} MB."
        )
    return path.read_bytes()


def _check_header(image: Image.Image, label: str) -> int:
    """Reject by the header alone, before any pixel is decoded; returns the decoded size in bytes."""
    if image.format not in ALLOWED_IMAGE_FORMATS:
        raise ImageLoadError(f"{label} is a {image.format} file; supported: JPEG, PNG, WebP, BMP.")
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageLoadError(f"{label} declares {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS:,} pixels.")
    if width < 1 or height < 1:
        raise ImageLoadError(f"{label} has no pixels.")
    decoded = decoded_size(image)
    # The RGB result is made beside the decoded pixels: count both against the limit.
    if decoded + 3 * width * height > MAX_DECODED_IMAGE_BYTES:
        raise ImageLoadError(
            f"{label} is {width}x{height} {image.mode} pixels: {(decoded + 3 * width * height) / 2**20:.0f} MB "
            f"to decode; the limit is {MAX_DECODED_IMAGE_BYTES / 2**20:.0f} MB. Scale it down and try again."
        )
    # An animated GIF/WebP: only the first frame is used (Pillow decodes frame 0 by default).
    return decoded


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8 (H, W, 3)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit grey: scale the real range down to 8 bits rather than clipping at 255 (float32, in
        # place: one working copy of the pixels).
        array = np.asarray(image, dtype=np.float32).copy()
        np.nan_to_num(array, copy=False, nan=0.0, posinf=0.0, neginf=0.0)  # float TIFFs may hold them
        low, high = float(array.min()), float(array.max())
        array -= low
        array *= 255.0 / (high - low) if high > low else 0.0
        array += 0.5
        grey = array.astype(np.uint8)
        del array
        return np.ascontiguousarray(np.broadcast_to(grey[:, :, None], (*grey.shape, 3)))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Blend onto white in Pillow (uint8, in C): no float copy of a large image.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        del rgba
        return np.asarray(white.convert("RGB"), dtype=np.uint8)
    if mode != "RGB":
        image = image.convert("RGB")  # L, P, CMYK, YCbCr, 1, RGBX...
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    """OpenCV/PyAV BGR (H, W, 3) -> RGB (H, W, 3), a view-free copy."""
    return np.ascontiguousarray(frame[:, :, ::-1])


def encode_png(image: np.ndarray, compress_level: int = 6) -> bytes:
    """RGB uint8 (H, W, 3) -> PNG bytes; compress_level 1 is several times faster for ~10% more bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
