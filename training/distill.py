"""Knowledge distillation and fine-tuning: start a run from a registered model's weights
(`--init-from vgg`) and train it towards a registered teacher's probabilities (`--teacher
committee --teacher-weight 0.5`), so that one network learns what a committee of them knows
(Hinton et al., Distilling the Knowledge in a Neural Network, 2015; temperature 1).

The teacher is asked once per Training image, through the shared preprocessing and the serving
runtime with flip TTA (the student sees flipped copies too); its answers are cached beside the
run so that --resume does not ask again. Training images only: PublicTest stays for selection.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from emotion.registry import load, model_info
from training.data import Split
from training.evaluate import SCORING_THREADS

log = logging.getLogger(__name__)


def teacher_probabilities(
    teacher: str, split: Split, labels: tuple[str, ...], cache: Path | None = None, batch: int = 512
) -> np.ndarray:
    """(N, K) float32 flip-TTA probabilities of the registered model `teacher` on split's images,
    read from `cache` when it holds this teacher's answers for these very images."""
    if is_packed(teacher):  # a GPU bundle's copy of these answers (training.gpu_bundle)
        probs = np.load(teacher)["probs"].astype(np.float32)
        if probs.shape != (len(split), len(labels)):
            wanted = (len(split), len(labels))
            raise ValueError(f"{teacher}: answers of shape {probs.shape}, not {wanted} (images, classes)")
        return probs
    model = load(teacher, num_threads=SCORING_THREADS)
    if tuple(model.labels) != tuple(labels):
        raise ValueError(f"teacher {teacher!r} predicts {list(model.labels)}, the dataset has {list(labels)}")
    digest = hashlib.sha256()
    for image in split.images:
        digest.update(image.tobytes())
    # The answers depend on the weights (created) and on the served calibration and TTA mode, which
    # training.evaluate re-fits: a re-evaluated teacher is asked again.
    info = model.info
    served_as = json.dumps([info.calibration(), info.calibration(tta=True), info.tta_mode])
    key = f"{teacher}:{info.manifest.get('created', '')}:{served_as}:{digest.hexdigest()}"
    if cache is not None and cache.is_file():
        saved = np.load(cache)
        if str(saved["key"]) == key:
            return saved["probs"]
    probs = np.concatenate(
        [model.predict_faces(split.images[i : i + batch], tta=True) for i in range(0, len(split), batch)]
    ).astype(np.float32)
    log.info(
        "teacher %s on %d Training images: accuracy %.4f, mean top probability %.3f",
        teacher,
        len(split),
        float((probs.argmax(axis=1) == split.labels).mean()),
        float(probs.max(axis=1).mean()),
    )
    if cache is not None:
        np.savez(cache, key=key, probs=probs)
    return probs


def is_packed(name: str) -> bool:
    """Whether an init_from or teacher setting names a file a GPU bundle packed (weights or a
    teacher's answers, .npz) rather than a registered model: that machine has no models/."""
    return name.endswith(".npz") and Path(name).is_file()


def blend_targets(one_hot, teacher_probs, weight: float):
    """(N, K) training targets: (1 - weight) * one_hot + weight * teacher_probs (arrays or tensors)."""
    return (1.0 - weight) * one_hot + weight * teacher_probs


# What a model's weights and its view of the data depend on: a fine-tune keeps them.
INHERITED = ("model", "input_size", "channels", "equalize", "seed", "face_crops", "drop_dirty")


def inherited_settings(name: str) -> dict:
    """The INHERITED fields of registered model `name`'s saved training config, which a run
    started --init-from it takes unless a flag says otherwise (and initial_weights then checks)."""
    if is_packed(name):  # packed with the settings already resolved
        return {}
    saved = model_info(name).training_config
    return {key: saved[key] for key in INHERITED if key in saved}


def initial_weights(name: str, expected: dict) -> list[np.ndarray]:
    """The float32 Keras weights of registered model `name`, checked against `expected` manifest
    fields (backbone, labels, input_size, channels, equalize) of the run they are to start. When the
    backbones differ, the run's backbone is built and slimmed from `name`'s weights (training.prune:
    a narrower net of the same layout); when the input sizes differ, the same weights must fit the net
    built at the run's size (a net whose head pools globally reads faces of any size); any other
    difference is a ValueError."""
    import keras

    if is_packed(name):  # float16 copies of the weights, in order (training.gpu_bundle)
        with np.load(name) as packed:
            return [packed[f"arr_{i}"].astype(np.float32) for i in range(len(packed.files))]
    info = model_info(name)
    if info.kind != "single" or info.keras_path is None:
        raise ValueError(f"--init-from {name!r}: not a single model with Keras weights")
    differ = {k: (info.manifest.get(k), v) for k, v in expected.items() if info.manifest.get(k) != v}
    slim_to = differ.pop("backbone", (None, None))[1]
    resized = differ.pop("input_size", None) is not None
    if differ:
        detail = "; ".join(f"{k}: {theirs} there, {ours} here" for k, (theirs, ours) in differ.items())
        raise ValueError(f"--init-from {name!r} does not fit this run ({detail})")
    log.info("starting from the weights of %s (%s)", name, info.keras_path)
    source = keras.models.load_model(info.keras_path, compile=False)
    if slim_to is None and not resized:
        return source.get_weights()
    from training.backbones import build_backbone
    from training.prune import slimmed_weights

    slim_to = slim_to or info.manifest.get("backbone")
    size, channels = expected["input_size"], expected["channels"]
    target = build_backbone(slim_to, (size[0], size[1], channels), len(expected["labels"]))
    try:
        return slimmed_weights(source, target)  # the same widths: every weight copied, its shape checked
    except ValueError as err:
        backbone = info.manifest.get("backbone")
        raise ValueError(f"--init-from {name!r}: its {backbone} cannot start a {slim_to}: {err}") from err
