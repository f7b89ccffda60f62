"""FER2013 faces placed into generated scenes and found again by the app's detector: the path a face
takes in the app (detect, align, crop), measured on faces whose labels are known.

scripts/benchmark_pipeline.py reports it (detection rate, each framing's accuracy against crop level);
training.evaluate chooses the test-time augmentation the app serves on it (`pipeline_crops`), because
the app classifies detected faces, not FER2013's registered crops. Scenes are made at run time from a
seed; nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import cv2
import numpy as np

from emotion.detectors import Box, get_detector
from emotion.pipeline import face_crop

SCENE = 320  # px, the side of a scene
ANGLES = (0.0, 10.0, 20.0, 25.0)  # degrees of tilt, each face once per angle (random sign)
NEAR = 0.4  # a detection counts when its centre is within this share of the face's side of the placed centre


def is_fer_face(face: np.ndarray) -> bool:
    """Whether `face` is a FER2013-shaped (48, 48) grey face: the only kind the scenes are made for."""
    return face.ndim == 2 and face.shape == (48, 48)


def background(rng: np.random.Generator) -> np.ndarray:
    """A (SCENE, SCENE) uint8 grey background of a random kind: flat, a gradient, blurred noise or
    random rectangles."""
    kind = rng.integers(4)
    if kind == 0:
        return np.full((SCENE, SCENE), rng.integers(20, 236), np.uint8)
    if kind == 1:
        a, b = rng.integers(0, 256, 2)
        ramp = np.linspace(a, b, SCENE, dtype=np.float32)
        return np.broadcast_to(ramp[None] if rng.random() < 0.5 else ramp[:, None], (SCENE, SCENE)).astype(np.uint8)
    if kind == 2:
        noise = rng.normal(128, 60, (SCENE, SCENE)).astype(np.float32)
        return np.clip(cv2.GaussianBlur(noise, (0, 0), float(rng.uniform(2, 8))), 0, 255).astype(np.uint8)
    out = np.full((SCENE, SCENE), rng.integers(0, 256), np.uint8)
    for _ in range(8):
        x, y = rng.integers(0, SCENE, 2)
        w, h = rng.integers(20, 160, 2)
        out[y : y + h, x : x + w] = rng.integers(0, 256)
    return out


class Placement(NamedTuple):
    """Where place() put a face: its centre (x, y) and side in scene pixels, and its tilt in degrees."""

    cx: float
    cy: float
    side: float
    angle: float


def place(face: np.ndarray, angle: float, rng: np.random.Generator) -> tuple[np.ndarray, Placement]:
    """A scene with the (48, 48) grey face enlarged to 72-160 px, rotated by `angle` degrees, softened at
    its edge by an elliptical mask and pasted at random: the RGB (SCENE, SCENE, 3) uint8 scene and where
    the face is in it."""
    side = int(rng.integers(72, 161))
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(mask, (side // 2, side // 2), (int(side * 0.5), int(side * 0.56)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), side * 0.03)
    span = int(np.ceil(side * 1.5))  # room for the rotated square
    offset = (span - side) // 2
    layer, alpha = np.zeros((span, span), np.float32), np.zeros((span, span), np.float32)
    layer[offset : offset + side, offset : offset + side] = big
    alpha[offset : offset + side, offset : offset + side] = mask
    matrix = cv2.getRotationMatrix2D((span / 2, span / 2), angle, 1.0)
    layer = cv2.warpAffine(layer, matrix, (span, span), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(alpha, matrix, (span, span), flags=cv2.INTER_LINEAR)
    x, y = (int(v) for v in rng.integers(0, SCENE - span + 1, 2))
    scene = background(rng).astype(np.float32)
    region = scene[y : y + span, x : x + span]
    scene[y : y + span, x : x + span] = region * (1 - alpha) + layer * alpha
    rgb = cv2.cvtColor(np.clip(scene + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    return rgb, Placement(x + span / 2, y + span / 2, float(side), angle)


def found_box(scene: np.ndarray, placed: Placement, detector) -> Box | None:
    """The detector's largest box near where the face was placed, or None when it missed the face."""
    near = [
        b for b in detector.detect(scene)
        if np.hypot(b.x + b.w / 2 - placed.cx, b.y + b.h / 2 - placed.cy) < NEAR * placed.side
    ]  # fmt: skip
    return max(near, key=lambda b: b.area) if near else None


def detections(
    faces: Sequence[np.ndarray], angle: float, detector, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, Box | None, Placement]]:
    """Each face placed in its own scene at +-angle (the sign drawn at random), and the detector's
    largest box near it: (scene, box, placement), box None when the face was not found."""
    for face in faces:
        signed = angle * (1 if rng.random() < 0.5 else -1)
        scene, placed = place(face, signed, rng)
        yield scene, found_box(scene, placed, detector), placed


def scene_views(
    faces: Sequence[np.ndarray], seed: int, max_angle: float = ANGLES[-1], detector: str = "blazeface"
) -> list[np.ndarray | None]:
    """Each (48, 48) grey face as the app would see it in a photo: placed in its own scene at a tilt
    drawn uniformly from [-max_angle, max_angle], found by the app's detector and cut by its crop
    (aligned, framed like FER2013; emotion.pipeline.face_crop). One (h, w, 3) uint8 crop per face, None
    where the detector missed it or the face has another shape. What `scene_views` in training.train
    trains on beside FER2013's own crops, so the net learns the detector's framing, not only FER2013's."""
    found = get_detector(detector, min_face=24)
    rng = np.random.default_rng(seed)
    views: list[np.ndarray | None] = []
    for face in faces:
        if not is_fer_face(face):
            views.append(None)
            continue
        scene, placed = place(face, float(rng.uniform(-max_angle, max_angle)), rng)
        box = found_box(scene, placed, found)
        views.append(None if box is None else face_crop(scene, box, align=True))
    return views


def placed_crop(scene: np.ndarray, placement: Placement) -> np.ndarray:
    """The face cut from its (H, W, 3) scene where place() put it, turned upright by its known tilt, at
    its placed size: (side, side, 3) uint8, FER2013's own framing with no detector. What a perfect
    detect-and-align step would give, so the scene's own cost (enlarging, the soft mask, the background,
    resampling) can be told apart from the detector's and the crop's."""
    upright = cv2.warpAffine(
        scene, cv2.getRotationMatrix2D((placement.cx, placement.cy), -placement.angle, 1.0),
        (scene.shape[1], scene.shape[0]), flags=cv2.INTER_LINEAR,
    )  # fmt: skip
    half = placement.side / 2
    x0, y0 = int(round(placement.cx - half)), int(round(placement.cy - half))
    side = int(round(placement.side))
    return upright[y0 : y0 + side, x0 : x0 + side]


def pipeline_crops(
    faces: Sequence[np.ndarray],
    labels: np.ndarray,
    angles: Sequence[float] = ANGLES,
    seed: int = 0,
    detector: str = "blazeface",
) -> tuple[list[np.ndarray], np.ndarray]:
    """Every (48, 48) grey face through a scene per angle, the app's detector and its crop (aligned,
    framed like FER2013; emotion.pipeline.face_crop): the crops of the faces found and their labels
    (N,). Faces of another shape are left out (the scenes are made for FER2013's)."""
    found = get_detector(detector, min_face=24)
    rng = np.random.default_rng(seed)
    kept = [i for i, face in enumerate(faces) if is_fer_face(face)]
    crops, truth = [], []
    for angle in angles:
        for i, (scene, box, _) in zip(kept, detections([faces[i] for i in kept], angle, found, rng), strict=True):
            if box is not None:
                crops.append(face_crop(scene, box, align=True))
                truth.append(labels[i])
    return crops, np.asarray(truth, dtype=np.asarray(labels).dtype)
