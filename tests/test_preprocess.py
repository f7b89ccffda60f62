"""The shared preprocessing: shapes, ranges, colour conversions, and that training uses it."""

from __future__ import annotations

import inspect

import cv2
import numpy as np
import pytest

from emotion.preprocess import composite_on_white, preprocess_batch, preprocess_face, to_gray


@pytest.mark.parametrize("shape", [(48, 48), (100, 80), (30, 30, 1), (64, 64, 3), (200, 150, 4)])
def test_any_crop_becomes_model_input(shape):
    crop = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = preprocess_face(crop)
    assert out.shape == (48, 48, 1)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_values_scale_to_unit_range_and_contrast_is_equalised():
    low_contrast = np.random.default_rng(1).integers(100, 140, (48, 48), dtype=np.uint8)
    out = preprocess_face(low_contrast)
    assert out.min() == pytest.approx(0.0, abs=0.05) and out.max() == 1.0
    assert out.std() > 0.25  # stretched to the spread of FER2013's equalised faces (std ~74/255)


def test_equalised_fer_style_faces_pass_almost_unchanged():
    """FER2013's faces are equalised already: preprocessing keeps them within a few grey levels."""
    face = cv2.equalizeHist(
        cv2.GaussianBlur(np.random.default_rng(2).integers(0, 256, (48, 48), dtype=np.uint8), (5, 5), 0)
    )
    assert np.abs(preprocess_face(face)[:, :, 0] * 255 - face).mean() < 3.0


def test_rgb_is_read_in_rgb_order():
    image = np.zeros((48, 48, 3), np.uint8)
    image[:, :24, 0] = 255  # red left half, blue right half
    image[:, 24:, 2] = 255
    grey = preprocess_face(image)[:, :, 0]
    assert grey[:, :24].mean() > grey[:, 24:].mean()  # red is brighter than blue in luma: RGB, not BGR


def test_transparent_rgba_is_white_not_black():
    rgba = np.zeros((10, 10, 4), np.uint8)  # fully transparent black
    assert composite_on_white(rgba).min() == 255
    assert to_gray(rgba).min() == 255


def test_three_channel_models_get_rgb():
    grey = np.full((20, 20), 128, np.uint8)
    out = preprocess_face(grey, input_size=(32, 32), channels=3)
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out[..., 0], out[..., 2])


def test_rejects_bad_input():
    with pytest.raises(TypeError):
        preprocess_face(np.zeros((48, 48), np.float32))
    with pytest.raises(ValueError):
        preprocess_face(np.zeros((0, 10), np.uint8))
    with pytest.raises(ValueError):
        preprocess_face(np.zeros((4, 4), np.uint8), channels=2)


def test_batch_stacks_and_handles_empty():
    crops = [np.zeros((30, 30), np.uint8), np.zeros((60, 40, 3), np.uint8)]
    assert preprocess_batch(crops).shape == (2, 48, 48, 1)
    assert preprocess_batch([]).shape == (0, 48, 48, 1)


def test_training_and_inference_call_the_same_function():
    """Training's input builder and the registry's preprocessing are both preprocess_batch,
    which is preprocess_face per crop: one function, no copy."""
    import emotion.registry as registry
    import training.data as data

    assert data.preprocess_batch is preprocess_batch
    assert registry.preprocess_batch is preprocess_batch
    assert "preprocess_face" in inspect.getsource(preprocess_batch)
    images = [np.random.default_rng(2).integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(3)]
    split = data.Split(images, np.zeros(3, np.int64), ["a", "b", "c"])
    np.testing.assert_array_equal(data.to_inputs(split, (48, 48), 1), np.stack([preprocess_face(i) for i in images]))


def test_equalisation_follows_the_model_manifest():
    """A model trained without equalisation is served without it (preprocessing travels with the model)."""
    from emotion.registry import list_models, load

    low_contrast = np.random.default_rng(3).integers(100, 140, (48, 48), dtype=np.uint8)
    for info in list_models():
        if info.kind != "single":
            continue
        served = load(info.name).preprocess([low_contrast])[0]
        np.testing.assert_array_equal(
            served, preprocess_face(low_contrast, info.input_size, info.channels, info.equalize)
        )
    assert not np.array_equal(preprocess_face(low_contrast, equalize=False), preprocess_face(low_contrast))


def test_aligned_crop_levels_the_eyes_and_frames_them_as_fer2013():
    from emotion.preprocess import FER_EYE_DISTANCE, FER_EYE_Y, aligned_crop

    image = np.zeros((240, 240, 3), np.uint8)
    left, right = (90, 100), (140, 130)  # a face tilted by about 31 degrees
    cv2.circle(image, left, 3, (255, 0, 0), -1)  # each eye in its own channel
    cv2.circle(image, right, 3, (0, 255, 0), -1)

    out = aligned_crop(image, (left, right))

    gap = float(np.hypot(50, 30))
    assert out.shape == (round(gap / FER_EYE_DISTANCE),) * 2 + (3,)
    left_at, right_at = (np.argwhere(out[:, :, c] > 128).mean(axis=0) for c in (0, 1))
    assert abs(left_at[0] - right_at[0]) < 1.0  # eyes level (rows)
    assert abs((left_at[0] + right_at[0]) / 2 - FER_EYE_Y * out.shape[0]) < 1.5
    assert abs((left_at[1] + right_at[1]) / 2 - out.shape[1] / 2) < 1.5
    assert abs(abs(right_at[1] - left_at[1]) - gap) < 1.5


def test_ten_crops_are_five_views_and_their_mirrors():
    from emotion.preprocess import ten_crops

    inputs = np.random.default_rng(0).random((3, 48, 48, 1), dtype=np.float32)
    views = ten_crops(inputs)
    assert views.shape == (10, 3, 48, 48, 1) and views.dtype == np.float32
    np.testing.assert_array_equal(views[5:], views[:5, :, :, ::-1])
    assert not np.allclose(views[0], views[3])  # top-left and bottom-right corners differ


def test_aligned_crop_framed_by_the_box_centres_the_face_below_it():
    from emotion.preprocess import FER_BOX_DROP, FER_BOX_SIDE, aligned_crop

    image = np.zeros((300, 300, 3), np.uint8)
    cv2.circle(image, (150, 150 + round(FER_BOX_DROP * 100 / FER_BOX_SIDE)), 3, (255, 0, 0), -1)  # the face centre
    out = aligned_crop(image, ((120.0, 140.0), (180.0, 140.0)), box=(100, 100, 100, 100))  # eyes level
    assert out.shape[:2] == (round(100 / FER_BOX_SIDE),) * 2
    centre = np.argwhere(out[:, :, 0] > 128).mean(axis=0)
    np.testing.assert_allclose(centre, [out.shape[0] / 2 - 0.5] * 2, atol=1.0)
