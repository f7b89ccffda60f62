"""analyze(image) -> faces with box, label, scores and timings; annotate(image, faces) draws them."""

from __future__ import annotations

import time
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


def annotate(image: np.ndarray, results: list[FaceResult], *, thickness: int | None = None) -> np.ndarray:
    """A copy of an RGB image (grey is converted) with a box and "label 87%" per face, coloured per emotion."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[:, :, :3].copy()
    scale = max(canvas.shape[:2]) / 800
    line = thickness or max(2, int(round(2 * scale)))
    font_scale = max(0.5, 0.6 * scale)
    for r in results:
        color = color_for(r.label)
        x, y, w, h = r.box.x, r.box.y, r.box.w, r.box.h
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, line)
        text = f"{r.label} {r.confidence:.0%}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, line // 2))
        top = y - th - base - 4 if y - th - base - 4 >= 0 else y + h  # above the box, or below if no room
        cv2.rectangle(canvas, (x, top), (x + tw + 6, top + th + base + 4), color, -1)
        ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(
            canvas,
            text,
            (x + 3, top + th + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            ink,
            max(1, line // 2),
            cv2.LINE_AA,
        )
    return canvas
