"""Face detectors on real photos from ../shared/photos, and the box helpers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from emotion.detectors import DETECTORS, Box, _blazeface_anchors, _weighted_nms, clip_box, expand_box, get_detector
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


def test_blazeface_anchor_layout():
    """MediaPipe's SSD layout: 896 anchors for the 128 px short-range model, 2304 for the 192 px full-range one."""
    short = _blazeface_anchors(128, (8, 16), (2, 6))
    full = _blazeface_anchors(192, (4,), (1,))
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    assert np.allclose(short[0], [0.5 / 16, 0.5 / 16]) and np.allclose(full[-1], [47.5 / 48, 47.5 / 48])
    assert short.min() > 0 and short.max() < 1


def test_weighted_nms_merges_overlaps_and_keeps_separate_boxes():
    corners = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.6, 0.8], np.float32)
    merged = _weighted_nms(corners, scores, 0.3)
    assert len(merged) == 2
    assert np.allclose(merged[0][0], [0.4, 0.4, 10.4, 10.4])  # score-weighted mean of the first two
    assert np.allclose(merged[1][0], [50, 50, 60, 60])
    assert [round(score, 2) for _, score in merged] == [0.9, 0.8]  # each cluster scored by its best box


def test_blazeface_finds_both_small_faces(photos_dir):
    """obama_and_biden.jpg: two faces about a tenth of the 2000 px width; Haar and BlazeFace find both."""
    image = load_image(photos_dir / "obama_and_biden.jpg")
    for name in ("blazeface", "haar"):
        boxes = get_detector(name).detect(image)
        assert len(boxes) == 2, (name, boxes)
        if name == "blazeface":  # BlazeFace scores its boxes (a video track's confidence); Haar does not
            assert all(0.5 < b.score <= 1 for b in boxes)


def test_detectors_frame_the_same_part_of_the_face(photos_dir):
    """Every detector's box frames the face alike (the crop margin was tuned on one convention)."""
    image = load_image(photos_dir / "obama.jpg")
    reference = get_detector("haar").detect(image)[0]
    for name in DETECTORS:
        box = get_detector(name).detect(image)[0]
        assert 0.8 < box.w / reference.w < 1.25, (name, box, reference)
        assert abs((box.y + box.h / 2) - (reference.y + reference.h / 2)) < 0.15 * reference.h, (name, box)


def test_blazeface_min_face_and_pad(photos_dir):
    image = load_image(photos_dir / "two_people.jpg")
    assert get_detector("blazeface", min_face=400).detect(image) == []
    plain = get_detector("blazeface").detect(image)
    padded = get_detector("blazeface", pad=0.1).detect(image)
    assert len(plain) == len(padded) == 2
    for a, b in zip(plain, padded, strict=True):
        assert abs(a.x - b.x) < 0.1 * a.w and abs(a.y - b.y) < 0.1 * a.h


@pytest.mark.parametrize("name", ["blazeface", "haar", "hog"])
def test_degenerate_shapes_find_no_face_and_never_fail(name: str) -> None:
    """Strips, 1x1 and empty images, and minimum faces larger than the image, with every detector:
    an empty list, never an OpenCV or dlib error."""
    rng = np.random.default_rng(0)
    shapes = [(20, 20000), (20000, 20), (1, 1), (2, 3), (1, 5000), (5000, 1), (30, 30), (0, 5), (5, 0)]
    for min_face in (12, 24, 400, 5000):
        detector = get_detector(name, min_face=min_face)
        for height, width in shapes:
            for channels in (None, 3, 4):
                shape = (height, width) if channels is None else (height, width, channels)
                image = rng.integers(0, 256, shape, dtype=np.uint8)
                assert detector.detect(image) == [], (name, min_face, shape)
