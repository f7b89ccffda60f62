"""scripts/prior_correction.py: the per-class bias fit, on synthetic answers with a known distortion."""

from __future__ import annotations

import numpy as np

from emotion.registry import softmax
from tests.script_support import load_script

prior_correction = load_script("prior_correction")


def _distorted_answers(bias: np.ndarray, n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) log-probabilities of a net whose answers carry `bias` on top of the true class odds, and
    (N,) labels drawn from those true odds."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 2.0, (n, len(bias)))
    labels = np.array([rng.choice(len(bias), p=p) for p in softmax(true_logits)])
    return np.log(softmax(true_logits + bias)), labels


def test_the_fit_takes_back_a_known_class_bias():
    distortion = np.array([0.0, 1.0, -0.5, 0.0, 0.0, 0.5, -1.0])
    log_probs, labels = _distorted_answers(distortion)
    temperature, bias = prior_correction.fit_temperature_and_bias(log_probs, labels)
    assert abs(temperature - 1.0) < 0.1
    recovered = bias - bias.mean()
    np.testing.assert_allclose(recovered, -(distortion - distortion.mean()), atol=0.15)
    plain = (log_probs.argmax(axis=1) == labels).mean()
    corrected = (softmax(log_probs, temperature, bias).argmax(axis=1) == labels).mean()
    assert corrected > plain


def test_cross_fitting_scores_each_half_with_a_bias_fitted_on_the_other():
    log_probs, labels = _distorted_answers(np.array([0.0, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0]), n=2000, seed=1)
    cross = prior_correction.cross_fitted_accuracy(log_probs, labels)
    plain = (log_probs.argmax(axis=1) == labels).mean()
    assert plain < cross <= 1.0
