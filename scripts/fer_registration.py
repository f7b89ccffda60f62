"""Measure FER2013's face registration: where BlazeFace puts the eyes on FER2013's 48 px faces.

    python scripts/fer_registration.py [--faces 600] [--data PATH]

Each Training face (never a test split) is enlarged 4x and set in the middle of a larger canvas
(its border repeated, so the detector sees it whole), then detected; for the faces found, the
script prints the medians (and quartiles) of the gap between the eyes and of the eye line's height
as fractions of the face's side, and the detector's box relative to the face: the constants
emotion.preprocess.FER_EYE_DISTANCE / FER_EYE_Y, and the box-to-crop scale that matches FER2013.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2

from emotion.detectors import get_detector
from training.data import load_fer2013_csv
from training.evaluate import default_data

ENLARGE = 4
PAD = 96  # canvas border, in enlarged pixels


def measure(face: np.ndarray) -> dict | None:
    """One (48, 48) uint8 face -> eye gap, eye-line height, eye-midpoint x, box side and centre
    offsets, all as fractions of the face's side; None when no face (or no eyes) is found."""
    side = face.shape[0] * ENLARGE
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
    boxes = [b for b in get_detector("blazeface", min_face=24).detect(canvas) if b.eyes is not None]
    if not boxes:
        return None
    box = max(boxes, key=lambda b: b.area)
    (lx, ly), (rx, ry) = box.eyes
    return {
        "eye_distance": float(np.hypot(rx - lx, ry - ly)) / side,
        "eye_y": ((ly + ry) / 2 - PAD) / side,
        "eye_mid_x": ((lx + rx) / 2 - PAD) / side,
        "box_side": max(box.w, box.h) / side,
        "box_centre_dx": (box.x + box.w / 2 - PAD) / side - 0.5,
        "box_centre_dy": (box.y + box.h / 2 - PAD) / side - 0.5,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=600)
    parser.add_argument("--data", help="FER2013 CSV (default: the one emotion.config finds)")
    args = parser.parse_args(argv)
    train = load_fer2013_csv(args.data or default_data(), splits=("Training",)).splits["Training"]
    chosen = np.random.default_rng(0).choice(len(train), size=min(args.faces, len(train)), replace=False)
    found = [m for m in (measure(train.images[i]) for i in chosen) if m is not None]
    print(f"faces: {len(chosen)}, found with eyes: {len(found)} ({len(found) / len(chosen):.1%})")
    for key in found[0] if found else []:
        values = np.array([m[key] for m in found])
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        print(f"{key:14s} median {median:.3f}  (quartiles {q1:.3f} - {q3:.3f})")


if __name__ == "__main__":
    main()
