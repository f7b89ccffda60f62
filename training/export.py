"""Export a trained Keras model to the serving runtime (LiteRT/TFLite) and register it in models/."""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from pathlib import Path

import keras
import numpy as np

log = logging.getLogger(__name__)


def to_tflite(model: keras.Model, quantize: bool = True) -> bytes:
    """Convert to a TFLite flatbuffer via a SavedModel (the path Keras 3 supports).

    quantize=True stores weights as int8 (dynamic-range quantization): about 4x smaller and faster
    at batch 1 on a CPU (scripts/benchmark.py measures it), for a change in accuracy that
    training.evaluate measures on the quantized file itself, since that is the file the app serves.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def export_model(
    model: keras.Model,
    out_dir: Path,
    *,
    config: dict,
    labels: tuple[str, ...],
    history: dict,
    dataset_name: str,
    train_count: int,
) -> Path:
    """Write model.keras, model.tflite, manifest.json, config.json, history.json to out_dir,
    and check that the TFLite model agrees with Keras on random inputs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Rebuilt from its config, uncompiled: no optimizer state (clone_model keeps it; 3x the size).
    weights_only = keras.Model.from_config(model.get_config())
    weights_only.set_weights(model.get_weights())
    weights_only.save(out_dir / "model.keras")
    flatbuffer = to_tflite(model)
    (out_dir / "model.tflite").write_bytes(flatbuffer)
    _check_agreement(model, out_dir / "model.tflite")
    manifest = {
        "name": config["name"],
        "kind": "single",
        "backbone": config["model"],
        "description": describe(config, dataset_name, train_count),
        "labels": list(labels),
        "input_size": [config["input_size"], config["input_size"]],
        "channels": config["channels"],
        "equalize": bool(config.get("equalize", True)),
        "preprocessing": "emotion.preprocess.preprocess_face: grey, resize, equalize (if set), /255",
        "serving_file": "model.tflite",
        "serving_runtime": "LiteRT/TFLite, dynamic-range int8 weights",
        "keras_file": "model.keras",
        "metrics_file": "metrics.json",
        "history_file": "history.json",
        "config_file": "config.json",
        "parameters": int(model.count_params()),
        "dataset": dataset_name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    return out_dir


def describe(config: dict, dataset_name: str, train_count: int) -> str:
    """One line on how the model was made, e.g. 'vgg backbone trained from scratch on fer2013
    (27472 images)'; fine-tuned and distilled runs say from what."""
    origin = f"fine-tuned from {config['init_from']}" if config.get("init_from") else "trained from scratch"
    text = f"{config['model']} backbone {origin} on {dataset_name} ({train_count} images)"
    if config.get("teacher"):
        text += f", distilled from {config['teacher']} (teacher weight {config.get('teacher_weight')})"
    return text


def _check_agreement(model: keras.Model, tflite_path: Path, tolerance: float = 0.05) -> None:
    """Quantized weights move probabilities by about 1e-2; a larger gap means a broken export."""
    from emotion.runtime import TFLiteRunner

    runner = TFLiteRunner(tflite_path)
    x = np.random.default_rng(0).random((8, *model.input_shape[1:]), dtype=np.float32)
    gap = float(np.abs(runner.predict(x) - np.asarray(model(x, training=False))).max())
    if gap > tolerance:
        raise RuntimeError(f"TFLite and Keras disagree by {gap:.2e} on random inputs")
    log.info("TFLite export agrees with Keras (max gap %.1e)", gap)
