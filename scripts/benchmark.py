"""Latency benchmark of the inference core; prints medians over many runs.

    python scripts/benchmark.py [--model NAME] [--photo PATH] [--runs 300]

- per-face classification at batch 1: serving runtime (LiteRT/TFLite) and plain Keras `model(x)`
- detection per 640x480 frame, for each detector
- full `analyze()` per 640x480 frame (detect + crop + preprocess + classify)

The frame is cut from a real photo (default ../shared/photos/two_people.jpg, one face in the
640x480 window). Run it on an otherwise idle machine: figures go into the README.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from emotion import analyze, get_detector, load, load_image
from emotion.config import SHARED_DIR
from emotion.detectors import DETECTORS, crop


def median_ms(fn, runs: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def frame_with_one_face(photo: Path) -> np.ndarray:
    """A 640x480 RGB window of the photo around its largest face (resized first if smaller)."""
    image = load_image(photo)
    if image.shape[0] < 480 or image.shape[1] < 640:
        import cv2

        scale = max(480 / image.shape[0], 640 / image.shape[1])
        image = cv2.resize(image, None, fx=scale, fy=scale)
    face = get_detector("hog").detect(image)[0]
    cx, cy = face.x + face.w // 2, face.y + face.h // 2
    x0 = int(np.clip(cx - 320, 0, image.shape[1] - 640))
    y0 = int(np.clip(cy - 240, 0, image.shape[0] - 480))
    return np.ascontiguousarray(image[y0 : y0 + 480, x0 : x0 + 640])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="registered model (default: the default model)")
    parser.add_argument("--photo", type=Path, default=SHARED_DIR / "photos" / "two_people.jpg")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()

    model = load(args.model)
    frame = frame_with_one_face(args.photo)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; model {model.name}")
    print(f"frame: 640x480 from {args.photo.name}; medians over {args.runs} runs\n")

    face = crop(frame, get_detector().detect(frame)[0])
    inputs = model.preprocess([face])
    rows = [
        ("classify 1 face, LiteRT (preprocess + infer)", median_ms(lambda: model.predict_faces([face]), args.runs)),
        ("classify 1 face, LiteRT (infer only)", median_ms(lambda: model.predict_inputs(inputs), args.runs)),
        (
            f"classify 1 face, LiteRT + served TTA ({model.tta_mode})",
            median_ms(lambda: model.predict_faces([face], tta=True), args.runs),
        ),
    ]
    if model.info.keras_path is not None:
        import keras

        net = keras.models.load_model(model.info.keras_path)
        rows.append(
            ("classify 1 face, Keras model(x)", median_ms(lambda: net(inputs, training=False), min(args.runs, 100)))
        )
    for name in sorted(DETECTORS):
        detector = get_detector(name)
        faces = len(detector.detect(frame))
        rows.append(
            (f"detect, {name} ({faces} face), 640x480", median_ms(lambda d=detector: d.detect(frame), args.runs // 3))
        )
    for name in sorted(DETECTORS):
        rows.append(
            (
                f"analyze() 640x480, {name} detector",
                median_ms(lambda n=name: analyze(frame, model, detector=n), args.runs // 3),
            )
        )
    width = max(len(r[0]) for r in rows)
    for label, ms in rows:
        print(f"{label.ljust(width)}  {ms:8.2f} ms")


if __name__ == "__main__":
    main()
