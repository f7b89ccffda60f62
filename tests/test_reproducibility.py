"""Every shipped model, re-evaluated on FER2013 PrivateTest from ../shared, scores what its
metrics file says (within 0.2 points), and every figure the project reports is on PrivateTest."""

from __future__ import annotations

import pytest

from emotion.registry import list_models, load
from training.data import load_fer2013_csv
from training.evaluate import classification_metrics, predict_split

SHIPPED = [m for m in list_models() if m.manifest.get("dataset", "fer2013") == "fer2013"]


@pytest.fixture(scope="module")
def private_test(fer2013_csv):
    return load_fer2013_csv(fer2013_csv, splits=("PrivateTest",)).splits["PrivateTest"]


def test_models_are_shipped_with_metrics():
    assert SHIPPED, "models/ ships no FER2013 model"
    for info in SHIPPED:
        metrics = info.metrics
        assert metrics, f"{info.name} has no metrics file: run python -m training.evaluate --model {info.name}"
        assert metrics["split"] == "PrivateTest" and metrics["n"] == 3589
        assert metrics["labels"] == list(info.labels)


@pytest.mark.slow
@pytest.mark.parametrize("name", [m.name for m in SHIPPED])
def test_accuracy_matches_metrics_file(private_test, name):
    model = load(name)
    recorded = model.info.metrics
    for tta, key in ((False, "accuracy"), (True, "accuracy_tta")):
        measured = classification_metrics(
            private_test.labels, predict_split(model, private_test.images, tta), model.labels
        )
        assert measured["accuracy"] == pytest.approx(recorded[key], abs=0.002), f"{name} {key}"
