"""Pipeline-level benchmark: FER2013 faces placed into larger generated images, through detect,
align, crop and classify, against the same model on the faces' own crops.

    python scripts/benchmark_pipeline.py [--model NAME] [--split PrivateTest] [--faces 500]
                                         [--angles 0 5 10 15 20 25] [--detector blazeface] [--tta [flip|crops]]

Each face (48 px) is enlarged to 72-160 px, rotated by +-angle (random sign), softened at its
edge by an elliptical mask and pasted at a random place of a 320x320 scene whose background is
drawn at random (flat grey, gradient, blurred noise or random rectangles): training.scenes, which
training.evaluate also uses to choose the served TTA. Scenes are made at run time from a fixed seed;
nothing is written. A detection counts when its centre falls within 40%
of the face's size of the placed centre. Printed per angle: detection rate; accuracy on the
detected faces with the box crop (margin 0.1, no rotation), the FER-framed box crop (no rotation),
the aligned crop framed by the eyes and the aligned crop framed by the box (what analyze serves;
emotion.preprocess.aligned_crop); the crop-level accuracy of the same detected faces; the face cut
where it was placed, upright, with no detector (training.scenes.placed_crop: what the scene itself
costs); and the cost (crop level minus pipeline) of the box crop, of the served aligned crop, and of
the scene alone (crop level minus the placed crop). --tta classifies every
crop, the faces' own included, with the model's served test-time augmentation (what the Photo page and
the webcam give by default); --tta flip or --tta crops with that mode. Choose on PublicTest
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

from emotion.detectors import Box, crop, expand_box, get_detector
from emotion.pipeline import face_crop
from emotion.preprocess import FER_BOX_DROP, FER_BOX_SIDE, aligned_crop
from emotion.registry import load
from training.data import load_fer2013_csv
from training.evaluate import default_data
from training.scenes import detections, placed_crop


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
    parser.add_argument(
        "--tta", nargs="?", const="served", choices=("served", "flip", "crops"),
        help="every crop with test-time augmentation: the model's served mode (as the app), or flip or crops",
    )  # fmt: skip
    args = parser.parse_args(argv)
    tta = {None: False, "served": True}.get(args.tta, args.tta)
    model = load(args.model)
    split = load_fer2013_csv(args.data or default_data(), splits=(args.split,)).splits[args.split]
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(split), size=min(args.faces, len(split)), replace=False))
    faces, labels = [split.images[i] for i in chosen], split.labels[chosen]
    crop_level = model.predict_faces(faces, tta=tta).argmax(axis=1) == labels
    detector = get_detector(args.detector, min_face=24)
    served = f", {model.tta_mode if tta is True else tta} TTA" if tta else ", no TTA"
    print(f"model {model.name}{served}, detector {args.detector}, {len(faces)} {args.split} faces; crop-level accuracy "
          f"{crop_level.mean():.1%}")  # fmt: skip
    header = (
        "angle | detected | crop level (detected) | box crop | FER-framed box | aligned, eye framing"
        " | aligned, box framing | placed, no detector | cost box | cost aligned | cost of the scene"
    )
    print(header + " | ms per scene")
    for angle in args.angles:
        found, crops = [], {"box": [], "fer": [], "eyes": [], "aligned": [], "placed": []}
        started = time.perf_counter()
        for scene, box, placement in detections(faces, angle, detector, rng):
            found.append(box is not None)
            if box is not None:
                crops["placed"].append(placed_crop(scene, placement))
                crops["box"].append(face_crop(scene, box, align=False))
                crops["fer"].append(fer_framed_crop(scene, box))
                crops["eyes"].append(aligned_crop(scene, box.eyes) if box.eyes else face_crop(scene, box, align=False))
                crops["aligned"].append(face_crop(scene, box, align=True))
        per_scene = (time.perf_counter() - started) * 1000 / len(faces)
        hit = np.array(found)
        truth = labels[hit]
        acc = {k: float((model.predict_faces(v, tta=tta).argmax(axis=1) == truth).mean()) if v else float("nan")
               for k, v in crops.items()}  # fmt: skip
        base = float(crop_level[hit].mean()) if hit.any() else float("nan")
        print(
            f"{angle:g} | {hit.mean():.1%} | {base:.1%} | {acc['box']:.1%} | {acc['fer']:.1%} | {acc['eyes']:.1%}"
            f" | {acc['aligned']:.1%} | {acc['placed']:.1%} | {100 * (base - acc['box']):+.1f}"
            f" | {100 * (base - acc['aligned']):+.1f} | {100 * (base - acc['placed']):+.1f} | {per_scene:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
