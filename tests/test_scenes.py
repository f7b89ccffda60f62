"""training.scenes: FER2013 faces placed in generated scenes and found again by the app's detector."""

from __future__ import annotations

import numpy as np
import pytest

from training import scenes


def test_a_face_is_placed_whole_inside_its_scene_the_same_way_for_a_seed():
    face = np.random.default_rng(1).integers(0, 256, (48, 48), dtype=np.uint8)
    first, (cx, cy, side, _) = scenes.place(face, 20.0, np.random.default_rng(7))
    again, (*placed, _) = scenes.place(face, 20.0, np.random.default_rng(7))
    assert first.shape == (scenes.SCENE, scenes.SCENE, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert tuple(placed) == (cx, cy, side) and 72 <= side <= 160
    half = side * 1.5 / 2  # the rotated square's room
    assert half <= cx <= scenes.SCENE - half + 1 and half <= cy <= scenes.SCENE - half + 1


@pytest.mark.parametrize("angle", [0.0, 20.0, -25.0])
def test_the_placed_crop_gives_the_face_back_upright_at_its_place(angle):
    """With no detector, the face cut where it was placed and turned back by its tilt is the face
    (up to resampling and the soft mask at its corners): it matches the face far better than it
    matches the face mirrored."""
    import cv2

    face = np.zeros((48, 48), np.uint8)
    face[8:20, 6:20] = 255  # a bright patch top left: any turn or mirror moves it
    face[30:40, 20:44] = 160
    scene, placement = scenes.place(face, angle, np.random.default_rng(3))
    crop = scenes.placed_crop(scene, placement)
    assert crop.shape == (round(placement.side), round(placement.side), 3)
    back = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (48, 48), interpolation=cv2.INTER_AREA)
    centre = (slice(6, 42), slice(6, 42))  # inside the mask's soft edge
    error = np.abs(back[centre].astype(float) - face[centre]).mean()
    mirrored = np.abs(back[centre].astype(float) - face[:, ::-1][centre]).mean()
    assert error < 12 < mirrored


def test_a_scene_without_a_face_gives_no_crop():
    """A flat patch is no face: nothing is detected, nothing cropped, and no label is kept for it."""
    flat = [np.full((48, 48), 128, np.uint8)] * 3
    crops, labels = scenes.pipeline_crops(flat, np.array([0, 1, 2]), angles=(0.0,))
    assert crops == [] and labels.shape == (0,)


def test_faces_of_another_shape_are_left_out():
    """The scenes are made for FER2013's 48x48 grey faces; a colour photo is not placed."""
    colour = [np.zeros((64, 64, 3), np.uint8)]
    crops, labels = scenes.pipeline_crops(colour, np.array([3]), angles=(0.0,))
    assert crops == [] and len(labels) == 0


def test_scene_views_give_one_entry_per_face_and_none_where_nothing_was_found():
    faces = [np.full((48, 48), 128, np.uint8), np.zeros((64, 64, 3), np.uint8)]
    assert scenes.scene_views(faces, seed=0) == [None, None]


@pytest.mark.shared
@pytest.mark.slow
def test_most_fer2013_faces_are_found_and_cropped_with_their_labels(fer2013_csv):
    from training.data import load_fer2013_csv

    public = load_fer2013_csv(fer2013_csv, splits=("PublicTest",)).splits["PublicTest"]
    faces, labels = public.images[:40], public.labels[:40]
    crops, truth = scenes.pipeline_crops(faces, labels, angles=(0.0, 20.0))
    assert 0.5 * 80 <= len(crops) == len(truth) <= 80  # about 70% found (docs/RESULTS.md section 4)
    assert all(c.ndim == 3 and c.shape[0] == c.shape[1] >= 24 for c in crops)
    assert set(truth.tolist()) <= set(labels.tolist())


@pytest.mark.shared
@pytest.mark.slow
def test_scene_views_are_the_apps_crops_of_most_faces_the_same_for_a_seed(fer2013_csv):
    """Training's scene views: each face once, at a random tilt, cut as the app cuts a detected face."""
    from training.data import load_fer2013_csv

    faces = load_fer2013_csv(fer2013_csv, splits=("PublicTest",)).splits["PublicTest"].images[:40]
    views = scenes.scene_views(faces, seed=5)
    found = [v for v in views if v is not None]
    assert len(views) == 40 and len(found) >= 20  # about 70% found (docs/RESULTS.md section 4)
    assert all(v.ndim == 3 and v.shape[0] == v.shape[1] >= 24 and v.dtype == np.uint8 for v in found)
    again = scenes.scene_views(faces, seed=5)
    assert all((a is None and b is None) or np.array_equal(a, b) for a, b in zip(views, again, strict=True))
