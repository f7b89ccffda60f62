"""Evaluate registered models and write their metrics files:
`python -m training.evaluate --model NAME [NAME ...] | --all [--split PrivateTest] [--data PATH]`.

Predictions come from the serving runtime (the TFLite file the app uses), so the figures are
those of the model users get. PublicTest (the selection split) chooses what is served: the
calibration (vector scaling: a temperature, a per-class scale and a per-class bias) and the test-time
augmentation mode (flip or ten crops; chosen on PublicTest faces the app's detector found in generated
scenes, training.scenes), both written to the model's manifest. PrivateTest is only reported on
(accuracy, ECE before and after calibration), and its served probabilities are saved beside the
metrics (predictions_privatetest.npz) for the comparison page.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from emotion.config import find_fer2013_csv
from emotion.logs import setup_logging
from emotion.registry import (
    TTA_MODES,
    UNCALIBRATED,
    EmotionModel,
    clear_cache,
    list_models,
    load,
    log_probabilities,
    softmax,
)

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


# Faces per interpreter call when scoring a split. The answers do not depend on it (identical here);
# the time does, a little: on the 3,589 PrivateTest faces, batches of 32 took 15-20% less time than
# batches of 256 for vgg_wide_soup and resnet and the same for vgg (three interleaved repeats), and
# the reproducibility tests of four models about 10% less.
EVAL_BATCH = 32
# LiteRT threads when scoring a split: a batch job, so every core (times in docs/RESULTS.md). The
# answers are identical to one thread's (tests/test_runtime.py). Latencies are timed with the threads
# the app serves with (config.serve_threads()), whatever this is.
SCORING_THREADS = os.cpu_count() or 1


def predict_split(model: EmotionModel, images: list[np.ndarray], tta: bool, batch: int = EVAL_BATCH) -> np.ndarray:
    """(N,) predicted class ids through the shared preprocessing and the serving runtime."""
    return predict_probabilities(model, images, tta, batch).argmax(axis=1)


def predict_probabilities(
    model: EmotionModel, images: list[np.ndarray], tta: bool | str, batch: int = EVAL_BATCH, calibrated: bool = True
) -> np.ndarray:
    """(N, K) probabilities, as served (calibrated) unless calibrated=False (see EmotionModel.predict_faces)."""
    out = [
        model.predict_faces(images[start : start + batch], tta=tta, calibrated=calibrated)
        for start in range(0, len(images), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, len(model.labels)), np.float32)


@functools.lru_cache(maxsize=1)
def _detected_public_faces(path: str, seed: int, face_crops: bool) -> tuple[list[np.ndarray], np.ndarray]:
    """Every PublicTest face of the dataset as `_dataset` loads it, placed in a generated scene once per
    angle of training.scenes.ANGLES, found by the app's detector and cropped as the app crops them
    (training.scenes.pipeline_crops): (crops, (N,) labels). All of them, not a draw: a draw of 1,000
    faces chose ten crops over the mirror by 2 crops in 2,845 where the whole split says the mirror by a
    point (docs/RESULTS.md section 16). Once per process: every model of `--all` is chosen on the same
    faces, and the scenes and their detection cost far more than classifying."""
    from training.scenes import pipeline_crops

    public = _dataset(path, seed, face_crops).splits["PublicTest"]
    return pipeline_crops(public.images, public.labels)


def _pipeline_accuracies(
    model: EmotionModel, detected: tuple[list[np.ndarray], np.ndarray], calibrations: dict[str, tuple]
) -> dict[str, float]:
    """{TTA mode: accuracy} on the detected PublicTest faces (_detected_public_faces), each mode with its
    own calibration; {} when no face was found (e.g. a dataset of colour photos)."""
    crops, truth = detected
    if not crops:
        return {}
    accuracies = {}
    for mode, calibration in calibrations.items():
        views = log_probabilities(predict_probabilities(model, crops, mode))
        accuracies[mode] = float((softmax(views, *calibration).argmax(axis=1) == truth).mean())
    log.info("TTA on %d detected PublicTest faces: %s", len(crops), accuracies)
    return accuracies


# --------------------------------------------------------------------------------- calibration

CALIBRATION_BINS = 15
PREDICTIONS_FILE = "predictions_privatetest.npz"


def nll(log_probs: np.ndarray, labels: np.ndarray, temperature: float, bias: np.ndarray | float = 0.0) -> float:
    """Mean negative log-likelihood of softmax(log_probs / temperature + bias) at the true labels;
    bias: (K,) per class, or none."""
    scaled = log_probs / temperature + bias
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    return float((log_norm - scaled[np.arange(len(labels)), labels]).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the NLL of softmax(log(probs) / T) on (N, K) probabilities and
    (N,) labels (temperature scaling, Guo et al. 2017): a grid over T in [0.2, 5], refined once.
    Fitted on the selection split (PublicTest) only."""
    log_probs = log_probabilities(probs)
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 161))
    best = grid[int(np.argmin([nll(log_probs, labels, t) for t in grid]))]
    fine = best * np.exp(np.linspace(-0.03, 0.03, 61))
    return float(fine[int(np.argmin([nll(log_probs, labels, t) for t in fine]))])


def fit_temperature_and_bias(log_probs: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """(T, (K,) bias) minimising the NLL of softmax(log_probs / T + bias) at the (N,) labels, started
    from the temperature alone (fit_temperature) and a zero bias: temperature scaling with a per-class
    bias ("logit adjustment", Menon et al., ICLR 2021), which takes back the share of answers that
    training's class weights gave the rare classes. Fitted on the selection split (PublicTest) only;
    the bias is centred (adding one constant to every class changes nothing)."""
    from scipy.optimize import minimize

    start = np.r_[fit_temperature(np.exp(log_probs), labels), np.zeros(log_probs.shape[1])]
    # T stays positive and within fit_temperature's range: a net no better than chance on the split
    # would otherwise be driven to T near 0 or below (its answers reversed).
    bounds = [(0.2, 5.0)] + [(None, None)] * log_probs.shape[1]
    fitted = minimize(lambda p: nll(log_probs, labels, p[0], p[1:]), start, method="L-BFGS-B", bounds=bounds).x
    return float(fitted[0]), fitted[1:] - fitted[1:].mean()


def fit_vector_scaling(log_probs: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(T, (K,) bias, (K,) scale) minimising the NLL of softmax(log_probs * scale / T + bias) at the (N,)
    labels: vector scaling (Guo et al. 2017), started from fit_temperature_and_bias and a unit scale.
    The served calibration: on PublicTest it gave a lower held-out NLL than T and b alone for every net
    and TTA mode tried (scripts/calibration_families.py, docs/RESULTS.md section 15). Fitted on the
    selection split only; returned with the scale's geometric mean at 1 (T carries the overall
    sharpness) and the bias centred."""
    from scipy.optimize import minimize

    temperature, bias = fit_temperature_and_bias(log_probs, labels)
    k = log_probs.shape[1]

    def loss(params: np.ndarray) -> float:
        return nll(log_probs * params[:k], labels, 1.0, params[k:])

    # Each class's weight 1/T_k stays within the temperature's range (0.2-5), for the same reason.
    start = np.r_[np.full(k, 1.0 / temperature), bias]
    bounds = [(0.2, 5.0)] * k + [(None, None)] * k
    fitted = minimize(loss, start, method="L-BFGS-B", bounds=bounds).x
    weights, bias = fitted[:k], fitted[k:]
    temperature = float(np.exp(-np.log(weights).mean()))
    return temperature, bias - bias.mean(), weights * temperature


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Confidence (top probability) of (N, K) probs against accuracy in `bins` equal-width bins:
    {"ece", "confidence", "accuracy", "count"} (per bin; empty bins hold None). ECE is the
    count-weighted mean gap |accuracy - confidence| over the bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    out: dict = {"confidence": [], "accuracy": [], "count": []}
    ece = 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        out["count"].append(n)
        if not n:
            out["confidence"].append(None)
            out["accuracy"].append(None)
            continue
        conf, acc = float(confidence[mask].mean()), float(correct[mask].mean())
        out["confidence"].append(conf)
        out["accuracy"].append(acc)
        ece += n / len(labels) * abs(acc - conf)
    out["ece"] = float(ece)
    return out


def uncalibrate(
    probs: np.ndarray,
    temperature: float,
    bias: tuple[float, ...] | np.ndarray = (),
    scale: tuple[float, ...] | np.ndarray = (),
) -> np.ndarray:
    """Undo the calibration softmax(log(raw) * scale / temperature + bias), giving back the raw (N, K)
    softmax: log(raw) = (log(probs) - bias + z) * temperature / scale, where each row's z (the
    calibration's log-normaliser) makes raw sum to 1. With no scale any z does (softmax ignores a
    constant); with one, z is the root of a convex increasing function, found by Newton's method."""
    shifted = log_probabilities(probs) - (np.asarray(bias, np.float64) if len(bias) else 0.0)
    slope = temperature / (np.asarray(scale, np.float64) if len(scale) else np.ones(probs.shape[1]))
    z = np.zeros((len(shifted), 1))
    for _ in range(50):  # Newton on log-sum-exp((shifted + z) * slope) = 0, quadratic near the root
        raw_log = (shifted + z) * slope
        top = raw_log.max(axis=1, keepdims=True)
        weights = np.exp(raw_log - top)
        total = weights.sum(axis=1, keepdims=True)
        z -= (np.log(total) + top) / ((weights * slope).sum(axis=1, keepdims=True) / total)
    return softmax((shifted + z) * slope)


def save_predictions(folder: Path, probs: np.ndarray, labels: np.ndarray) -> Path:
    """Write (N, K) served PrivateTest probabilities (float16) and (N,) true labels beside the metrics,
    for the comparison page's confident mistakes (read, never recomputed there)."""
    path = folder / PREDICTIONS_FILE
    np.savez_compressed(path, probs=probs.astype(np.float16), labels=labels.astype(np.int8))
    return path


def latency_ms(model: EmotionModel, sample: np.ndarray, tta: bool | str, runs: int = 300) -> float:
    """Median wall time of one face (batch 1) through preprocessing and the serving runtime."""
    return latency_figures(model, sample, tta, runs)["median_ms"]


def latency_figures(model: EmotionModel, sample: np.ndarray, tta: bool | str, runs: int = 200) -> dict[str, float]:
    """One face (batch 1) through preprocessing and the serving runtime, `runs` times: {"median_ms",
    "p95_ms"} of wall time (the wait) and "cpu_median_ms", the median CPU time of the whole process
    (the cost: the calling thread and LiteRT's other threads together; nothing else runs in a scoring
    or benchmark process meanwhile). With one thread the two agree on a quiet machine; on a busy one
    wall time also counts the time other processes held the core, which CPU time leaves out. With two,
    the wait is about half the cost."""
    for _ in range(20):
        model.predict_faces([sample], tta=tta)
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        model.predict_faces([sample], tta=tta)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return {
        "median_ms": float(np.median(wall) * 1000),
        "p95_ms": float(np.percentile(wall, 95) * 1000),
        "cpu_median_ms": float(np.median(cpu) * 1000),
    }


LATENCY_FIGURES = {"median_ms": "", "p95_ms": "_p95", "cpu_median_ms": "_cpu"}  # latency_figures -> metrics suffix


def latency_fields(figures: dict[str, float], suffix: str) -> dict[str, float]:
    """latency_figures' figures as metrics fields: suffix "" (one pass) or "_tta" (the served TTA) ->
    {"latency_ms_per_face{suffix}", "..._p95", "..._cpu"}."""
    return {f"latency_ms_per_face{suffix}{field}": figures[key] for key, field in LATENCY_FIGURES.items()}


def interleaved_latencies(
    models: list[EmotionModel], sample: np.ndarray, rounds: int = 40, calls: int = 100, tta_calls: int = 20
) -> dict[str, dict[str, dict[str, float]]]:
    """Each model's latency_figures for one face without TTA ("none") and with each TTA mode it was
    evaluated with and its served one, measured in `rounds` short rounds that each run every model once.
    This VM's speed drifts, and for seconds at a time it runs at half speed (cause not known),
    so a model measured alone, or in a few long blocks, can land in a slow spell that another model
    missed; interleaving many short rounds spreads the slow spells over every model, and the median over
    rounds ignores them while they are under half of the run. Returns {model: {mode: {"median_ms",
    "p95_ms", "cpu_median_ms", "fastest_cpu_ms"}}}: the first three the median over rounds of each
    round's figure, the last the fastest round's CPU median."""
    modes = {m.name: _timed_modes(m) for m in models}
    rounds_of: dict[str, dict[str, list[dict[str, float]]]] = {
        m.name: {mode: [] for mode in modes[m.name]} for m in models
    }
    for _ in range(rounds):
        for model in models:
            for mode in modes[model.name]:
                tta = False if mode == "none" else mode
                figures = latency_figures(model, sample, tta, runs=tta_calls if tta else calls)
                rounds_of[model.name][mode].append(figures)
    return {
        name: {
            mode: {key: float(np.median([r[key] for r in runs])) for key in LATENCY_FIGURES}
            | {"fastest_cpu_ms": float(min(r["cpu_median_ms"] for r in runs))}
            for mode, runs in per_mode.items()
        }
        for name, per_mode in rounds_of.items()
    }


def _timed_modes(model: EmotionModel) -> list[str]:
    """ "none" (one pass), every TTA mode training.evaluate scored the model with, and its served one."""
    return ["none", *dict.fromkeys([*(model.info.metrics.get("tta_modes") or []), model.info.tta_mode])]


def record_latencies(models: list[EmotionModel], latencies: dict[str, dict[str, dict[str, float]]], run: dict) -> None:
    """Write interleaved_latencies' figures into each model's metrics file, in the fields training.evaluate
    fills from its own single-model run (plain, served TTA and each TTA mode's), with `run` (how and when
    they were measured) as "latency_run": the comparison page then ranks models on figures measured
    together. Re-evaluating a model measures it alone again and drops its "latency_run"."""
    for model in models:
        path = model.info.folder / model.info.metrics_file
        metrics = json.loads(path.read_text())
        figures = latencies[model.name]
        metrics.update(latency_fields(figures["none"], "") | latency_fields(figures[model.info.tta_mode], "_tta"))
        for mode, values in (metrics.get("tta_modes") or {}).items():
            values["latency_ms_per_face"] = figures[mode]["median_ms"]
        metrics["latency_run"] = run
        metrics["runtime"] = _runtime_name(model.threads)  # the threads it was timed with
        path.write_text(json.dumps(metrics, indent=2))


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

    model = load(name, num_threads=SCORING_THREADS)
    info = model.info
    if data is None and info.manifest.get("dataset", "fer2013") != "fer2013":
        raise ValueError(f"{name} was trained on {info.manifest.get('dataset')}: pass --data PATH")
    path = data or default_data()
    settings = training_data_settings(model, data=path)
    dataset = _dataset(str(path), settings["seed"], settings["face_crops"])
    if tuple(dataset.labels) != tuple(info.labels):
        raise ValueError(f"{name} predicts {info.labels} but {path} has {dataset.labels}")
    labels = info.labels
    report: dict = {"model": name, "split": split, "dataset": dataset.name, "labels": list(labels)}
    calibration, tta_calibration, tta_mode = info.calibration(), info.calibration(tta=True), info.tta_mode
    public = dataset.splits.get("PublicTest")
    modes = TTA_MODES  # a committee chooses one mode for all its members
    public_modes: dict[str, dict] = {}
    pipeline_modes: dict[str, float] = {}
    if public is not None:  # calibration and the TTA mode are chosen on the selection split, never reported on
        raw = predict_probabilities(model, public.images, False, calibrated=False)
        calibration = fit_vector_scaling(log_probabilities(raw), public.labels)
        public_plain = softmax(log_probabilities(raw), *calibration)  # as served
        model = model.with_info(served_as(info, calibration, UNCALIBRATED, tta_mode))
        # Each mode: the mean of the calibrated views, with its own second calibration fitted on it.
        tta_calibrations = {}
        for mode in modes:
            views = log_probabilities(predict_probabilities(model, public.images, mode))
            tta_calibrations[mode] = fit_vector_scaling(views, public.labels)
            served_tta = softmax(views, *tta_calibrations[mode])
            public_modes[mode] = classification_metrics(public.labels, served_tta.argmax(axis=1), labels)
        # The app classifies detected faces, so the mode is chosen on PublicTest faces found by its detector
        # in generated scenes (training.scenes), where ten crops of an aligned crop did worse than the mirror
        # (docs/RESULTS.md section 14); on the registered crops only when no face is found (another dataset).
        # Equal accuracies: flip, ten times cheaper.
        detected = _detected_public_faces(str(path), settings["seed"], settings["face_crops"])
        pipeline_modes = _pipeline_accuracies(model, detected, tta_calibrations)
        chosen_on = pipeline_modes or {m: v["accuracy"] for m, v in public_modes.items()}
        tta_mode = max(chosen_on, key=lambda m: (chosen_on[m], m == "flip"))
        tta_calibration = tta_calibrations[tta_mode]
        report["tta_chosen_on"] = "PublicTest faces detected in scenes" if pipeline_modes else "PublicTest crops"
    # The model as served: those calibrations and TTA mode (written to its manifest below).
    served = served_as(info, calibration, tta_calibration, tta_mode)
    model = model.with_info(served)
    timed = load(name).with_info(served)  # the same with the app's serving threads: latencies
    report["tta_mode"] = tta_mode
    for split_name, key in ((split, ""), ("PublicTest", "public")):
        if split_name not in dataset.splits:
            continue
        part = dataset.splits[split_name]
        if key == "public" and public_modes:  # the PublicTest figures are in hand already
            plain = classification_metrics(part.labels, public_plain.argmax(axis=1), labels)
            flipped = public_modes[tta_mode]
        else:
            probs = predict_probabilities(model, part.images, tta=False)
            probs_tta = predict_probabilities(model, part.images, tta=True)
            predicted = probs.argmax(axis=1)
            plain = classification_metrics(part.labels, predicted, labels)
            flipped = classification_metrics(part.labels, probs_tta.argmax(axis=1), labels)
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
        report["tta_modes"] = {}
        for mode in modes:  # every mode on this split, beside its PublicTest figure that chose it
            measured = flipped if mode == tta_mode else None
            if measured is None:
                measured = classification_metrics(
                    part.labels, predict_probabilities(model, part.images, mode).argmax(axis=1), labels
                )
            report["tta_modes"][mode] = {
                "accuracy": measured["accuracy"],
                "macro_f1": measured["macro_f1"],
                "public_accuracy": public_modes.get(mode, {}).get("accuracy"),
                "public_pipeline_accuracy": pipeline_modes.get(mode),
                "latency_ms_per_face": latency_ms(timed, part.images[0], tta=mode),
            }
        before = reliability(uncalibrate(probs, *served.calibration()), part.labels)
        after = reliability(probs, part.labels)
        report["calibration"] = calibration_fields(served) | {
            "fitted_on": "PublicTest" if "PublicTest" in dataset.splits else "not fitted",
            "ece_before": before["ece"],
            "ece_after": after["ece"],
            "ece_before_tta": reliability(uncalibrate(probs_tta, *served.calibration(tta=True)), part.labels)["ece"],
            "ece_after_tta": reliability(probs_tta, part.labels)["ece"],
            "bins": CALIBRATION_BINS,
            "reliability_before": {k: before[k] for k in ("confidence", "accuracy", "count")},
            "reliability_after": {k: after[k] for k in ("confidence", "accuracy", "count")},
        }
        if write:
            save_predictions(info.folder, probs, part.labels)
            report["predictions_file"] = PREDICTIONS_FILE
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
    for suffix, tta in (("", False), ("_tta", True)):
        report.update(latency_fields(latency_figures(timed, sample, tta), suffix))
    if info.keras_path is not None:
        report["keras_latency_ms_per_face"] = keras_latency_ms(info.keras_path, (*info.input_size, info.channels))
    report["runtime"] = _runtime_name(timed.threads)
    report["serving_runtime"] = info.manifest.get("serving_runtime", "")
    report["evaluated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    metrics_path = info.folder / info.metrics_file
    if metrics_path.is_file():  # figures other commands measured (training.export --serve: "int8")
        previous = json.loads(metrics_path.read_text())
        report.update({k: previous[k] for k in KEPT_FIGURES if k in previous})
    pending = info.folder / PENDING_INT8_FILE  # the export served this model before its first evaluation
    if pending.is_file():
        report["int8"] = json.loads(pending.read_text())
    if write:
        metrics_path.write_text(json.dumps(report, indent=2))
        _write_serving_choices(info.folder / "manifest.json", served)
        pending.unlink(missing_ok=True)
    return report


# Sections of metrics.json written by other commands, kept when the model is re-evaluated.
KEPT_FIGURES = ("int8",)
PENDING_INT8_FILE = "int8_report.json"  # training.export's figures for a model not evaluated yet


def served_as(info, calibration: tuple, tta_calibration: tuple, tta_mode: str):
    """ModelInfo `info` served with (T, bias[, scale]) calibrations on one view and on the TTA mean (no
    scale: none, as fit_temperature_and_bias gives)."""

    def fields(prefix: str, temperature: float, bias, scale=()) -> dict:
        return {
            f"{prefix}temperature": float(temperature),
            f"{prefix}class_bias": tuple(float(b) for b in bias),
            f"{prefix}class_scale": tuple(float(s) for s in scale),
        }

    return dataclasses.replace(info, **fields("", *calibration), **fields("tta_", *tta_calibration), tta_mode=tta_mode)


def calibration_fields(info, digits: int | None = None) -> dict:
    """The calibrations `info` (a ModelInfo) serves, by their manifest and metrics names: {"temperature",
    "class_bias", "class_scale", and the same with "tta_"}, numbers rounded to `digits` when given."""

    def number(value: float) -> float:
        return round(float(value), digits) if digits is not None else float(value)

    fields = {}
    for prefix, (temperature, bias, scale) in (("", info.calibration()), ("tta_", info.calibration(tta=True))):
        fields[f"{prefix}temperature"] = number(temperature)
        fields[f"{prefix}class_bias"] = [number(b) for b in bias]
        fields[f"{prefix}class_scale"] = [number(s) for s in scale]
    return fields


def _write_serving_choices(manifest_path: Path, served) -> None:
    """Record the fitted calibrations and the chosen TTA mode of `served` (a ModelInfo) in the manifest,
    where emotion.registry reads them to serve calibrated probabilities (and that TTA) everywhere."""
    manifest = json.loads(manifest_path.read_text())
    # Six decimals: the saved predictions were made with the unrounded values, and a small T
    # magnifies a rounding of it (log p / T).
    manifest.update(calibration_fields(served, digits=6), tta_mode=served.tta_mode)
    manifest_path.write_text(json.dumps(manifest, indent=2))


@functools.lru_cache(maxsize=2)
def _dataset(path: str, seed: int, face_crops: bool):
    """training.data.load_as_trained, once per process: `--model a b c` parses the CSV once."""
    from training.data import load_as_trained

    return load_as_trained(path, seed=seed, face_crops=face_crops)


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


def _runtime_name(threads: int) -> str:
    from importlib.metadata import PackageNotFoundError, version

    serving = f"{threads} thread{'' if threads == 1 else 's'}, batch 1"
    try:
        return f"LiteRT {version('ai-edge-litert')} (TFLite interpreter, {serving})"
    except PackageNotFoundError:
        return f"TensorFlow's TFLite interpreter ({serving})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate registered models and write their metrics files.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", nargs="+", help="one or more models, evaluated in this order")
    which.add_argument("--all", action="store_true", help="every registered model, single ones before committees")
    parser.add_argument("--split", default="PrivateTest")
    parser.add_argument("--data", help="FER2013 CSV or folder dataset (default: the one the model was trained on)")
    args = parser.parse_args(argv)
    setup_logging("evaluate")
    # Committees vote with their members' temperatures: evaluate (calibrate) the members first.
    names = args.model or [m.name for m in sorted(list_models(), key=lambda m: m.kind == "committee")]
    for name in names:
        report = evaluate(name, args.split, args.data)
        clear_cache()  # the next model (a committee) loads its members with their new temperatures
        calibration = report.get("calibration", {})
        log.info(
            "%s on %s (n=%d): accuracy %.4f (TTA %.4f), macro-F1 %.4f (TTA %.4f); %.3f ms/face; "
            "temperature %.3f, ECE %.4f -> %.4f",
            name,
            args.split,
            report["n"],
            report["accuracy"],
            report["accuracy_tta"],
            report["macro_f1"],
            report["macro_f1_tta"],
            report["latency_ms_per_face"],
            calibration.get("temperature", 1.0),
            calibration.get("ece_before", float("nan")),
            calibration.get("ece_after", float("nan")),
        )


if __name__ == "__main__":
    main()
