"""Calibration, a temperature with a per-class scale and bias (training.evaluate fits them,
emotion.registry serves them), and ECE."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from emotion.registry import softmax
from training.data import FER_SPLITS
from training.evaluate import (
    fit_temperature,
    fit_temperature_and_bias,
    fit_vector_scaling,
    nll,
    reliability,
    uncalibrate,
)


def _sampled(logits: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N,) labels drawn from softmax(logits): a perfectly calibrated model's truth."""
    probs = softmax(logits)
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(probs.shape[1], p=p / p.sum()) for p in probs])


def test_fit_temperature_recovers_an_overconfident_models_temperature():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=2.0, size=(6000, 7))
    labels = _sampled(logits)
    overconfident = softmax(logits, temperature=1 / 1.8)  # logits 1.8x too large

    temperature = fit_temperature(overconfident, labels)

    assert abs(temperature - 1.8) < 0.15
    before = reliability(overconfident, labels)["ece"]
    after = reliability(softmax(np.log(overconfident), temperature), labels)["ece"]
    assert after < 0.03 < before


def test_reliability_bins_and_ece():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    labels = np.array([0, 1, 0, 0])
    result = reliability(probs, labels, bins=10)
    assert result["count"][9] == 2 and result["count"][5] == 2 and sum(result["count"]) == 4
    assert result["accuracy"][9] == 0.5 and result["accuracy"][5] == 1.0
    assert result["confidence"][0] is None
    assert np.isclose(result["ece"], 0.5 * 0.45 + 0.5 * 0.45)


def test_uncalibrate_inverts_temperature_scaling():
    raw = softmax(np.random.default_rng(2).normal(size=(50, 7)))
    np.testing.assert_allclose(uncalibrate(softmax(np.log(raw), 1.7), 1.7), raw, atol=1e-5)
    bias = np.array([0.3, -1.0, 0.2, 0.5, 0.4, -0.1, -0.3])
    np.testing.assert_allclose(uncalibrate(softmax(np.log(raw), 1.7, bias), 1.7, bias), raw, atol=1e-5)
    scale = np.array([1.2, 0.8, 1.0, 1.1, 0.9, 1.3, 0.85])
    calibrated = softmax(np.log(raw), 1.7, bias, scale)
    np.testing.assert_allclose(uncalibrate(calibrated, 1.7, bias, scale), raw, atol=1e-5)


def test_the_class_bias_takes_back_a_prior_the_training_weights_raised():
    """A model whose answers favour one class by a constant log-odds (as class weights make them) gets
    that constant back as a negative bias, and the calibrated answers are then both more accurate and
    better calibrated than with the temperature alone."""
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(8000, 7))
    labels = _sampled(logits)
    skewed = logits.copy()
    skewed[:, 1] += 1.5  # class 1 ("disgust") raised
    log_probs = np.log(softmax(skewed, temperature=1 / 1.3))

    temperature, bias = fit_temperature_and_bias(log_probs, labels)

    assert abs(temperature - 1.3) < 0.1 and abs(bias.sum()) < 1e-6, "the bias comes centred"
    assert bias[1] - np.delete(bias, 1).mean() == pytest.approx(-1.5, abs=0.15)
    alone = softmax(log_probs, fit_temperature(np.exp(log_probs), labels))
    both = softmax(log_probs, temperature, bias)
    assert (both.argmax(1) == labels).mean() > (alone.argmax(1) == labels).mean()
    assert reliability(both, labels)["ece"] < reliability(alone, labels)["ece"]


def test_vector_scaling_recovers_a_class_the_model_is_overconfident_about():
    """One class's log-probability twice too sharp (one temperature cannot say so): the fitted scale
    softens that class alone, its geometric mean stays 1 and the bias centred, and its held-out NLL beats
    the temperature and bias alone (top-label ECE need not follow on such data: it is measured on FER2013,
    docs/RESULTS.md section 15)."""
    rng = np.random.default_rng(4)
    log_probs = np.log(softmax(rng.normal(scale=2.0, size=(16000, 7))))
    truth_scale = np.ones(7)
    truth_scale[3] = 0.5  # the model's class 3 ("happy") twice too sharp
    labels = _sampled(log_probs * truth_scale)
    fit, held_out = slice(0, 8000), slice(8000, None)

    temperature, bias, scale = fit_vector_scaling(log_probs[fit], labels[fit])

    assert abs(np.log(scale).mean()) < 1e-6 and abs(bias.sum()) < 1e-6
    assert scale[3] / np.delete(scale, 3).mean() == pytest.approx(0.5, abs=0.08)
    plain_t, plain_b = fit_temperature_and_bias(log_probs[fit], labels[fit])
    vector = softmax(log_probs[held_out], temperature, bias, scale)
    plain = softmax(log_probs[held_out], plain_t, plain_b)
    assert nll(np.log(vector), labels[held_out], 1.0) < nll(np.log(plain), labels[held_out], 1.0)


def _tiny_model_and_fer_csv(tmp_path, monkeypatch, per_split: int) -> tuple[Path, Path, list]:
    """A tiny registered model (the models folder pointed at it) and a FER2013-style CSV of random faces,
    `per_split` in each split: (model folder, CSV path, rows)."""
    from emotion import config, registry
    from tests.support import csv_bytes_for_tests
    from tests.test_comparison import write_tiny_tflite

    rng = np.random.default_rng(0)
    rows = [(int(i % 7), rng.integers(0, 256, (48, 48)), usage) for usage in FER_SPLITS for i in range(per_split)]
    csv_path = tmp_path / "fer2013.csv"
    csv_path.write_bytes(csv_bytes_for_tests(rows))
    folder = write_tiny_tflite(tmp_path / "models" / "tiny")
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "models")
    registry.clear_cache()
    return folder, csv_path, rows


@pytest.mark.slow
@pytest.mark.parametrize("better", ["flip", "crops"])
def test_the_served_tta_is_chosen_on_detected_faces_when_any_are_found(tmp_path, monkeypatch, better):
    """The app classifies detected faces: when PublicTest faces are found in scenes, their accuracy per
    TTA mode chooses the served mode, whatever the registered crops say, and is reported beside it."""
    from emotion import registry
    from training import evaluate as evaluation

    folder, csv_path, _ = _tiny_model_and_fer_csv(tmp_path, monkeypatch, per_split=14)
    pipeline = {"flip": 0.4, "crops": 0.4} | {better: 0.6}
    monkeypatch.setattr(evaluation, "_pipeline_accuracies", lambda model, detected, calibrations: dict(pipeline))

    report = evaluation.evaluate("tiny", data=str(csv_path))

    assert report["tta_mode"] == better == json.loads((folder / "manifest.json").read_text())["tta_mode"]
    assert report["tta_chosen_on"] == "PublicTest faces detected in scenes"
    assert {m: v["public_pipeline_accuracy"] for m, v in report["tta_modes"].items()} == pipeline
    registry.clear_cache()


@pytest.mark.slow
def test_evaluate_writes_temperature_tta_choice_and_predictions(tmp_path, monkeypatch):
    """evaluate fits the temperature and TTA mode on PublicTest, writes them to the manifest, saves
    the served PrivateTest probabilities, and the registry then serves those calibrated probabilities."""
    from emotion import registry
    from training.evaluate import PENDING_INT8_FILE, PREDICTIONS_FILE, evaluate

    folder, csv_path, rows = _tiny_model_and_fer_csv(tmp_path, monkeypatch, per_split=21)
    # training.export --serve ran before this first evaluation: its int8 figures wait beside the file
    (folder / PENDING_INT8_FILE).write_text(json.dumps({"accuracy_int8": 0.5, "served": True}))

    report = evaluate("tiny", data=str(csv_path))
    assert json.loads((folder / "metrics.json").read_text())["int8"] == {"accuracy_int8": 0.5, "served": True}
    assert not (folder / PENDING_INT8_FILE).exists()

    manifest = json.loads((folder / "manifest.json").read_text())
    calibration = report["calibration"]
    assert manifest["temperature"] == pytest.approx(calibration["temperature"], abs=1e-4)
    assert manifest["tta_temperature"] == pytest.approx(calibration["tta_temperature"], abs=1e-4)
    assert (
        manifest["class_bias"] == pytest.approx(calibration["class_bias"], abs=1e-4)
        and len(manifest["class_bias"]) == 7
    )
    assert manifest["tta_class_bias"] == pytest.approx(calibration["tta_class_bias"], abs=1e-4)
    assert manifest["tta_mode"] == report["tta_mode"] in ("flip", "crops")
    assert report["tta_chosen_on"] == "PublicTest crops"  # random faces: none found in the scenes
    assert set(report["tta_modes"]) == {"flip", "crops"} and report["tta_modes"]["crops"]["latency_ms_per_face"] > 0
    assert sum(calibration["reliability_after"]["count"]) == report["n"] == 21
    saved = np.load(folder / PREDICTIONS_FILE)
    assert saved["probs"].shape == (21, 7) and saved["probs"].dtype == np.float16
    registry.clear_cache()
    served = registry.load("tiny").predict_faces([row[1].astype(np.uint8) for row in rows[-21:]])
    np.testing.assert_allclose(served, saved["probs"].astype(np.float32), atol=2e-3)
    raw = registry.load("tiny").predict_faces([rows[-1][1].astype(np.uint8)], calibrated=False)
    calibration = (manifest["temperature"], manifest["class_bias"], manifest["class_scale"])
    assert len(manifest["class_scale"]) == 7 and len(manifest["tta_class_scale"]) == 7
    calibrated = softmax(np.log(raw), *calibration)[0]
    np.testing.assert_allclose(served[-1], calibrated, atol=1e-3)
    # TTA: the views' calibrated mean, rescaled by the second calibration
    model = registry.load("tiny")
    crop = [rows[-1][1].astype(np.uint8)]
    mean = model.predict_faces(crop, tta=True, calibrated=True)
    untuned = dataclasses.replace(model.info, tta_temperature=1.0, tta_class_bias=(), tta_class_scale=())
    views = registry.EmotionModel(untuned).predict_faces(crop, tta=True)
    expected = softmax(np.log(views), *(manifest[f"tta_{k}"] for k in ("temperature", "class_bias", "class_scale")))
    np.testing.assert_allclose(mean, expected, atol=1e-4)
    registry.clear_cache()


@pytest.mark.slow
def test_evaluate_calibrates_a_committee_over_calibrated_members(tmp_path, monkeypatch):
    from emotion import config, registry
    from tests.support import csv_bytes_for_tests
    from tests.test_comparison import write_tiny_tflite
    from training.committee import register_committee
    from training.evaluate import main

    rng = np.random.default_rng(1)
    rows = [(int(i % 7), rng.integers(0, 256, (48, 48)), usage) for usage in FER_SPLITS for i in range(14)]
    csv_path = tmp_path / "fer2013.csv"
    csv_path.write_bytes(csv_bytes_for_tests(rows))
    for name in ("one", "two"):
        write_tiny_tflite(tmp_path / "models" / name)
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "models")
    registry.clear_cache()
    main(["--model", "one", "two", "--data", str(csv_path)])
    register_committee("team", ["one", "two"], models_dir=tmp_path / "models")

    main(["--model", "team", "--data", str(csv_path)])

    metrics = json.loads((tmp_path / "models" / "team" / "metrics.json").read_text())
    manifest = json.loads((tmp_path / "models" / "team" / "manifest.json").read_text())
    assert metrics["tta_mode"] == manifest["tta_mode"] in ("flip", "crops")
    assert manifest["temperature"] == pytest.approx(metrics["calibration"]["temperature"], abs=1e-4)
    assert manifest["class_bias"] == pytest.approx(metrics["calibration"]["class_bias"], abs=1e-4)
    assert (tmp_path / "models" / "team" / "predictions_privatetest.npz").is_file()
    registry.clear_cache()
