"""What does the per-class bias beside the temperature give each net? The ablation behind serving it.

    python scripts/prior_correction.py [--models vgg_wide_soup vgg_lean_slim ...]

The nets were trained with class weights (training.data.class_weights), which raise the rare classes'
share of the answers, disgust most. A per-class bias added to the scaled log-probabilities,
softmax(log p / T + b), can take that back (vector scaling with one temperature, Guo et al. 2017; "logit
adjustment", Menon et al., ICLR 2021). T and b are fitted together on PublicTest by minimising the NLL,
as `training.evaluate` does for the served calibration (since session 22; T alone before). Reported for
each model:
- PrivateTest accuracy and ECE with T alone (as served until session 22) and with T and b (as served now);
- PublicTest accuracy with T and b cross-fitted: fitted on one random half, scored on the other, both
  ways, so that the figure a selection would read is not scored on the faces it was fitted on.

Nothing is written. Figures in docs/RESULTS.md, section 9.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from emotion.labels import FER2013_LABELS
from emotion.registry import load, log_probabilities, softmax
from training.data import load_fer2013_csv
from training.evaluate import (
    SCORING_THREADS,
    default_data,
    fit_temperature,
    fit_temperature_and_bias,
    predict_probabilities,
    reliability,
)

DEFAULT_MODELS = ("vgg_wide_soup", "vgg_wide_ft2", "vgg_wide_ft", "vgg", "vgg_ft", "vgg_lean_slim", "vgg_lean_slim_ft")


def cross_fitted_accuracy(log_probs: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Accuracy with T and b fitted on one random half and scored on the other, both ways."""
    first = np.random.default_rng(seed).permutation(len(labels)) < len(labels) // 2
    correct = np.empty(len(labels), bool)
    for scored in (first, ~first):
        temperature, bias = fit_temperature_and_bias(log_probs[~scored], labels[~scored])
        correct[scored] = softmax(log_probs[scored], temperature, bias).argmax(axis=1) == labels[scored]
    return float(correct.mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="registered single nets")
    args = parser.parse_args(argv)
    splits = load_fer2013_csv(default_data(), ("PublicTest", "PrivateTest")).splits
    columns = ["model", "PrivateTest, T", "PrivateTest, T and b", "ECE, T -> T and b", "PublicTest, T",
               "PublicTest, T and b cross-fitted", f"b, centred ({', '.join(FER2013_LABELS)})"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        model = load(name, num_threads=SCORING_THREADS)
        log_probs, labels = {}, {}
        for split in ("PublicTest", "PrivateTest"):
            probs = predict_probabilities(model, splits[split].images, tta=False, calibrated=False)
            log_probs[split] = log_probabilities(probs)
            labels[split] = splits[split].labels
        temperature = fit_temperature(np.exp(log_probs["PublicTest"]), labels["PublicTest"])
        fitted_t, bias = fit_temperature_and_bias(log_probs["PublicTest"], labels["PublicTest"])
        served = softmax(log_probs["PrivateTest"], temperature)
        both = softmax(log_probs["PrivateTest"], fitted_t, bias)
        right = int((both.argmax(axis=1) == labels["PrivateTest"]).sum())
        public = float((log_probs["PublicTest"].argmax(axis=1) == labels["PublicTest"]).mean())
        cross = cross_fitted_accuracy(log_probs["PublicTest"], labels["PublicTest"])
        ece = (reliability(served, labels["PrivateTest"])["ece"], reliability(both, labels["PrivateTest"])["ece"])
        print(
            f"| {name} | {np.mean(served.argmax(axis=1) == labels['PrivateTest']):.2%} "
            f"| {right / len(both):.2%} ({right:,}) | {ece[0]:.4f} -> {ece[1]:.4f} | {public:.2%} | {cross:.2%} "
            f"| {', '.join(f'{b:+.2f}' for b in bias)} |",  # fitted centred
            flush=True,
        )


if __name__ == "__main__":
    main()
