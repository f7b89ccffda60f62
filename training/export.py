"""Export a trained Keras model to the serving runtime (LiteRT/TFLite) and register it in models/."""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.data import Split  # imports emotion, hence pylibsrtp, before TensorFlow (see emotion/__init__)

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


def to_tflite(model: keras.Model, quantize: bool | str = True, representative: np.ndarray | None = None) -> bytes:
    """Convert to a TFLite flatbuffer via a SavedModel (the path Keras 3 supports).

    quantize=True (or "dynamic") stores weights as int8 with float activations (dynamic-range
    quantization): about 4x smaller and 4x faster at batch 1 than float32 on this CPU.
    quantize="int8" makes every tensor int8, input and output included (full-integer
    quantization): activation ranges are calibrated on `representative`, (N, H, W, C) float32
    inputs made by the shared preprocessing (see representative_inputs); emotion.runtime quantizes
    inputs and dequantizes outputs with the scale and zero point stored in the file.
    training.evaluate measures the accuracy of the file itself, since that is what the app serves.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "int8":
            if representative is None or not len(representative):
                raise ValueError("full-integer quantization needs representative inputs")
            samples = np.asarray(representative, np.float32)
            converter.representative_dataset = lambda: ([samples[i : i + 1]] for i in range(len(samples)))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return converter.convert()


def logits_model(model: keras.Model) -> keras.Model:
    """The same network ending before its softmax: (N, H, W, C) -> (N, K) logits.

    Served full-integer files end here: an int8 softmax output rounds every probability to a
    multiple of 1/256 (a 0.2% confidence prints as 0%, and ties flip the argmax), and temperature
    calibration divides logits. The runtime applies the softmax in float (emotion.registry).
    """
    import keras

    head = model.get_layer("probabilities")
    if getattr(head.activation, "__name__", "") != "softmax":
        raise ValueError(f"{model.name}: the 'probabilities' layer is not a softmax Dense layer")
    logits = keras.layers.Dense(head.units, name="logits", dtype="float32")(head.input)
    out = keras.Model(model.inputs, logits, name=f"{model.name}_logits")
    out.get_layer("logits").set_weights(head.get_weights())
    return out


def representative_inputs(
    train: Split, input_size: tuple[int, int], channels: int, equalize: bool, count: int = 500, seed: int = 0
) -> np.ndarray:
    """(count, H, W, C) float32: Training faces drawn at random (never a test split), through
    emotion.preprocess.preprocess_face with the model's settings: the calibration set of full-integer
    quantization."""
    from training.data import to_inputs

    chosen = np.random.default_rng(seed).choice(len(train), size=min(count, len(train)), replace=False)
    return to_inputs(train.subset(np.sort(chosen)), input_size, channels, equalize)


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
    import keras

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
    origin = "trained from scratch"
    if config.get("init_from"):
        origin = f"fine-tuned from {config['init_from']}"
        if _backbone_of(config["init_from"]) not in (None, config["model"]):
            origin = f"slimmed from {config['init_from']} (training.prune), then fine-tuned"
    size = config.get("input_size", 48)
    faces = f" reading {size}x{size} faces," if size != 48 else ""
    text = f"{config['model']} backbone{faces} {origin} on {dataset_name} ({train_count} images)"
    if config.get("teacher"):
        text += f", distilled from {config['teacher']} (teacher weight {config.get('teacher_weight')})"
    if config.get("scene_views"):
        text += f"; {config['scene_views']:.0%} of each batch cut by the app's detector from generated scenes"
    return text


def _backbone_of(name: str) -> str | None:
    """The backbone of registered model `name`, None when it is not registered (any more)."""
    from emotion.registry import ModelNotFoundError, model_info

    try:
        return model_info(name).manifest.get("backbone")
    except ModelNotFoundError:
        return None


def _check_agreement(model: keras.Model, tflite_path: Path, tolerance: float = 0.05) -> None:
    """Quantized weights move probabilities by about 1e-2; a larger gap means a broken export."""
    from emotion.runtime import TFLiteRunner

    runner = TFLiteRunner(tflite_path)
    x = np.random.default_rng(0).random((8, *model.input_shape[1:]), dtype=np.float32)
    gap = float(np.abs(runner.predict(x) - np.asarray(model(x, training=False))).max())
    if gap > tolerance:
        raise RuntimeError(f"TFLite and Keras disagree by {gap:.2e} on random inputs")
    log.info("TFLite export agrees with Keras (max gap %.1e)", gap)


# ------------------------------------------------------------------ full-integer serving

INT8_MAX_DROP = 0.003  # serve the int8 file when it loses at most 0.3 points of PrivateTest accuracy
INT8_RUNTIME = "LiteRT/TFLite, full-integer int8 (weights and activations; softmax in float)"
FLOAT_RUNTIME = "LiteRT/TFLite, dynamic-range int8 weights"


def twin_latencies(runners: dict[str, object], sample: np.ndarray, info, rounds: int = 40, per_round: int = 25) -> dict:
    """Per-face latency at batch 1, preprocessing included, of several runners on one face crop,
    measured in interleaved rounds (so a busy machine slows each alike): {name: {"median_ms",
    "p95_ms", "cpu_median_ms"}} over the rounds' per-face means, wall time and the process's CPU time
    (all LiteRT's threads: training.evaluate.latency_figures)."""
    import time

    from emotion.preprocess import preprocess_batch

    def call(runner) -> None:
        runner.predict(preprocess_batch([sample], info.input_size, info.channels, info.equalize))

    for runner in runners.values():
        for _ in range(20):
            call(runner)
    wall: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                call(runner)
            wall[name].append((time.perf_counter() - started) / per_round * 1000)
            cpu[name].append((time.process_time() - started_cpu) / per_round * 1000)
    return {
        name: {
            "median_ms": float(np.median(wall[name])),
            "p95_ms": float(np.percentile(wall[name], 95)),
            "cpu_median_ms": float(np.median(cpu[name])),
        }
        for name in runners
    }


def _accuracies(runner, inputs: np.ndarray, labels: np.ndarray, logits: bool) -> tuple[float, float]:
    """(plain, flip-TTA) accuracy of a runner on (N, H, W, C) inputs; TTA averages softmaxes."""
    from emotion.registry import softmax

    def probs(x: np.ndarray) -> np.ndarray:
        out = runner.predict(x)
        return softmax(out) if logits else out

    plain = probs(inputs)
    flipped = 0.5 * (plain + probs(inputs[:, :, ::-1, :]))
    return float((plain.argmax(1) == labels).mean()), float((flipped.argmax(1) == labels).mean())


def int8_report(name: str, train: Split, test: Split, count: int = 500, serve: bool = False) -> dict:
    """Export model `name` with int8 activations and weights (calibrated on `count` Training faces)
    beside its float-activation twin (dynamic-range, rebuilt from model.keras when the served file
    is already int8), measure both on `test` (accuracy, flip TTA) and per-face latency at batch 1 in
    one run, and return the figures. serve=True writes the int8 file as the served model.tflite when
    it loses at most INT8_MAX_DROP accuracy (else the float twin), updates the manifest, and records
    the figures under "int8" in metrics.json (training.evaluate keeps them)."""
    import keras

    from emotion.registry import model_info
    from emotion.runtime import TFLiteRunner
    from training.data import to_inputs

    info = model_info(name)
    if info.kind != "single" or info.keras_path is None:
        raise ValueError(f"{name}: only single models with a model.keras file can be exported")
    net = keras.models.load_model(info.keras_path, compile=False)
    representative = representative_inputs(train, info.input_size, info.channels, info.equalize, count)
    with tempfile.TemporaryDirectory() as tmp:
        int8_path, float_path = Path(tmp) / "int8.tflite", Path(tmp) / "float.tflite"
        int8_path.write_bytes(to_tflite(logits_model(net), "int8", representative))
        served = info.folder / info.serving_file
        if info.serving_output == "probabilities":
            float_path.write_bytes(served.read_bytes())
        else:
            float_path.write_bytes(to_tflite(net, quantize=True))
        runners = {"float": TFLiteRunner(float_path), "int8": TFLiteRunner(int8_path)}
        inputs = to_inputs(test, info.input_size, info.channels, info.equalize)
        acc_float, acc_float_tta = _accuracies(runners["float"], inputs, test.labels, logits=False)
        acc_int8, acc_int8_tta = _accuracies(runners["int8"], inputs, test.labels, logits=True)
        latency = twin_latencies(runners, test.images[0], info)
        report = {
            "accuracy_int8": acc_int8,
            "accuracy_int8_tta": acc_int8_tta,
            "accuracy_float_activations": acc_float,
            "accuracy_float_activations_tta": acc_float_tta,
            "drop_points": 100 * (acc_float - acc_int8),
            "latency_ms_per_face_int8": latency["int8"]["median_ms"],
            "latency_ms_per_face_int8_p95": latency["int8"]["p95_ms"],
            "latency_ms_per_face_float_activations": latency["float"]["median_ms"],
            "latency_ms_per_face_float_activations_p95": latency["float"]["p95_ms"],
            "cpu_ms_per_face_int8": latency["int8"]["cpu_median_ms"],
            "cpu_ms_per_face_float_activations": latency["float"]["cpu_median_ms"],
            "size_bytes_int8": int8_path.stat().st_size,
            "size_bytes_float_activations": float_path.stat().st_size,
            "calibration_faces": len(representative),
            "split": "PrivateTest",
            "served": acc_float - acc_int8 <= INT8_MAX_DROP,
        }
        if serve:
            _serve(info, int8_path if report["served"] else float_path, report)
    return report


def _serve(info, file: Path, report: dict) -> None:
    """Write `file` as the served model.tflite, the manifest's serving fields and metrics' "int8"."""
    int8 = report["served"]
    (info.folder / info.serving_file).write_bytes(file.read_bytes())
    manifest = json.loads((info.folder / "manifest.json").read_text())
    manifest["serving_output"] = "logits" if int8 else "probabilities"
    manifest["serving_runtime"] = INT8_RUNTIME if int8 else FLOAT_RUNTIME
    (info.folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    metrics_path = info.folder / info.metrics_file
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        metrics["int8"] = report
        metrics_path.write_text(json.dumps(metrics, indent=2))
    else:  # served before its first evaluation: training.evaluate moves these into the metrics it writes
        from training.evaluate import PENDING_INT8_FILE

        (info.folder / PENDING_INT8_FILE).write_text(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> None:
    import argparse

    from emotion.logs import setup_logging
    from emotion.registry import list_models
    from training.data import load_fer2013_csv
    from training.evaluate import default_data

    parser = argparse.ArgumentParser(
        description="Full-integer (int8) export of the served nets beside their float-activation twins: "
        "PrivateTest accuracy and batch-1 latency of both in one run."
    )
    parser.add_argument("--models", nargs="*", help="single models (default: every FER2013 one with model.keras)")
    parser.add_argument("--count", type=int, default=500, help="Training faces that calibrate the int8 ranges")
    parser.add_argument("--serve", action="store_true", help="serve the int8 file where it loses <= 0.3 points")
    parser.add_argument("--data", help="FER2013 CSV (default: the one emotion.config finds)")
    args = parser.parse_args(argv)
    setup_logging("export")
    names = args.models or [
        m.name
        for m in list_models()
        if m.kind == "single" and m.keras_path is not None and m.manifest.get("dataset", "fer2013") == "fer2013"
    ]
    dataset = load_fer2013_csv(args.data or default_data(), splits=("Training", "PrivateTest"))
    train, test = dataset.splits["Training"], dataset.splits["PrivateTest"]
    print(
        "model | acc float-act % | acc int8 % | drop pts | TTA float % | TTA int8 % | ms float (p95) | ms int8 (p95)"
        " | CPU ms float | CPU ms int8 | served"
    )
    for name in names:
        r = int8_report(name, train, test, args.count, args.serve)
        print(
            f"{name} | {100 * r['accuracy_float_activations']:.2f} | {100 * r['accuracy_int8']:.2f} | "
            f"{r['drop_points']:+.2f} | {100 * r['accuracy_float_activations_tta']:.2f} | "
            f"{100 * r['accuracy_int8_tta']:.2f} | {r['latency_ms_per_face_float_activations']:.3f} "
            f"({r['latency_ms_per_face_float_activations_p95']:.3f}) | {r['latency_ms_per_face_int8']:.3f} "
            f"({r['latency_ms_per_face_int8_p95']:.3f}) | {r['cpu_ms_per_face_float_activations']:.3f} | "
            f"{r['cpu_ms_per_face_int8']:.3f} | {'int8' if r['served'] else 'float activations'}",
            flush=True,
        )


if __name__ == "__main__":
    main()
