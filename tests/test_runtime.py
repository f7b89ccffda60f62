"""emotion.runtime: the LiteRT runner on a shipped model file."""

import numpy as np
import pytest

from emotion import runtime
from emotion.config import MODELS_DIR


def test_large_batches_run_in_chunks_with_the_same_answers():
    """A batch over MAX_BATCH gives the rows batch-1 calls give, and the interpreter never grows
    past MAX_BATCH (its arena would stay that large while the model is cached)."""
    runner = runtime.TFLiteRunner(MODELS_DIR / "vgg" / "model.tflite")
    rng = np.random.default_rng(0)
    faces = rng.normal(size=(runtime.MAX_BATCH + 37, *runner.input_shape)).astype(np.float32)

    probs = runner.predict(faces)

    assert probs.shape == (len(faces), 7)
    assert runner._batch <= runtime.MAX_BATCH
    for i in (0, runtime.MAX_BATCH - 1, runtime.MAX_BATCH, len(faces) - 1):
        np.testing.assert_allclose(probs[i], runner.predict(faces[i : i + 1])[0], atol=1e-5)
    assert runner.predict(faces[:0]).shape == (0, 7)


def test_more_threads_give_the_same_answers():
    """training.evaluate scores splits on every core (SCORING_THREADS) and the app serves with
    config.serve_threads() (EMOTION_SERVE_THREADS may say one): every shipped file must answer alike,
    bit for bit, at batch 1 and in a scoring batch."""
    files = sorted(MODELS_DIR.glob("*/model.tflite"))
    assert files, "no shipped model file"
    for path in files:
        one, two = runtime.TFLiteRunner(path, num_threads=1), runtime.TFLiteRunner(path, num_threads=2)
        batch = np.random.default_rng(1).random((33, *one.input_shape), dtype=np.float32)
        for rows in (slice(0, 1), slice(1, 33)):
            np.testing.assert_array_equal(one.predict(batch[rows]), two.predict(batch[rows]), err_msg=str(path))


def test_quantized_tensors_round_trip_with_the_files_scale_and_zero_point():
    detail = {"dtype": np.int8, "quantization": (1 / 255, -128)}
    x = np.array([[0.0, 0.4, 1.0, 2.0, -1.0]], np.float32)
    q = runtime._quantize(x, detail)
    assert q.dtype == np.int8 and q.tolist() == [[-128, -26, 127, 127, -128]]  # clipped to int8
    np.testing.assert_allclose(runtime._dequantize(q, detail)[0, :3], [0.0, 102 / 255, 1.0], atol=1e-6)
    floats = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert runtime._quantize(x, floats) is x


@pytest.mark.slow
def test_full_integer_file_serves_softmax_probabilities(tmp_path):
    """A tiny net exported with int8 activations and weights (logits out): the runtime quantizes its
    input, and the registry's softmax of its dequantized logits matches Keras within int8 rounding."""
    import json

    import keras

    from emotion.registry import clear_cache, load, softmax
    from training.export import logits_model, to_tflite

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    net = keras.Model(inputs, keras.layers.Dense(7, activation="softmax", name="probabilities")(x))
    rng = np.random.default_rng(0)
    faces = rng.random((64, 48, 48, 1), dtype=np.float32)
    folder = tmp_path / "tiny8"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(to_tflite(logits_model(net), "int8", faces))
    labels = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    manifest = {"name": "tiny8", "labels": labels, "serving_output": "logits", "equalize": False}
    (folder / "manifest.json").write_text(json.dumps(manifest))

    model = load("tiny8", models_dir=tmp_path)
    assert model._runner.quantized
    probs = model.predict_inputs(faces[:8])

    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, np.asarray(net(faces[:8])), atol=0.03)
    # Calibrated as fitted (training.evaluate): on the log of that softmax, the per-class scale included.
    calibration = (0.8, [0.2, -0.5, 0.1, 0.3, 0.0, -0.1, 0.0], [1.3, 0.7, 1.0, 1.1, 0.9, 1.2, 0.8])
    manifest |= dict(zip(("temperature", "class_bias", "class_scale"), calibration, strict=True))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    clear_cache()
    calibrated = load("tiny8", models_dir=tmp_path).predict_inputs(faces[:8])
    np.testing.assert_allclose(calibrated, softmax(np.log(probs), *calibration), atol=1e-5)
    clear_cache()


def test_a_runner_serves_with_the_configured_threads(monkeypatch):
    """Without num_threads a runner (the models' and the detector's) takes config.serve_threads()."""
    path = MODELS_DIR / "vgg" / "model.tflite"
    monkeypatch.setenv("EMOTION_SERVE_THREADS", "1")
    assert runtime.TFLiteRunner(path).num_threads == 1
    monkeypatch.setenv("EMOTION_SERVE_THREADS", "2")
    assert runtime.TFLiteRunner(path).num_threads == 2
    assert runtime.TFLiteRunner(path, num_threads=1).num_threads == 1
