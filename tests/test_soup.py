"""training.soup: weight averaging, the subsets it searches, and the shipped soup is the mean of its members."""

from __future__ import annotations

import numpy as np
import pytest

from emotion.registry import list_models, model_info
from training.soup import candidate_subsets, mean_weights


def test_mean_weights_averages_each_tensor_in_its_dtype():
    a = [np.array([[1.0, 2.0]], np.float32), np.array([4], np.int64)]
    b = [np.array([[3.0, 6.0]], np.float32), np.array([6], np.int64)]
    mean = mean_weights([a, b])
    np.testing.assert_array_equal(mean[0], [[2.0, 4.0]])
    assert mean[0].dtype == np.float32 and mean[1].dtype == np.int64 and mean[1][0] == 5


def test_mean_weights_refuses_different_architectures():
    with pytest.raises(ValueError, match="same architecture"):
        mean_weights([[np.zeros((2, 2))], [np.zeros((3, 2))]])


def test_candidate_subsets_larger_first_in_the_given_order():
    assert candidate_subsets(["a", "b", "c"]) == [("a", "b", "c"), ("a", "b"), ("a", "c"), ("b", "c")]
    assert candidate_subsets(["a", "b"]) == [("a", "b")]


SOUPS = [m.name for m in list_models() if "soup" in m.manifest]


@pytest.mark.slow
@pytest.mark.parametrize("name", SOUPS)
def test_shipped_soup_is_the_mean_of_its_members(name):
    import keras

    info = model_info(name)
    members = info.manifest["soup"]["members"]
    assert info.training_config["soup_of"] == members and len(members) >= 2
    soup = keras.saving.load_model(info.keras_path, compile=False).get_weights()
    expected = mean_weights(
        [keras.saving.load_model(model_info(m).keras_path, compile=False).get_weights() for m in members]
    )
    assert len(soup) == len(expected)
    for got, want in zip(soup, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
