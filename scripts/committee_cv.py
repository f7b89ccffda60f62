"""Which rule for choosing a committee holds up on faces it did not choose on?

    python scripts/committee_cv.py [--repeats 5] [--tta | --no-tta]

Uses PublicTest only (the selection split; PrivateTest is never read). Each repeat splits PublicTest
at random into two halves; every rule chooses on one half and is scored on the other, both ways.
Rules compared:
- best single: the member most accurate on the choosing half;
- best subset, soft / majority: training.committee.best_subset (what `committee --search` does);
- all, soft: every single model's mean probability, nothing chosen;
- greedy weighted, soft: ensemble selection with replacement (Caruana et al., 2004): add, 30
  times, the member whose addition most raises accuracy; keep the best prefix. Repeats act as weights.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from emotion.registry import committee_vote, list_models
from training.committee import best_subset, publictest_predictions

# A rule takes (probs (M, n, K), labels (n,)) of the choosing half and returns member weights (M,).
Rule = Callable[[np.ndarray, np.ndarray], np.ndarray]


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """probs (n, K), labels (n,)."""
    return float((probs.argmax(axis=1) == labels).mean())


def best_single(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    weights = np.zeros(len(probs))
    weights[int(np.argmax([accuracy(p, labels) for p in probs]))] = 1
    return weights


def subset_rule(vote: str) -> Rule:
    def choose(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        chosen, _ = best_subset({str(i): p for i, p in enumerate(probs)}, labels, vote)
        weights = np.zeros(len(probs))
        weights[[int(c) for c in chosen]] = 1
        return weights

    return choose


def all_soft(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.ones(len(probs))


def greedy_weighted(probs: np.ndarray, labels: np.ndarray, steps: int = 30) -> np.ndarray:
    counts, total, prefixes = np.zeros(len(probs)), np.zeros(probs.shape[1:]), []
    for step in range(1, steps + 1):
        scores = [accuracy(total + p, labels) for p in probs]
        pick = int(np.argmax(scores))
        counts[pick] += 1
        total += probs[pick]
        prefixes.append((scores[pick], -step, counts.copy()))
    return max(prefixes, key=lambda prefix: prefix[:2])[2]  # the shortest of the best prefixes


RULES: dict[str, tuple[Rule, str]] = {
    "best single": (best_single, "soft"),
    "best subset, soft": (subset_rule("soft"), "soft"),
    "best subset, majority": (subset_rule("majority"), "majority"),
    "all, soft": (all_soft, "soft"),
    "greedy weighted, soft": (greedy_weighted, "soft"),
}


def score(weights: np.ndarray, vote: str, probs: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the committee `weights` picks (members strongest first) on held-out probs."""
    if vote == "majority":
        return accuracy(committee_vote(probs[weights > 0], vote), labels)
    return accuracy(np.tensordot(weights / weights.sum(), probs, axes=1), labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    singles = [m.name for m in list_models() if m.kind == "single"]
    by_name, labels = publictest_predictions(singles, tta=args.tta)  # strongest first: majority ties
    probs = np.stack(list(by_name.values()))  # (M, N, K)
    print(f"{len(by_name)} single models, PublicTest n={len(labels)}, flip TTA {args.tta}")

    rng = np.random.default_rng(0)
    held_out: dict[str, list[float]] = {name: [] for name in RULES}
    for _ in range(args.repeats):
        order = rng.permutation(len(labels))
        halves = order[: len(order) // 2], order[len(order) // 2 :]
        for choose_on, score_on in (halves, halves[::-1]):
            for name, (rule, vote) in RULES.items():
                weights = rule(probs[:, choose_on], labels[choose_on])
                held_out[name].append(score(weights, vote, probs[:, score_on], labels[score_on]))
    for name, scores in held_out.items():
        print(f"{name:24s} held-out accuracy {np.mean(scores):.2%} (sd {np.std(scores):.2%}, {len(scores)} halves)")


if __name__ == "__main__":
    main()
