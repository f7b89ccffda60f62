"""Datasets for training: FER2013 in Kaggle's CSV layout and folder-per-class image datasets.

Both loaders return `Split`s of raw uint8 images plus integer labels, read through
`emotion.datasets` (the one FER2013 reader, folder walker and split rule, which the dataset
explorer uses too); models get their inputs through `emotion.preprocess.preprocess_face` (see
`to_inputs`), the same function inference uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion.datasets import FER_SPLITS, UNSPLIT, folder_layout, read_fer2013_csv, split_folders, stratified_indices
from emotion.imageio import ImageLoadError, load_image
from emotion.labels import FER2013_LABELS
from emotion.preprocess import preprocess_batch

log = logging.getLogger(__name__)


@dataclass
class Split:
    """One split: images as a list of uint8 arrays (grey (H, W) or RGB (H, W, 3)) and labels."""

    images: list[np.ndarray]
    labels: np.ndarray  # (N,) int
    sources: list[str] = field(default_factory=list)  # row numbers or file paths, for reports

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> Split:
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return Split([self.images[i] for i in idx], self.labels[idx], [self.sources[i] for i in idx])


@dataclass
class Dataset:
    """Splits keyed by FER2013's names (Training, PublicTest, PrivateTest) and the label list."""

    name: str
    labels: tuple[str, ...]
    splits: dict[str, Split]
    problems: list[str] = field(default_factory=list)  # malformed rows, unreadable files


def load_fer2013_csv(path: str | Path, splits: tuple[str, ...] = FER_SPLITS) -> Dataset:
    """Kaggle's fer2013.csv(.gz) as a Dataset of the given splits (emotion.datasets.read_fer2013_csv:
    malformed rows are skipped and listed in `Dataset.problems`; no usable row raises ValueError)."""
    path = Path(path)
    arrays = read_fer2013_csv(path)
    result = {}
    for name in splits:
        members = np.flatnonzero(arrays.split == FER_SPLITS.index(name))
        if len(members):
            result[name] = Split(
                list(arrays.images[members]),
                arrays.labels[members].astype(np.int64),
                [f"row {r + 2}" for r in arrays.rows[members].tolist()],
            )
    if not result:
        raise ValueError(f"{path.name}: no usable row in {', '.join(splits)}")
    for problem in arrays.problems[:20]:
        log.warning("%s: %s", path.name, problem)
    return Dataset("fer2013", FER2013_LABELS, result, arrays.problems)


def load_folder_dataset(
    root: str | Path,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 1337,
    crop_faces: Callable[[np.ndarray], np.ndarray | None] | None = None,
) -> Dataset:
    """Read a folder-per-class dataset: root/<class>/*.jpg, or root/<split>/<class>/*.jpg.

    Labels are the sorted union of class folder names (canonicalised: "anger" -> "angry"); a class
    missing from one split is fine. With no split folders, a stratified split is drawn with `seed`.
    `crop_faces(rgb) -> crop or None` optionally replaces each photo with its face crop (photos
    with no face are then dropped and listed in `problems`).
    """
    root = Path(root)
    files = folder_layout(root)
    presplit = UNSPLIT not in files
    label_names = tuple(sorted({label for entries in files.values() for _, label in entries}))
    if len(label_names) < 2:
        raise ValueError(f"{root}: expected at least two class folders with images, found {list(label_names)}")
    index = {name: i for i, name in enumerate(label_names)}
    problems: list[str] = []
    splits: dict[str, Split] = {}
    for split, entries in files.items():
        images, labels, sources = [], [], []
        for path, label in entries:
            try:
                image = load_image(path)
            except ImageLoadError as error:
                problems.append(str(error))
                continue
            if crop_faces is not None:
                image = crop_faces(image)
                if image is None:
                    problems.append(f"{path.name}: no face found")
                    continue
            images.append(image)
            labels.append(index[label])
            sources.append(str(path.relative_to(root)))
        splits[split] = Split(images, np.array(labels, dtype=np.int64), sources)
    if not presplit:
        splits = stratified_split(splits[UNSPLIT], val_fraction, test_fraction, seed)
    elif "PublicTest" not in splits:
        drawn = stratified_split(splits["Training"], val_fraction, 0.0, seed)
        splits.update(Training=drawn["Training"], PublicTest=drawn["PublicTest"])
    return Dataset(root.name, label_names, splits, problems)


def seed_draws_split(path: str | Path) -> bool:
    """Whether the seed decides which images of `path` land in which split: yes for a folder
    dataset without its own validation folder (load_folder_dataset draws a stratified split), no
    for FER2013's CSV and for folders split in advance."""
    path = Path(path)
    return path.is_dir() and "PublicTest" not in split_folders(path)


def stratified_split(split: Split, val_fraction: float, test_fraction: float, seed: int) -> dict[str, Split]:
    """Split per class so each keeps its share: {"Training", "PublicTest", "PrivateTest"}."""
    drawn = stratified_indices(split.labels, val_fraction, test_fraction, seed)
    return {name: split.subset(indices) for name, indices in drawn.items()}


def load_dataset(path: str | Path, **folder_options) -> Dataset:
    """A FER2013 CSV file or a folder-per-class dataset, by what `path` is; folder_options
    (seed, crop_faces, fractions) apply to folder datasets only."""
    path = Path(path)
    if path.is_file():
        return load_fer2013_csv(path)
    return load_folder_dataset(path, **folder_options)


def load_as_trained(path: str | Path, seed: int, face_crops: bool) -> Dataset:
    """The dataset as a training run with this seed and face_crops setting saw it: the same
    stratified split of a folder dataset and the same detector crops. Training, evaluation and
    committee selection all load through here, so a model is never scored on images it trained on
    nor on whole photos when it learnt from face crops."""
    crop = None
    if face_crops:
        from emotion.detectors import crop_largest_face

        crop = crop_largest_face
    return load_dataset(path, seed=seed, crop_faces=crop)


def to_inputs(split: Split, input_size: tuple[int, int], channels: int, equalize: bool = True) -> np.ndarray:
    """The split's images -> (N, H, W, C) float32 model inputs via the shared preprocessing."""
    return preprocess_batch(split.images, input_size, channels, equalize)


def class_weights(labels: np.ndarray, num_classes: int, power: float = 0.5) -> dict[int, float]:
    """Inverse-frequency class weights raised to `power` (0.5 = sqrt: helps rare classes such as
    disgust without wrecking accuracy), normalised to a mean of 1 over the samples."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    weights /= (weights * counts).sum() / counts.sum()
    return {i: float(w) for i, w in enumerate(weights)}
