"""Register a committee of trained models: `python -m training.committee --members vgg xception
[--vote soft|majority] [--name committee]`, then evaluate it like any model with
`python -m training.evaluate --model committee`.

Members are ordered strongest first by their PublicTest accuracy (the selection split; never
PrivateTest), so that majority-vote ties go to the strongest member. The committee's manifest
lists its members; emotion.registry loads them and votes (see EmotionModel._committee_predict).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from emotion.config import MODELS_DIR
from emotion.registry import list_models


def register_committee(name: str, members: list[str], vote: str = "soft", models_dir: Path | None = None) -> Path:
    """Write models/<name>/manifest.json for a committee of registered, evaluated models."""
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

    def selection_accuracy(info) -> float:
        public = info.metrics.get("public_test")
        if not public:
            raise ValueError(
                f"{info.name} has no PublicTest figures: run python -m training.evaluate --model {info.name}"
            )
        return public["accuracy"]

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
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Register a committee of trained models.")
    parser.add_argument("--members", nargs="+", required=True)
    parser.add_argument("--vote", choices=("soft", "majority"), default="soft")
    parser.add_argument("--name", default="committee")
    args = parser.parse_args(argv)
    folder = register_committee(args.name, args.members, args.vote)
    print(f"registered {folder}; next: python -m training.evaluate --model {args.name}")


if __name__ == "__main__":
    main()
