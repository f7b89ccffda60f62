"""analyze / annotate / the registry with the shipped models."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from emotion import analyze, annotate, list_models, load, load_image
from emotion.labels import color_for, valence_arousal
from emotion.registry import ModelNotFoundError, default_model_name


def test_every_registered_model_loads_and_predicts_probabilities():
    models = list_models()
    assert models, "models/ must ship at least one model"
    for info in models:
        model = load(info.name)
        probs = model.predict_faces([np.full((60, 50, 3), 128, np.uint8)], tta=True)
        assert probs.shape == (1, len(info.labels))
        assert probs.sum() == pytest.approx(1.0, abs=1e-3)


def test_load_is_cached_and_unknown_names_explain(tmp_path):
    assert load() is load(default_model_name())
    with pytest.raises(ModelNotFoundError, match="registered"):
        load("does_not_exist")


def test_analyze_two_people(photos_dir):
    image = load_image(photos_dir / "two_people.jpg")
    faces = analyze(image)
    assert len(faces) == 2
    for face in faces:
        assert face.label == max(face.scores, key=face.scores.get)
        assert {"detect_ms", "classify_ms"} <= set(face.timings)
        record = face.to_dict()
        json.dumps(record)
        assert -1 <= record["valence"] <= 1 and -1 <= record["arousal"] <= 1


def test_no_detect_is_one_face_over_the_whole_image():
    faces = analyze(np.zeros((48, 48), np.uint8), detect=False)
    assert len(faces) == 1 and faces[0].box.as_list() == [0, 0, 48, 48]


def test_annotate_draws_in_the_label_colour_without_touching_the_input(photos_dir):
    image = load_image(photos_dir / "obama.jpg")
    faces = analyze(image)
    before = image.copy()
    drawn = annotate(image, faces)
    np.testing.assert_array_equal(image, before)
    assert drawn.shape == image.shape
    box = faces[0].box
    edge = drawn[box.y + box.h // 2, box.x]  # a pixel on the left edge of the box
    assert tuple(int(v) for v in edge) == color_for(faces[0].label)


def test_valence_arousal_is_the_weighted_mean():
    assert valence_arousal({"happy": 1.0}) == pytest.approx((0.81, 0.51))
    v, a = valence_arousal({"happy": 0.5, "sad": 0.5})
    assert v == pytest.approx((0.81 - 0.63) / 2) and a == pytest.approx((0.51 - 0.27) / 2)


def test_model_is_safe_to_share_between_threads():
    model = load()
    faces = [np.random.default_rng(i).integers(0, 255, (48, 48), dtype=np.uint8) for i in range(4)]
    expected = model.predict_faces(faces)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for _ in range(50):
                i = seed % 4
                np.testing.assert_allclose(model.predict_faces([faces[i]]), expected[i : i + 1], atol=1e-5)
        except BaseException as error:  # collected and re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.slow
def test_tensorflow_and_the_webrtc_stack_share_a_process():
    """Importing TensorFlow before pylibsrtp (aiortc) segfaults unless emotion loads it first."""
    import subprocess
    import sys

    code = "import emotion, tensorflow, aiortc, streamlit_webrtc; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


@pytest.mark.shared
def test_blazeface_eyes_let_analyze_rotate_a_tilted_face_upright(photos_dir):
    """A photo turned by 20 degrees: BlazeFace gives the eyes, and the aligned crop has them level."""
    import cv2

    from emotion.detectors import get_detector
    from emotion.pipeline import face_crop

    image = load_image(photos_dir / "obama.jpg")
    height, width = image.shape[:2]
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((width / 2, height / 2), 20, 1.0), (width, height))
    box = get_detector("blazeface").detect(turned)[0]
    (lx, ly), (rx, ry) = box.eyes
    assert 12 < abs(np.degrees(np.arctan2(ry - ly, rx - lx))) < 28  # the detector sees the tilt

    upright = get_detector("blazeface").detect(face_crop(turned, box, align=True))
    assert upright and upright[0].eyes is not None
    (lx, ly), (rx, ry) = upright[0].eyes
    assert abs(np.degrees(np.arctan2(ry - ly, rx - lx))) < 6
    assert analyze(turned, align=True)[0].label in load().labels
