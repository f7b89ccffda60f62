"""Grad-CAM on the registered model's Keras file, on a real photo."""

from __future__ import annotations

import numpy as np
import pytest

import emotion
from emotion import explain
from tests.support import keras_probabilities

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def photo_faces(photos_dir):
    image = emotion.load_image(photos_dir / "two_people.jpg")
    faces = emotion.analyze(image)
    assert len(faces) == 2
    return image, faces


@pytest.fixture(scope="module")
def model_name() -> str:
    name = emotion.default_model_name()
    info, _ = explain.explained_model(name)  # raises when the model has no Keras file
    assert info.keras_path is not None
    return name


def test_keras_and_serving_see_the_same_input(photo_faces, model_name):
    image, faces = photo_faces
    for face in faces:
        crop = explain.face_crop(image, face.box)
        keras_probs = keras_probabilities(crop, model_name)
        # The serving file on the crop Grad-CAM explains, before calibration (the Keras model has none).
        served = emotion.load(model_name).predict_faces([crop], calibrated=False)[0]
        # The served LiteRT file may have int8 (dynamic-range) weights, so the float Keras model can differ
        # a little: allow for that, and require the same class whenever one class clearly wins.
        np.testing.assert_allclose(keras_probs, served, atol=0.05)
        top_two = np.sort(served)[-2:]
        if top_two[1] - top_two[0] > 0.05:  # a clear winner must be the same class in both
            assert int(np.argmax(keras_probs)) == int(np.argmax(served))


def test_gradcam_heatmap_shape_range_and_class(photo_faces, model_name):
    image, faces = photo_faces
    crop = explain.face_crop(image, faces[0].box)
    heatmap, index = explain.gradcam(crop, model_name)
    assert heatmap.shape == crop.shape[:2]
    assert heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert heatmap.max() > 0.5  # normalised to its peak (before resizing)
    assert heatmap.std() > 0.01  # not a flat map
    labels = emotion.load(model_name).labels
    probs = keras_probabilities(crop, model_name)
    assert index == int(np.argmax(probs))
    # Asking for another class gives a different map.
    other = (index + 1) % len(labels)
    other_map, other_index = explain.gradcam(crop, model_name, other)
    assert other_index == other
    assert not np.allclose(other_map, heatmap)


def test_overlay_is_rgb_crop_sized_and_changes_pixels(photo_faces, model_name):
    image, faces = photo_faces
    for face in faces:
        crop = explain.face_crop(image, face.box)
        picture = explain.gradcam_overlay(image, face.box, model_name, face.label)
        assert picture.dtype == np.uint8
        assert picture.shape == (*crop.shape[:2], 3)
        assert np.abs(picture.astype(int) - crop.astype(int)).mean() > 5


def test_last_conv_layer_has_a_spatial_grid(model_name):
    info, _ = explain.explained_model(model_name)
    model, _ = explain._load_keras(info.keras_path)
    layer = explain.last_conv_layer(model)
    height, width = layer.output.shape[1:3]
    assert height > 1 and width > 1


def test_unknown_label_and_model_are_user_errors(photo_faces, model_name):
    image, faces = photo_faces
    with pytest.raises(explain.ExplainError):
        explain.gradcam_overlay(image, faces[0].box, model_name, "bored")
    with pytest.raises(explain.ExplainError):
        explain.explained_model("no_such_model")


def test_warm_up_loads_the_keras_model_once_in_the_explainer_process(photo_faces, model_name):
    import os

    future = explain.warm_up(model_name)
    assert explain.warm_up(model_name) is future  # one warm-up per model and server process
    assert future.result(timeout=300).startswith(f"Grad-CAM for {model_name} warm in")
    # The overlay is computed there, and is the same as one computed here.
    image, faces = photo_faces
    face = explain.face_crop(image, faces[0].box)
    index = emotion.load(model_name).labels.index(faces[0].label)
    here, _ = explain.gradcam(face, model_name, index)
    assert np.allclose(
        explain.gradcam_overlay(image, faces[0].box, model_name, faces[0].label), explain.overlay(face, here), atol=1
    )
    assert explain.explainer().submit(os.getpid).result() != os.getpid()  # TensorFlow's GIL time is not the server's


def test_warm_up_of_an_unexplainable_model_only_says_so():
    assert explain.warm_up("no-such-model").result(timeout=300) == (
        "no Grad-CAM warm-up for no-such-model: model 'no-such-model' is not registered"
    )


def test_the_explainer_process_ends_with_a_killed_server(tmp_path):
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "server.py"
    script.write_text(
        f"import os, sys\nsys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
        "from emotion import explain\n"
        "print(explain.explainer().submit(os.getpid).result(), flush=True)\nos.kill(os.getpid(), 9)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120).stdout
    child = int(out.split()[0])
    deadline = time.monotonic() + 20
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text().lower()
