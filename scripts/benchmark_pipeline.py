"""Pipeline-level benchmark: FER2013 faces placed into larger generated images, through detect,
align, crop and classify, against the same model on the faces' own crops.

    python scripts/benchmark_pipeline.py [--model NAME] [--split PrivateTest] [--faces 500]
                                         [--angles 0 5 10 15 20 25] [--detector blazeface]

Each face (48 px) is enlarged to 72-160 px, rotated by +-angle (random sign), softened at its
edge by an elliptical mask and pasted at a random place of a 320x320 scene whose background is
drawn at random (flat grey, gradient, blurred noise or random rectangles). Scenes are made at run
time from a fixed seed; nothing is written. A detection counts when its centre falls within 40%
of the face's size of the placed centre. Printed per angle: detection rate; accuracy on the
detected faces with the box crop (margin 0.1, no rotation), the FER-framed box crop (no rotation),
the aligned crop framed by the eyes and the aligned crop framed by the box (what analyze serves;
emotion.preprocess.aligned_crop); the crop-level accuracy of the same detected faces; and the cost
(crop level minus pipeline) of the box crop and of the served aligned crop. Choose on PublicTest
(--split PublicTest), report on PrivateTest.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2

from emotion.detectors import Box, crop, expand_box, get_detector
from emotion.pipeline import face_crop
from emotion.preprocess import FER_BOX_DROP, FER_BOX_SIDE, aligned_crop
from emotion.registry import load
from training.data import load_fer2013_csv
from training.evaluate import default_data

SCENE = 320


def background(rng: np.random.Generator) -> np.ndarray:
    """A (SCENE, SCENE) uint8 grey background of a random kind."""
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


def place(face: np.ndarray, angle: float, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A scene with the (48, 48) face enlarged, rotated by `angle` degrees and pasted at random;
    returns the RGB scene and the face's (centre x, centre y, side) in it."""
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
    return rgb, (x + span / 2, y + span / 2, float(side))


def fer_framed_crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The box scaled and shifted to FER2013's measured framing (no rotation)."""
    side = max(box.w, box.h) / FER_BOX_SIDE
    cx, cy = box.x + box.w / 2, box.y + box.h / 2 + FER_BOX_DROP * side
    height, width = image.shape[:2]
    framed = Box(int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side)), int(round(side)))
    return crop(image, expand_box(framed, 0.0, width, height))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="registered model (default: the app's default)")
    parser.add_argument("--split", default="PrivateTest", choices=("PublicTest", "PrivateTest"))
    parser.add_argument("--faces", type=int, default=500)
    parser.add_argument("--angles", type=float, nargs="+", default=[0, 5, 10, 15, 20, 25])
    parser.add_argument("--detector", default="blazeface")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="FER2013 CSV (default: the one emotion.config finds)")
    args = parser.parse_args(argv)
    model = load(args.model)
    split = load_fer2013_csv(args.data or default_data(), splits=(args.split,)).splits[args.split]
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(split), size=min(args.faces, len(split)), replace=False))
    faces, labels = [split.images[i] for i in chosen], split.labels[chosen]
    crop_level = model.predict_faces(faces).argmax(axis=1) == labels
    detector = get_detector(args.detector, min_face=24)
    print(f"model {model.name}, detector {args.detector}, {len(faces)} {args.split} faces; crop-level accuracy "
          f"{crop_level.mean():.1%}")  # fmt: skip
    header = (
        "angle | detected | crop level (detected) | box crop | FER-framed box | aligned, eye framing"
        " | aligned, box framing | cost box | cost aligned"
    )
    print(header + " | ms per scene")
    for angle in args.angles:
        found, crops = [], {"box": [], "fer": [], "eyes": [], "aligned": []}
        started = time.perf_counter()
        for face in faces:
            signed = angle * (1 if rng.random() < 0.5 else -1)
            scene, (cx, cy, side) = place(face, signed, rng)
            near = [b for b in detector.detect(scene) if np.hypot(b.x + b.w / 2 - cx, b.y + b.h / 2 - cy) < 0.4 * side]
            found.append(bool(near))
            if near:
                box = max(near, key=lambda b: b.area)
                crops["box"].append(face_crop(scene, box, align=False))
                crops["fer"].append(fer_framed_crop(scene, box))
                crops["eyes"].append(aligned_crop(scene, box.eyes) if box.eyes else face_crop(scene, box, align=False))
                crops["aligned"].append(face_crop(scene, box, align=True))
        per_scene = (time.perf_counter() - started) * 1000 / len(faces)
        hit = np.array(found)
        truth = labels[hit]
        acc = {k: float((model.predict_faces(v).argmax(axis=1) == truth).mean()) if v else float("nan")
               for k, v in crops.items()}  # fmt: skip
        base = float(crop_level[hit].mean()) if hit.any() else float("nan")
        print(
            f"{angle:g} | {hit.mean():.1%} | {base:.1%} | {acc['box']:.1%} | {acc['fer']:.1%} | {acc['eyes']:.1%}"
            f" | {acc['aligned']:.1%}"
            f" | {100 * (base - acc['box']):+.1f} | {100 * (base - acc['aligned']):+.1f} | {per_scene:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
