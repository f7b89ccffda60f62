"""analyze(image) -> faces with box, label, scores and timings; in_reading_order(faces) numbers them
left to right, top to bottom; annotate(image, faces) draws them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from emotion.detectors import DEFAULT_DETECTOR, Box, crop, expand_box, get_detector
from emotion.labels import color_for, valence_arousal
from emotion.preprocess import aligned_crop
from emotion.registry import EmotionModel, load


@dataclass
class FaceResult:
    """One face: box (x, y, w, h) in image pixels, top label, probabilities per label, timings (ms)."""

    box: Box
    label: str
    scores: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        return self.scores[self.label]

    @property
    def valence_arousal(self) -> tuple[float, float]:
        return valence_arousal(self.scores)

    def to_dict(self) -> dict:
        valence, arousal = self.valence_arousal
        return {
            "box": self.box.as_list(),
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "valence": round(valence, 4),
            "arousal": round(arousal, 4),
        }

    @classmethod
    def from_dict(cls, data: dict) -> FaceResult:
        return cls(Box(*data["box"]), data["label"], dict(data["scores"]))


def _as_model(model: str | EmotionModel | None) -> EmotionModel:
    return model if isinstance(model, EmotionModel) else load(model)


def classify_crops(
    crops: list[np.ndarray], boxes: list[Box], model: str | EmotionModel | None = None, tta: bool = False
) -> list[FaceResult]:
    """Classify given face crops (uint8, any size/colour) whose boxes are already known."""
    emotion_model = _as_model(model)
    started = time.perf_counter()
    probs = emotion_model.predict_faces(crops, tta=tta) if crops else np.zeros((0, len(emotion_model.labels)))
    per_face_ms = (time.perf_counter() - started) * 1000 / max(1, len(crops))
    results = []
    for box, p in zip(boxes, probs, strict=True):
        scores = {label: float(v) for label, v in zip(emotion_model.labels, p, strict=True)}
        label = max(scores, key=scores.get)
        results.append(FaceResult(box, label, scores, {"classify_ms": per_face_ms}))
    return results


def face_crop(image: np.ndarray, box: Box, margin: float = 0.1, align: bool = True) -> np.ndarray:
    """The crop of one detected face: with align and the box's eye keypoints, rotated so the eyes
    are level and framed like FER2013's faces around the box (emotion.preprocess.aligned_crop);
    else the box grown by `margin` of its size on every side."""
    if align and box.eyes is not None:
        return aligned_crop(image, box.eyes, (box.x, box.y, box.w, box.h))
    height, width = image.shape[:2]
    return crop(image, expand_box(box, margin, width, height))


def analyze(
    image: np.ndarray,
    model: str | EmotionModel | None = None,
    detector: str = DEFAULT_DETECTOR,
    tta: bool = False,
    *,
    min_face: int | None = None,
    margin: float = 0.1,
    detect: bool = True,
    align: bool = True,
) -> list[FaceResult]:
    """Find and classify every face of an RGB (H, W, 3) or grey (H, W) uint8 image.

    min_face: smallest face kept, in pixels; None means a tenth of the image's shorter side (at
    least 24 px); pass a smaller value for group photos with small faces. With the "haar" and "hog"
    detectors it also sets the speed (Haar on a 640x480 frame: about 5 ms at 48 px, 30 ms at 24 px);
    the default "blazeface" costs the same whatever it is.
    detect=False treats the whole image as one aligned face crop (FER2013-style). Each face is
    cropped with `margin` of its size added on every side (FER2013 crops show the whole head), or,
    with align (the default) and a detector that gives eye keypoints (BlazeFace), rotated upright
    and framed as FER2013 registers its faces (face_crop).
    Results are sorted largest face first; timings hold detect_ms (shared) and classify_ms.
    """
    height, width = image.shape[:2]
    started = time.perf_counter()
    if detect:
        if min_face is None:
            min_face = max(24, min(height, width) // 10)
        boxes = get_detector(detector, min_face=min_face).detect(image)
    else:
        boxes = [Box(0, 0, width, height)]
    detect_ms = (time.perf_counter() - started) * 1000
    crops = [face_crop(image, b, margin, align) for b in boxes] if detect else [image]
    results = classify_crops(crops, boxes, model, tta)
    for r in results:
        r.timings["detect_ms"] = detect_ms
    return results


def reading_order(boxes: list[Box]) -> list[int]:
    """Indices of boxes in reading order: rows top to bottom, left to right within a row.

    A box joins the current row when its vertical centre lies within half the row's first box's
    height of that box's centre (faces side by side rarely share a top edge exactly, so rows are
    grouped by centres rather than sorted by y alone). Independent of the detector's own order.
    """
    by_centre_y = sorted(range(len(boxes)), key=lambda i: (boxes[i].y + boxes[i].h / 2, boxes[i].x))
    rows: list[list[int]] = []
    for i in by_centre_y:
        centre = boxes[i].y + boxes[i].h / 2
        if rows:
            first = boxes[rows[-1][0]]
            if abs(centre - (first.y + first.h / 2)) <= first.h / 2:
                rows[-1].append(i)
                continue
        rows.append([i])
    return [i for row in rows for i in sorted(row, key=lambda j: (boxes[j].x, boxes[j].y))]


def in_reading_order(results: list[FaceResult]) -> list[FaceResult]:
    """The same faces sorted by reading_order of their boxes (face 1 is the top-left one)."""
    return [results[i] for i in reading_order([r.box for r in results])]


def _ink_for(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with an RGB fill (relative luminance, WCAG)."""
    channels = [c / 255 for c in color]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return (0, 0, 0) if luminance > 0.179 else (255, 255, 255)


def annotate(
    image: np.ndarray,
    results: list[FaceResult],
    *,
    thickness: int | None = None,
    numbers: Sequence[int] | bool = True,
) -> np.ndarray:
    """A copy of an RGB (H, W, 3) or grey (H, W) uint8 image with each face drawn: its box and a tag
    "<n> label 87%" in the emotion's colour. n is the face's 1-based position in `results` (numbers=True),
    the given number per face (a sequence, e.g. the live page's track ids) or left out (False).

    Pass faces in reading order (in_reading_order) so that the numbers read left to right, top to
    bottom whatever the detector; the cards of a page use the same positions. Line width and text
    size follow the image's size (legible on a phone photo and a 4K frame alike); the tag is a filled
    box with black or white ink chosen by contrast, outlined in black and white so that it stands out
    on any background. Pure: the input is not modified. Returns RGB (H, W, 3) uint8.
    """
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[:, :, :3].copy()
    height, width = canvas.shape[:2]
    scale = max(height, width) / 800
    line = thickness or max(2, int(round(2 * scale)))
    font_scale = max(0.5, 0.8 * scale)
    weight = max(1, int(round(1.6 * scale)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    if numbers is True:
        numbers = range(1, len(results) + 1)
    tags = [f"{n} " for n in numbers] if numbers is not False else [""] * len(results)
    for tag, r in zip(tags, results, strict=True):
        color = color_for(r.label)
        x, y, w, h = r.box.x, r.box.y, r.box.w, r.box.h
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 0, 0), line + 2)  # dark halo: visible on light skin
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, line)
        text = f"{tag}{r.label} {r.confidence:.0%}"
        (tw, th), base = cv2.getTextSize(text, font, font_scale, weight)
        pad = max(3, int(round(3 * scale)))
        tag_h = th + base + 2 * pad
        top = y - tag_h if y - tag_h >= 0 else min(y + h, height - tag_h)  # above the box, else below it
        left = max(0, min(x, width - tw - 2 * pad))  # never cut by the right edge
        cv2.rectangle(canvas, (left, top), (left + tw + 2 * pad, top + tag_h), color, -1)
        cv2.rectangle(canvas, (left, top), (left + tw + 2 * pad, top + tag_h), (255, 255, 255), 1)
        cv2.rectangle(canvas, (left - 1, top - 1), (left + tw + 2 * pad + 1, top + tag_h + 1), (0, 0, 0), 1)
        cv2.putText(canvas, text, (left + pad, top + pad + th), font, font_scale, _ink_for(color), weight, cv2.LINE_AA)
    return canvas
