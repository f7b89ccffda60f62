"""Register a committee of trained models: `python -m training.committee --members vgg xception
[--vote soft|majority] [--name committee]`, or let PublicTest choose the members with
`--search [--members candidates...] [--tta]`; then evaluate it like any model with
`python -m training.evaluate --model committee`.

Members are ordered strongest first by their PublicTest accuracy (the selection split; never
PrivateTest), so that majority-vote ties go to the strongest member. The committee's manifest
lists its members; emotion.registry loads them and votes (see EmotionModel.predict_faces and
emotion.registry.committee_vote).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
from pathlib import Path

import numpy as np

from emotion.config import MODELS_DIR
from emotion.registry import ModelInfo, committee_vote, list_models


def selection_accuracy(info: ModelInfo) -> float:
    """A model's PublicTest accuracy from its metrics file: the only figure committees are ordered
    and chosen by."""
    public = info.metrics.get("public_test")
    if not public:
        raise ValueError(f"{info.name} has no PublicTest figures: run python -m training.evaluate --model {info.name}")
    return public["accuracy"]


def register_committee(
    name: str, members: list[str], vote: str = "soft", models_dir: Path | None = None, chosen_with_tta: bool = False
) -> Path:
    """Write models/<name>/manifest.json for a committee of registered, evaluated models;
    chosen_with_tta records that `--search --tta` chose the members on flip-TTA predictions."""
    root = models_dir or MODELS_DIR
    known = {m.name: m for m in list_models(root)}
    missing = [m for m in members if m not in known]
    if missing or len(members) < 2:
        raise ValueError(f"a committee needs at least two registered members; unknown: {missing}")
    infos = [known[m] for m in members]
    if len({i.labels for i in infos}) != 1:
        raise ValueError("members disagree on the label list")
    if any(i.kind != "single" for i in infos):
        raise ValueError("members must be single models")

    ordered = sorted(infos, key=selection_accuracy, reverse=True)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": name,
        "kind": "committee",
        "vote": vote,
        "members": [i.name for i in ordered],
        "description": f"{vote}-vote committee of {', '.join(i.name for i in ordered)} (strongest on PublicTest first)",
        "labels": list(ordered[0].labels),
        "input_size": list(ordered[0].input_size),
        "channels": ordered[0].channels,
        "serving_file": None,
        "keras_file": None,
        "metrics_file": "metrics.json",
        "history_file": None,
        "parameters": sum(int(i.manifest.get("parameters", 0)) for i in ordered),
        "dataset": ordered[0].manifest.get("dataset", "fer2013"),
        "chosen_with_tta": chosen_with_tta,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def best_subset(probs: dict[str, np.ndarray], labels: np.ndarray, vote: str) -> tuple[list[str], dict]:
    """The member set (two or more) whose vote is most accurate on the selection split.

    probs: name -> (N, K) probabilities on PublicTest, in the order majority ties should follow
    (strongest first). Returns the chosen names and {", ".join(subset): accuracy} for every subset;
    equal accuracies go to the smaller committee, which is cheaper to serve.
    """
    names = list(probs)
    scores = {}
    for size in range(2, len(names) + 1):
        for subset in itertools.combinations(names, size):
            voted = committee_vote(np.stack([probs[n] for n in subset]), vote)
            scores[subset] = float((voted.argmax(axis=1) == labels).mean())
    best = max(scores, key=lambda subset: (scores[subset], -len(subset)))
    return list(best), {", ".join(subset): acc for subset, acc in scores.items()}


def publictest_predictions(
    candidates: list[str], data: str | None = None, tta: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Predict PublicTest once per candidate (serving runtime; with flip TTA when tta, the mode a
    committee served with TTA votes in). Returns name -> (N, K) probabilities, strongest first by
    PublicTest accuracy (the order majority ties follow), and the (N,) labels."""
    from emotion.registry import load
    from training.data import load_as_trained
    from training.evaluate import SCORING_THREADS, default_data, training_data_settings

    loaded = [load(n, num_threads=SCORING_THREADS) for n in candidates]
    models = sorted(loaded, key=lambda m: selection_accuracy(m.info), reverse=True)
    path = data or default_data()
    public = load_as_trained(path, **training_data_settings(*models, data=path)).splits["PublicTest"]
    return {m.name: m.predict_faces(public.images, tta=tta) for m in models}, public.labels


def search_members(
    candidates: list[str], vote: str, data: str | None = None, tta: bool = False
) -> tuple[list[str], dict]:
    """best_subset on the candidates' PublicTest predictions (see publictest_predictions)."""
    return best_subset(*publictest_predictions(candidates, data, tta), vote)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Register a committee of trained models.")
    parser.add_argument("--members", nargs="+", help="the members; with --search, the candidates (default: all)")
    parser.add_argument("--search", action="store_true", help="choose the members on PublicTest")
    parser.add_argument("--vote", choices=("soft", "majority"), default="soft")
    parser.add_argument("--name", default="committee")
    parser.add_argument("--data", help="FER2013 CSV for --search (default: the one emotion.config finds)")
    parser.add_argument("--tta", action="store_true", help="--search on flip-TTA predictions (for use with TTA)")
    args = parser.parse_args(argv)
    members = args.members
    if args.search:
        candidates = members or [m.name for m in list_models() if m.kind == "single"]
        members, scores = search_members(candidates, args.vote, args.data, args.tta)
        for subset, accuracy in sorted(scores.items(), key=lambda item: -item[1]):
            print(f"PublicTest{' (flip TTA)' if args.tta else ''} {accuracy:.4f}  {args.vote} vote of {subset}")
    elif not members:
        parser.error("pass --members, or --search")
    elif args.tta:
        parser.error("--tta goes with --search")
    folder = register_committee(args.name, members, args.vote, chosen_with_tta=args.tta)  # tta implies search
    print(f"registered {folder} ({', '.join(members)}); next: python -m training.evaluate --model {args.name}")


if __name__ == "__main__":
    main()
