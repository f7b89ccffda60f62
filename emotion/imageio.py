"""Image loading from bytes or a path, with every failure a typed, readable error.

Returns RGB uint8 (H, W, 3) with EXIF orientation applied. RGBA and LA are composited on white;
palette, 16-bit, CMYK and grey images are converted. Zero-byte, truncated, non-image,
unsupported-format and over-sized (decompression bomb) inputs raise ImageLoadError, whose
message can be shown to a user as is.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emotion.config import ALLOWED_IMAGE_FORMATS, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from emotion.preprocess import composite_on_white


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
            _check_header(image, label)
            image.load()
            image = ImageOps.exif_transpose(image)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{label} is not an image file Pillow can read (JPEG, PNG, WebP, BMP).") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(f"{label} declares too many pixels (over {MAX_IMAGE_PIXELS:,}).") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"{label} is damaged or truncated and cannot be decoded ({error}).") from None
    return _to_rgb(image)


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


def _check_header(image: Image.Image, label: str) -> None:
    """Reject by the header alone, before any pixel is decoded."""
    if image.format not in ALLOWED_IMAGE_FORMATS:
        raise ImageLoadError(f"{label} is a {image.format} file; supported: JPEG, PNG, WebP, BMP.")
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageLoadError(f"{label} declares {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS:,} pixels.")
    if width < 1 or height < 1:
        raise ImageLoadError(f"{label} has no pixels.")
    # An animated GIF/WebP: only the first frame is used (Pillow decodes frame 0 by default).


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8 (H, W, 3)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit grey: scale the real range down to 8 bits rather than clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        grey = ((array - low) * scale + 0.5).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        return composite_on_white(np.asarray(image.convert("RGBA")))
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
