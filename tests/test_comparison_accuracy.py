"""The comparison page's calibration, test-time-crop and weakest-class sections (studio.comparison)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from emotion import config
from emotion.registry import list_models
from studio import comparison

METRICS = {
    "accuracy": 0.68,
    "public_test": {"accuracy": 0.66},
    "latency_ms_per_face": 0.4,
    "tta_mode": "crops",
    "tta_modes": {
        "flip": {"accuracy": 0.69, "public_accuracy": 0.665, "latency_ms_per_face": 0.8},
        "crops": {
            "accuracy": 0.70,
            "public_accuracy": 0.67,
            "public_pipeline_accuracy": 0.64,
            "latency_ms_per_face": 4.0,
        },
    },
    "calibration": {
        "temperature": 1.4,
        "ece_before": 0.08,
        "ece_after": 0.02,
        "ece_after_tta": 0.03,
        "reliability_before": {"confidence": [None, 0.9], "accuracy": [None, 0.7], "count": [0, 10]},
        "reliability_after": {"confidence": [0.3, 0.8], "accuracy": [0.35, 0.78], "count": [4, 6]},
    },
    "per_class": {"fear": {"recall": 0.45, "support": 528}, "sad": {"recall": 0.5, "support": 594}},
    "per_class_tta": {"fear": {"recall": 0.47}, "sad": {"recall": 0.52}},
}


@pytest.fixture
def models(tmp_path):
    for name, metrics in (("calibrated", METRICS), ("bare", {"accuracy": 0.5})):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({"name": name, "labels": ["fear", "sad"]}))
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return list_models(tmp_path)


def test_calibration_table_and_reliability_bins(models):
    table = comparison.calibration_table(models)
    assert table["Model"].tolist() == ["calibrated"]
    assert table.iloc[0]["ECE before"] == 0.08 and table.iloc[0]["ECE after"] == 0.02
    frame = comparison.reliability_frame(models)
    assert len(frame) == 3  # the empty bin is left out
    before = frame[frame.calibration == "before"].iloc[0]
    assert before.confidence == pytest.approx(90.0) and before.accuracy == pytest.approx(70.0) and before["count"] == 10


def test_tta_table_marks_the_served_mode(models):
    table = comparison.tta_table(models).set_index("TTA")
    assert table.index.tolist() == ["none", "flip", "ten crops"]
    assert table.loc["ten crops", "Served with TTA"] and not table.loc["flip", "Served with TTA"]
    assert table.loc["ten crops", "Latency ms/face"] == 4.0 and table.loc["flip", "PublicTest acc. %"] == 66.5
    assert table.loc["ten crops", "PublicTest detected %"] == 64.0
    assert pd.isna(table.loc["flip", "PublicTest detected %"]) and pd.isna(table.loc["none", "PublicTest detected %"])


def test_weak_class_recall(models):
    table = comparison.weak_class_recall(models).set_index("Class")
    assert table.loc["fear", "Recall %"] == 45.0 and table.loc["sad", "Recall TTA %"] == 52.0


@pytest.mark.slow
def test_comparison_page_draws_the_new_sections(models, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    at = AppTest.from_file(str(config.REPO_ROOT / "pages" / "model_comparison.py"), default_timeout=120).run()
    assert not at.exception
    labels = [t.label for t in at.tabs]
    assert labels[-3:] == ["Calibration", "Test-time crops", "Fear and sad"]
    texts = "\n".join(c.value for c in at.caption)
    assert "Reliability on FER2013 PrivateTest" in texts and "ten crops" in texts and "fear (or sad)" in texts
