"""Saved PrivateTest predictions (training.evaluate writes them beside each model's metrics) and the
comparison page's confident mistakes, which read them instead of running the model."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from emotion import config
from emotion.registry import model_info
from studio import comparison
from tests.test_comparison import write_models, write_tiny_tflite
from training.evaluate import save_predictions

COMPARISON = str(config.REPO_ROOT / "pages" / "model_comparison.py")


def test_saved_predictions_are_read_only_for_the_same_labels(tmp_path):
    folder = write_tiny_tflite(tmp_path / "tiny")
    info = model_info("tiny", tmp_path)
    labels = np.array([0, 3, 6, 3])
    assert comparison.saved_predictions(info, labels) is None  # nothing saved yet
    probs = np.eye(7, dtype=np.float32)[[0, 3, 5, 3]] * 0.9 + 0.1 / 7
    save_predictions(folder, probs, labels)

    read = comparison.saved_predictions(info, labels)

    np.testing.assert_allclose(read, probs, atol=1e-3)  # float16 on disk
    assert read.dtype == np.float32
    assert comparison.saved_predictions(info, labels[::-1]) is None  # another copy of the dataset
    assert comparison.saved_predictions(info, labels[:3]) is None
    (folder / comparison.PREDICTIONS_FILE).write_bytes(b"not an npz")
    assert comparison.saved_predictions(info, labels) is None


@pytest.mark.shared
@pytest.mark.slow
def test_mistakes_tab_reads_saved_predictions(fer2013_csv, tmp_path, monkeypatch):
    """With saved predictions the tab shows their accuracy and mistakes, and never runs the model."""
    from emotion.datasets import load_fer2013

    monkeypatch.setattr(config, "DATA_DIR", fer2013_csv.parent)
    root = write_models(tmp_path / "models")
    folder = write_tiny_tflite(root / "tiny")
    monkeypatch.setattr(config, "MODELS_DIR", root)
    ds = load_fer2013(fer2013_csv)
    y_true = ds.y[ds.split == ds.splits.index("PrivateTest")]
    probs = np.full((len(y_true), 7), 0.02, np.float32)
    probs[np.arange(len(y_true)), y_true] = 0.88
    probs[:10] = np.roll(probs[:10], 1, axis=1)  # ten confident mistakes
    save_predictions(folder, probs, y_true)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the mistakes tab recomputed predictions that were saved")

    monkeypatch.setattr(comparison, "predict_images", must_not_run)
    at = AppTest.from_file(COMPARISON, default_timeout=180).run()
    at.selectbox(key="mistakes_model").set_value("tiny").run()
    next(b for b in at.button if b.label == "Find mistakes").click().run()

    assert not at.exception
    captions = "\n".join(c.value for c in at.caption)
    assert f"{(len(y_true) - 10) / len(y_true):.1%} of 3,589 PrivateTest faces right" in captions
    assert len(at.get("image")) >= 1
