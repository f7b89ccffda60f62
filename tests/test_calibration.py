"""Temperature calibration (training.evaluate fits it, emotion.registry serves it) and ECE."""

from __future__ import annotations

import numpy as np

from emotion.registry import softmax
from training.evaluate import fit_temperature, reliability, uncalibrate


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
