"""Helpers the tests share that have no place in the product: a FER2013-layout CSV built in memory,
and the probabilities of the Keras model that Grad-CAM explains."""

from __future__ import annotations

import io

import numpy as np


def csv_bytes_for_tests(rows: list[tuple[int, np.ndarray, str]]) -> bytes:
    """A tiny FER2013-layout CSV (emotion, pixels, Usage) in memory: rows of (label, 2304 pixels, usage)."""
    out = io.StringIO()
    out.write("emotion,pixels,Usage\n")
    for label, pixels, usage in rows:
        out.write(f"{label},{' '.join(str(int(v)) for v in pixels.ravel())},{usage}\n")
    return out.getvalue().encode()


def keras_probabilities(face_crop: np.ndarray, model_name: str) -> np.ndarray:
    """(K,) probabilities of the Keras model Grad-CAM explains, for one uint8 crop (same preprocessing
    as serving): lets a test check that explanation and serving see the same input."""
    from emotion import explain

    info, emotion_model = explain.explained_model(model_name)
    model, _ = explain._load_keras(info.keras_path)
    return np.asarray(model(emotion_model.preprocess([face_crop]), training=False))[0]
