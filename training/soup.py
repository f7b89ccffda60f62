"""Model soups: one network whose weights are the mean of several fine-tunes of one training run
(Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves accuracy
without increasing inference time", ICML 2022). A soup costs what one member costs per face, where a
committee costs the sum of its members.

    python -m training.train --config training/configs/vgg_wide_soup.toml     # or directly:
    python -m training.soup --name vgg_wide_soup --members vgg_wide_ft2 vgg_wide_ft vgg_wide
    python -m training.evaluate --model vgg_wide_soup                         # then, as for any model

Every subset of two or more members is averaged (all weights, batch-norm statistics included) and
scored on PublicTest; the best subset is kept (ties: fewer members, then the order given). PrivateTest
is not read here. Members must share one architecture and one training run: the weights of separate
runs (other seeds) sit in different basins and their mean is a broken net, which its PublicTest score
shows and the search then leaves out. The soup is exported like a trained run (model.keras,
model.tflite, manifest.json, config.json) to models/<name>/.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emotion.config import MODELS_DIR
from emotion.registry import ModelInfo, model_info
from training.data import Split, load_fer2013_csv, to_inputs

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

MIN_MEMBERS = 2


def mean_weights(weight_lists: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of several models' weight lists (same shapes, same order), in each weight's dtype."""
    shapes = [[w.shape for w in weights] for weights in weight_lists]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ValueError("soup members must have the same architecture (their weight shapes differ)")
    return [
        np.mean([weights[i].astype(np.float64) for weights in weight_lists], axis=0).astype(weight_lists[0][i].dtype)
        for i in range(len(weight_lists[0]))
    ]


def candidate_subsets(members: list[str], minimum: int = MIN_MEMBERS) -> list[tuple[str, ...]]:
    """Every subset of at least `minimum` members, larger ones first, each in the order given."""
    return [c for size in range(len(members), minimum - 1, -1) for c in itertools.combinations(members, size)]


def _check_members(infos: list[ModelInfo]) -> None:
    if len(infos) < MIN_MEMBERS:
        raise ValueError(f"a soup needs at least {MIN_MEMBERS} members")
    first = infos[0]
    for info in infos:
        if info.kind != "single" or info.keras_path is None:
            raise ValueError(f"{info.name}: not a single model with Keras weights")
        for key in ("backbone", "labels", "input_size", "channels", "equalize"):
            if info.manifest.get(key) != first.manifest.get(key):
                raise ValueError(f"{info.name} and {first.name} differ in {key}: they cannot be averaged")


def choose_soup(members: list[str], public: Split) -> tuple[tuple[str, ...], keras.Model, dict]:
    """Average every subset of `members` and score it on `public` (PublicTest) -> (chosen subset, a Keras
    net holding its mean weights, {"subsets": [{"members", "public_accuracy"}...], "public_accuracy"})."""
    import keras

    infos = [model_info(name) for name in members]
    _check_members(infos)
    manifest = infos[0].manifest
    inputs = to_inputs(public, tuple(manifest["input_size"]), manifest["channels"], manifest["equalize"])
    nets = {info.name: keras.saving.load_model(info.keras_path, compile=False) for info in infos}
    weights = {name: net.get_weights() for name, net in nets.items()}
    probe = nets[members[0]]
    scored = []
    for subset in candidate_subsets(members):
        probe.set_weights(mean_weights([weights[name] for name in subset]))
        predicted = probe.predict(inputs, batch_size=512, verbose=0).argmax(axis=1)
        accuracy = float((predicted == public.labels).mean())
        log.info("soup of %s: PublicTest accuracy %.4f", " + ".join(subset), accuracy)
        scored.append({"members": list(subset), "public_accuracy": round(accuracy, 6)})
    # Best accuracy; ties go to fewer members, then to the earlier subset (stable sort).
    best = max(scored, key=lambda s: (s["public_accuracy"], -len(s["members"])))
    chosen = tuple(best["members"])
    probe.set_weights(mean_weights([weights[name] for name in chosen]))
    return chosen, probe, {"subsets": scored, **best}


def make_soup(name: str, members: list[str], data: str | Path | None = None, models_dir: Path = MODELS_DIR) -> Path:
    """Choose the soup of `members` on PublicTest and export it to models_dir/<name>; returns that folder."""
    from training.evaluate import default_data
    from training.export import export_model

    data = str(data or default_data())
    dataset = load_fer2013_csv(data, splits=("PublicTest",))
    chosen, net, search = choose_soup(members, dataset.splits["PublicTest"])
    first = model_info(chosen[0])
    config = {
        **first.training_config,
        "name": name,
        "data": data,
        "soup_of": list(chosen),  # what it is: the mean of these registered models' weights
        "soup_candidates": list(members),
    }
    history = {"soup": search, "member_configs": {m: model_info(m).training_config for m in chosen}}
    out_dir = export_model(
        net,
        models_dir / name,
        config=config,
        labels=tuple(first.labels),
        history=history,
        dataset_name=first.manifest.get("dataset", "fer2013"),
        train_count=0,  # the description is replaced below: a soup saw no data of its own
    )
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["description"] = (
        f"{first.manifest['backbone']} soup: the mean of the weights of {', '.join(chosen)} "
        f"(chosen on PublicTest among {len(search['subsets'])} subsets of {', '.join(members)})"
    )
    manifest["soup"] = {
        "members": list(chosen),
        "candidates": list(members),
        "public_accuracy": search["public_accuracy"],
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    log.info("soup %s = %s (PublicTest %.4f) -> %s", name, " + ".join(chosen), search["public_accuracy"], out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the soup's model name")
    parser.add_argument("--members", nargs="+", required=True, help="registered fine-tunes of one training run")
    parser.add_argument("--data", default=None, help="FER2013 CSV (default: ../shared/datasets/fer2013)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    folder = make_soup(args.name, args.members, args.data)
    print(f"exported {folder}; next: python -m training.evaluate --model {args.name}")
    return folder


if __name__ == "__main__":
    main()
