"""Face detectors on real photos from ../shared/photos, and the box helpers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from emotion.detectors import DETECTORS, Box, clip_box, expand_box, get_detector
from emotion.imageio import load_image

SINGLE_FACE = [
    "obama.jpg",
    "obama2.jpg",
    "biden.jpg",
    "obama-1080p.jpg",
    "obama-240p.jpg",
    "obama_partial_face.jpg",
    "32bit.png",
]


def _center_inside(inner: Box, outer: Box) -> bool:
    cx, cy = inner.x + inner.w / 2, inner.y + inner.h / 2
    return outer.x <= cx <= outer.x + outer.w and outer.y <= cy <= outer.y + outer.h


def test_clip_and_expand():
    assert clip_box(-10, -10, 30, 30, 100, 100) == Box(0, 0, 20, 20)
    assert clip_box(200, 200, 10, 10, 100, 100) is None
    assert expand_box(Box(10, 10, 20, 20), 0.5, 100, 100) == Box(0, 0, 40, 40)
    assert expand_box(Box(90, 90, 10, 10), 0.5, 100, 100) == Box(85, 85, 15, 15)


def test_unknown_detector_lists_known():
    with pytest.raises(KeyError, match="haar"):
        get_detector("nope")


def test_blank_image_has_no_face():
    for name in DETECTORS:
        assert get_detector(name).detect(np.full((240, 320, 3), 127, np.uint8)) == []


@pytest.mark.parametrize("detector", sorted(DETECTORS))
@pytest.mark.parametrize("photo", SINGLE_FACE)
def test_single_face_portraits(photos_dir, detector, photo):
    image = load_image(photos_dir / photo)
    boxes = get_detector(detector).detect(image)
    assert boxes, f"{detector} found no face in {photo}"
    face = boxes[0]  # largest first
    height, width = image.shape[:2]
    assert face.x >= 0 and face.x + face.w <= width and face.y >= 0 and face.y + face.h <= height
    assert face.w >= 0.1 * min(width, height), "the largest box should be the portrait's face"
    # Sorted largest first.
    assert [b.area for b in boxes] == sorted((b.area for b in boxes), reverse=True)


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_two_people(photos_dir, detector):
    image = load_image(photos_dir / "two_people.jpg")
    boxes = get_detector(detector).detect(image)
    assert len(boxes) == 2, boxes
    left, right = sorted(boxes, key=lambda b: b.x)
    assert left.x + left.w < right.x, "two separate faces, side by side"


def test_partial_face_found_at_the_left_edge(photos_dir):
    image = load_image(photos_dir / "obama_partial_face.jpg")
    for name in DETECTORS:
        face = get_detector(name).detect(image)[0]
        assert face.x == 0, f"{name}: the face cut by the left edge, clipped to the image"


def test_min_face_filters_small_faces(photos_dir):
    image = load_image(photos_dir / "two_people.jpg")
    assert get_detector("haar", min_face=400).detect(image) == []


def test_exif_rotated_jpeg_box_lands_on_the_face(photos_dir, tmp_path):
    """Pixels stored rotated with an EXIF orientation tag: after loading, the face is where the
    upright photo has it."""
    upright = load_image(photos_dir / "obama.jpg")
    reference = get_detector("hog").detect(upright)[0]
    stored = np.rot90(upright, k=1)  # stored rotated 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # display: rotate 90 degrees clockwise
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(stored)).save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    loaded = load_image(buffer.getvalue(), name="rotated.jpg")
    assert loaded.shape == upright.shape
    face = get_detector("hog").detect(loaded)[0]
    assert _center_inside(face, reference) and _center_inside(reference, face)
