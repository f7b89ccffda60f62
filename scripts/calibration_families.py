"""Which calibration does each net get? The choice behind serving vector scaling, made on PublicTest.

    python scripts/calibration_families.py [--models gpu_vgg_lean_kd5 vgg_wide_soup ...] [--folds 5]

Two families, both fitted by minimising the NLL (training.evaluate):
- "T and b": softmax(log p / T + b), a temperature and a per-class bias (served in sessions 22-25);
- "vector": softmax(log p * s / T + b), with a per-class scale s as well (vector scaling, Guo et al. 2017).
Each is scored on PublicTest by k-fold cross-fitting (fitted on k-1 folds, scored on the held-out one,
repeated with four shuffles): NLL, the proper score the fit minimises, and ECE. That is the figure the
choice reads. Without TTA and in the model's served TTA mode (the mean of the views calibrated by the
first stage, fitted on the whole of PublicTest for both families alike). PrivateTest ECE and accuracy,
fitted on all of PublicTest, are printed for the report only.

Nothing is written. Figures in docs/RESULTS.md, section 15.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from emotion.registry import UNCALIBRATED, load, log_probabilities, softmax
from training.data import load_fer2013_csv
from training.evaluate import (
    SCORING_THREADS,
    default_data,
    fit_temperature_and_bias,
    fit_vector_scaling,
    nll,
    predict_probabilities,
    reliability,
    served_as,
)

DEFAULT_MODELS = ("gpu_vgg_lean_kd5", "vgg_wide_soup", "vgg_ft", "vgg_lean36_kd", "vgg_thin_kd", "vgg_wide_ft")
FAMILIES: dict[str, Callable] = {"T and b": fit_temperature_and_bias, "vector": fit_vector_scaling}


def cross_fitted(fit: Callable, log_probs: np.ndarray, labels: np.ndarray, folds: int) -> tuple[float, float]:
    """(NLL, ECE) of `fit`'s calibration on held-out folds of (N, K) log_probs, means over 4 shuffles."""
    scores = []
    for seed in range(4):
        order = np.random.default_rng(seed).permutation(len(labels))
        for held in np.array_split(order, folds):
            fitted = np.setdiff1d(order, held)
            probs = softmax(log_probs[held], *fit(log_probs[fitted], labels[fitted]))
            scores.append((nll(np.log(probs), labels[held], 1.0), reliability(probs, labels[held])["ece"]))
    return tuple(np.mean(scores, axis=0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="registered single nets")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    splits = load_fer2013_csv(default_data(), ("PublicTest", "PrivateTest")).splits
    public, private = "PublicTest", "PrivateTest"
    labels = {part: splits[part].labels for part in (public, private)}
    print("| model | TTA | PublicTest cross-fitted NLL, T and b -> vector | ECE, T and b -> vector "
          "| PrivateTest ECE, T and b -> vector | accuracy, T and b -> vector |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in args.models:
        model = load(name, num_threads=SCORING_THREADS)
        raw = {part: log_probabilities(predict_probabilities(model, splits[part].images, False, calibrated=False))
               for part in (public, private)}  # fmt: skip
        for mode in ("none", model.tta_mode):
            inputs, row = raw, {}
            for family, fit in FAMILIES.items():
                if mode != "none":  # the first stage fitted as served, the views' mean calibrated again
                    first = fit(raw[public], labels[public])
                    staged = model.with_info(served_as(model.info, first, UNCALIBRATED, model.tta_mode))
                    inputs = {part: log_probabilities(predict_probabilities(staged, splits[part].images, mode))
                              for part in (public, private)}  # fmt: skip
                held_nll, held_ece = cross_fitted(fit, inputs[public], labels[public], args.folds)
                served = softmax(inputs[private], *fit(inputs[public], labels[public]))
                row[family] = (held_nll, held_ece, reliability(served, labels[private])["ece"],
                               float((served.argmax(axis=1) == labels[private]).mean()))  # fmt: skip
            cells = [" -> ".join(f"{row[f][i]:{spec}}" for f in FAMILIES) for i, spec in
                     enumerate((".4f", ".4f", ".4f", ".2%"))]  # fmt: skip
            print(f"| {name} | {mode} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
