"""Evaluate a registered model and write its metrics file:
`python -m training.evaluate --model NAME [--split PrivateTest] [--data PATH]`.

Predictions come from the serving runtime (the TFLite file the app uses), so the figures are
those of the model users get. PublicTest figures (the selection split) are recorded beside the
reported split, never used to choose anything here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from pathlib import Path

import numpy as np

from emotion.config import find_fer2013_csv
from emotion.logs import setup_logging
from emotion.registry import EmotionModel, load

log = logging.getLogger("training.evaluate")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows true class, columns predicted class."""
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    cm = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = actual > 0
    return {
        "accuracy": float(tp.sum() / max(1, cm.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, actual, strict=True)
        },
        "confusion_matrix": cm.tolist(),
    }


def predict_split(model: EmotionModel, images: list[np.ndarray], tta: bool, batch: int = 256) -> np.ndarray:
    """(N,) predicted class ids through the shared preprocessing and the serving runtime."""
    out = []
    for start in range(0, len(images), batch):
        out.append(model.predict_faces(images[start : start + batch], tta=tta).argmax(axis=1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def latency_ms(model: EmotionModel, sample: np.ndarray, tta: bool, runs: int = 300) -> float:
    """Median wall time of one face (batch 1) through preprocessing and the serving runtime."""
    for _ in range(20):
        model.predict_faces([sample], tta=tta)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        model.predict_faces([sample], tta=tta)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def keras_latency_ms(keras_path: Path, input_shape: tuple[int, ...], runs: int = 50) -> float:
    """Median wall time of plain Keras `model(x)` on one face, for comparison with the runtime."""
    import keras

    net = keras.models.load_model(keras_path)
    x = np.random.default_rng(0).random((1, *input_shape), dtype=np.float32)
    for _ in range(5):
        net(x, training=False)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        net(x, training=False)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def evaluate(name: str, split: str = "PrivateTest", data: str | None = None, write: bool = True) -> dict:
    """Compute (and by default write) the metrics file of model `name` on `split`."""
    from emotion.datasets import copies_in
    from training.data import load_as_trained

    model = load(name)
    info = model.info
    if data is None and info.manifest.get("dataset", "fer2013") != "fer2013":
        raise ValueError(f"{name} was trained on {info.manifest.get('dataset')}: pass --data PATH")
    path = data or default_data()
    dataset = load_as_trained(path, **training_data_settings(model, data=path))
    if tuple(dataset.labels) != tuple(info.labels):
        raise ValueError(f"{name} predicts {info.labels} but {path} has {dataset.labels}")
    labels = info.labels
    report: dict = {"model": name, "split": split, "dataset": dataset.name, "labels": list(labels)}
    for split_name, key in ((split, ""), ("PublicTest", "public")):
        if split_name not in dataset.splits:
            continue
        part = dataset.splits[split_name]
        predicted = predict_split(model, part.images, tta=False)
        plain = classification_metrics(part.labels, predicted, labels)
        flipped = classification_metrics(part.labels, predict_split(model, part.images, tta=True), labels)
        if key == "public":
            report["public_test"] = {
                "accuracy": plain["accuracy"],
                "macro_f1": plain["macro_f1"],
                "accuracy_tta": flipped["accuracy"],
                "macro_f1_tta": flipped["macro_f1"],
            }
            continue
        report["n"] = len(part)
        report.update(plain)
        report.update({f"{k}_tta": v for k, v in flipped.items()})
        if "Training" in dataset.splits:  # the same figure without images the model saw in training
            seen = copies_in(part.images, dataset.splits["Training"].images)
            unseen = classification_metrics(part.labels[~seen], predicted[~seen], labels)
            report["copies_in_training"] = int(seen.sum())
            report["accuracy_unseen"] = unseen["accuracy"]
            report["macro_f1_unseen"] = unseen["macro_f1"]
    sample = dataset.splits[split].images[0]
    files = (
        [info.folder / info.serving_file]
        if info.kind == "single"
        else [m.info.folder / m.info.serving_file for m in model.members]
    )
    report["parameters"] = int(
        info.manifest.get("parameters") or sum(m.info.manifest.get("parameters", 0) for m in model.members)
    )
    report["file_size_bytes"] = int(sum(f.stat().st_size for f in files))
    report["latency_ms_per_face"] = latency_ms(model, sample, tta=False)
    report["latency_ms_per_face_tta"] = latency_ms(model, sample, tta=True)
    if info.keras_path is not None:
        report["keras_latency_ms_per_face"] = keras_latency_ms(info.keras_path, (*info.input_size, info.channels))
    report["runtime"] = _runtime_name()
    report["evaluated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if write:
        (info.folder / info.metrics_file).write_text(json.dumps(report, indent=2))
    return report


def training_data_settings(*models: EmotionModel, data: str | Path) -> dict:
    """{"seed", "face_crops"} of the runs that trained `models` (a committee's: its members'), from
    the config saved beside the weights, so evaluation and committee selection see dataset `data`
    as training did: a folder dataset's drawn split and the face crops. Raises ValueError when the
    runs disagree on either; seeds may differ where they draw no split (FER2013's CSV)."""
    from training.data import seed_draws_split
    from training.train import TrainConfig

    configs = [m.info.training_config for model in models for m in (model.members or [model])]
    seeds = {int(c.get("seed", TrainConfig.seed)) for c in configs}
    face_crops = {bool(c.get("face_crops", False)) for c in configs}
    if len(face_crops) > 1 or (len(seeds) > 1 and seed_draws_split(data)):
        names = ", ".join(m.name for m in models)
        raise ValueError(f"{names}: trained with different seeds or face crops: {sorted(seeds)}, {face_crops}")
    return {"seed": min(seeds), "face_crops": face_crops.pop()}


def default_data() -> str:
    found = find_fer2013_csv()
    if found is None:
        raise FileNotFoundError("FER2013 not found; pass --data PATH")
    return str(found)


def _runtime_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"LiteRT {version('ai-edge-litert')} (TFLite interpreter, 1 thread, batch 1)"
    except PackageNotFoundError:
        return "TensorFlow's TFLite interpreter (1 thread, batch 1)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate a registered model and write its metrics file.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--split", default="PrivateTest")
    parser.add_argument("--data", help="FER2013 CSV or folder dataset (default: the one the model was trained on)")
    args = parser.parse_args(argv)
    setup_logging("evaluate")
    report = evaluate(args.model, args.split, args.data)
    log.info(
        "%s on %s (n=%d): accuracy %.4f (TTA %.4f), macro-F1 %.4f (TTA %.4f); %.3f ms/face",
        args.model,
        args.split,
        report["n"],
        report["accuracy"],
        report["accuracy_tta"],
        report["macro_f1"],
        report["macro_f1_tta"],
        report["latency_ms_per_face"],
    )


if __name__ == "__main__":
    main()
