"""Face detection behind a small interface, with a name-to-class registry.

- "haar" (default, fast): OpenCV's frontal-face Haar cascade that ships inside opencv-python 4.x,
  run on a copy scaled so its longer side is at most `max_side` pixels.
- "hog" (more accurate, slower): dlib's HOG + linear SVM frontal face detector, whose weights
  are compiled into the dlib package. Fewer false positives than Haar, finds smaller faces when
  upsampling.

Both pad the image by a border before detecting, so a face cut by the frame edge
(obama_partial_face.jpg) is still found; boxes are then clipped to the image. Output boxes are
(x, y, w, h) int pixels in the input image, sorted largest first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import ClassVar, Protocol

import cv2
import numpy as np

from emotion.preprocess import to_gray


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Box]:
        """image: RGB (H, W, 3) or grey (H, W) uint8 -> face boxes, largest first."""


def clip_box(x: float, y: float, w: float, h: float, width: int, height: int) -> Box | None:
    """Clip a box to the image; None when nothing of it is left inside."""
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 <= x0 or y1 <= y0:
        return None
    return Box(x0, y0, x1 - x0, y1 - y0)


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """Grow a box by `margin` of its size on every side (0.1 = 10%), clipped to the image."""
    dx, dy = box.w * margin, box.h * margin
    return clip_box(box.x - dx, box.y - dy, box.w + 2 * dx, box.h + 2 * dy, width, height) or box


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The box's pixels (a view)."""
    return image[box.y : box.y + box.h, box.x : box.x + box.w]


class _PaddedDetector:
    """Shared frame: scale to max_side, pad the border, detect in grey, map boxes back, clip, sort."""

    name: ClassVar[str]
    # The detector's own window in pixels: scaling the image so that min_face maps onto it loses
    # no face we would keep, and makes detection several times faster (Haar at 640x480 with a
    # 48 px minimum: ~20 ms at full size, ~5 ms scaled by 0.5; scripts/benchmark.py).
    native_window: ClassVar[int]

    def __init__(self, min_face: int = 24, max_side: int = 640, pad: float = 0.15):
        self.min_face = min_face  # pixels, in the input image
        self.max_side = max_side
        self.pad = pad  # border added on each side, as a fraction of the longer side

    def detect(self, image: np.ndarray) -> list[Box]:
        gray = to_gray(image)
        height, width = gray.shape
        scale = min(1.0, self.max_side / max(height, width), self.native_window / max(1, self.min_face))
        small = (
            cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
            if scale < 1
            else gray
        )
        pad = int(round(self.pad * max(small.shape)))
        padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else small
        min_face = max(12, int(self.min_face * scale))
        boxes = []
        for x, y, w, h in self._raw_detect(padded, min_face):
            box = clip_box((x - pad) / scale, (y - pad) / scale, w / scale, h / scale, width, height)
            # A box more than half outside the image came from the padding alone.
            if (
                box is not None
                and box.area >= 0.35 * (w / scale) * (h / scale)
                and min(box.w, box.h) >= self.min_face * 0.5
            ):
                boxes.append(box)
        return sorted(boxes, key=lambda b: (-b.area, b.x, b.y))

    def _raw_detect(self, gray: np.ndarray, min_face: int) -> list[tuple[int, int, int, int]]:
        raise NotImplementedError


class HaarDetector(_PaddedDetector):
    name = "haar"
    native_window = 24

    def __init__(
        self,
        min_face: int = 24,
        max_side: int = 400,
        pad: float = 0.15,
        min_neighbors: int = 6,
        scale_factor: float = 1.2,
    ):
        super().__init__(min_face, max_side, pad)
        self.min_neighbors = min_neighbors
        self.scale_factor = scale_factor
        self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self._cascade.empty():
            raise RuntimeError("OpenCV's Haar cascade is missing: opencv-python-headless 4.x is required")
        self._lock = threading.Lock()  # detectMultiScale on one cascade object is not re-entrant

    def _raw_detect(self, gray: np.ndarray, min_face: int) -> list[tuple[int, int, int, int]]:
        equalized = cv2.equalizeHist(gray)
        with self._lock:
            found = self._cascade.detectMultiScale(
                equalized, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_face, min_face)
            )
        return [tuple(int(v) for v in f) for f in found]


class HogDetector(_PaddedDetector):
    name = "hog"
    native_window = 80

    def __init__(self, min_face: int = 24, max_side: int = 800, pad: float = 0.15, upsample: int = 0):
        super().__init__(min_face, max_side, pad)
        import dlib  # imported lazily: only this detector needs it

        self._detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self._lock = threading.Lock()

    def _raw_detect(self, gray: np.ndarray, min_face: int) -> list[tuple[int, int, int, int]]:
        # dlib's HOG window is 80x80: upsample once when the smallest wanted face is smaller.
        upsample = self.upsample or (1 if min_face < 60 and max(gray.shape) <= 1000 else 0)
        with self._lock:
            rects = self._detector(gray, upsample)
        return [(r.left(), r.top(), r.width(), r.height()) for r in rects]


DETECTORS: dict[str, type[_PaddedDetector]] = {"haar": HaarDetector, "hog": HogDetector}
DEFAULT_DETECTOR = "haar"
DETECTOR_DESCRIPTIONS = {
    "haar": "OpenCV Haar cascade: fast (a few ms per frame), frontal faces",
    "hog": "dlib HOG: more accurate, fewer false alarms, slower",
}
_cache: dict[tuple, _PaddedDetector] = {}
_cache_lock = threading.Lock()


def get_detector(name: str = DEFAULT_DETECTOR, **options) -> _PaddedDetector:
    """A shared detector instance per (name, options); raises KeyError for an unknown name."""
    if name not in DETECTORS:
        raise KeyError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    key = (name, tuple(sorted(options.items())))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = DETECTORS[name](**options)
        return _cache[key]


def crop_largest_face(image: np.ndarray, margin: float = 0.1) -> np.ndarray | None:
    """The largest face's crop (with margin) of a photo, or None; used to build face-crop datasets."""
    boxes = get_detector().detect(image)
    if not boxes:
        return None
    height, width = image.shape[:2]
    return crop(image, expand_box(boxes[0], margin, width, height)).copy()
