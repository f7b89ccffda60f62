"""Datasets: FER2013 in Kaggle's CSV layout and folder-per-class image datasets.

Both loaders return `Split`s of raw uint8 images plus integer labels; models get their inputs
through `emotion.preprocess.preprocess_face` (see `to_inputs`), the same function inference uses.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion.config import IMAGE_SUFFIXES
from emotion.imageio import ImageLoadError, load_image
from emotion.labels import FER2013_LABELS, canonical_label
from emotion.preprocess import preprocess_batch

log = logging.getLogger(__name__)

FER_SPLITS = ("Training", "PublicTest", "PrivateTest")
# FER2013 split names, and the usual folder names that mean the same thing.
SPLIT_ALIASES = {
    "train": "Training",
    "training": "Training",
    "val": "PublicTest",
    "valid": "PublicTest",
    "validation": "PublicTest",
    "publictest": "PublicTest",
    "test": "PrivateTest",
    "privatetest": "PrivateTest",
}


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
    """Read Kaggle's fer2013.csv(.gz): columns emotion, pixels (2304 grey levels), Usage.

    Malformed rows (bad label, wrong pixel count, unknown Usage) are skipped and listed in
    `Dataset.problems`; a file with no usable row raises ValueError.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    images: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    labels: dict[str, list[int]] = {s: [] for s in splits}
    sources: dict[str, list[str]] = {s: [] for s in splits}
    problems: list[str] = []
    with opener(path, "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
        for row_number, row in enumerate(reader, start=2):
            usage = (row.get("Usage") or "").strip()
            if usage not in FER_SPLITS:
                problems.append(f"row {row_number}: unknown Usage {usage!r}")
                continue
            if usage not in splits:
                continue
            try:
                label = int(row["emotion"])
                pixels = np.array(row["pixels"].split(), dtype=np.int32)
            except (TypeError, ValueError, AttributeError):
                problems.append(f"row {row_number}: unparsable emotion or pixels")
                continue
            if not 0 <= label < len(FER2013_LABELS):
                problems.append(f"row {row_number}: emotion {label} out of range")
                continue
            if pixels.size != 48 * 48 or pixels.min() < 0 or pixels.max() > 255:
                problems.append(f"row {row_number}: {pixels.size} pixel values, expected 2304 in 0..255")
                continue
            images[usage].append(pixels.astype(np.uint8).reshape(48, 48))
            labels[usage].append(label)
            sources[usage].append(f"row {row_number}")
    result = {s: Split(images[s], np.array(labels[s], dtype=np.int64), sources[s]) for s in splits if labels[s]}
    if not result:
        raise ValueError(f"{path.name}: no usable row")
    for problem in problems[:20]:
        log.warning("%s: %s", path.name, problem)
    return Dataset("fer2013", FER2013_LABELS, result, problems)


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
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    split_dirs = split_folders(root)
    layout = split_dirs or {"Training": root}
    files: dict[str, list[tuple[Path, str]]] = {}
    for split, split_root in layout.items():
        class_dirs = sorted(d for d in split_root.iterdir() if d.is_dir() and not d.name.startswith("."))
        files[split] = [
            (f, canonical_label(d.name))
            for d in class_dirs
            for f in sorted(d.rglob("*"))
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
        ]
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
    if not split_dirs:
        splits = stratified_split(splits["Training"], val_fraction, test_fraction, seed)
    elif "PublicTest" not in splits:
        drawn = stratified_split(splits["Training"], val_fraction, 0.0, seed)
        splits.update(Training=drawn["Training"], PublicTest=drawn["PublicTest"])
    return Dataset(root.name, label_names, splits, problems)


def split_folders(root: Path) -> dict[str, Path]:
    """{FER2013 split name: folder} for root's train/val/test-like subfolders, in name order (empty
    when the dataset is not split in advance). The trainer and the explorer read layouts through it."""
    folders = sorted(d for d in Path(root).iterdir() if d.is_dir())
    return {SPLIT_ALIASES[d.name.lower()]: d for d in folders if d.name.lower() in SPLIT_ALIASES}


def seed_draws_split(path: str | Path) -> bool:
    """Whether the seed decides which images of `path` land in which split: yes for a folder
    dataset without its own validation folder (load_folder_dataset draws a stratified split), no
    for FER2013's CSV and for folders split in advance."""
    path = Path(path)
    return path.is_dir() and "PublicTest" not in split_folders(path)


def stratified_split(split: Split, val_fraction: float, test_fraction: float, seed: int) -> dict[str, Split]:
    """Split per class so each keeps its share: {"Training", "PublicTest", "PrivateTest"}."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"Training": [], "PublicTest": [], "PrivateTest": []}
    for label in np.unique(split.labels):
        idx = rng.permutation(np.flatnonzero(split.labels == label))
        n_val = int(round(len(idx) * val_fraction))
        n_test = int(round(len(idx) * test_fraction))
        parts["PublicTest"] += idx[:n_val].tolist()
        parts["PrivateTest"] += idx[n_val : n_val + n_test].tolist()
        parts["Training"] += idx[n_val + n_test :].tolist()
    return {name: split.subset(np.array(sorted(ix), dtype=np.int64)) for name, ix in parts.items() if ix}


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


def find_dirty(split: Split, blank_std: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact duplicates and blank images of a split.

    Returns (duplicate, blank) boolean masks of shape (N,): duplicate marks every image after
    the first with the same pixels; blank marks images whose grey-level std is under blank_std.
    """
    seen: set[bytes] = set()
    duplicate = np.zeros(len(split), dtype=bool)
    blank = np.zeros(len(split), dtype=bool)
    for i, image in enumerate(split.images):
        digest = _digest(image)
        duplicate[i] = digest in seen
        seen.add(digest)
        blank[i] = float(image.std()) < blank_std
    return duplicate, blank


def copies_in(split: Split, reference: Split) -> np.ndarray:
    """(N,) bool: which images of `split` have an exact pixel copy in `reference` (for FER2013,
    288 PrivateTest images are also in Training: figures on them measure memory, not skill)."""
    known = {_digest(image) for image in reference.images}
    return np.array([_digest(image) in known for image in split.images], dtype=bool)


def _digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(image.tobytes() + str(image.shape).encode(), digest_size=16).digest()


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


def csv_bytes_for_tests(rows: list[tuple[int, np.ndarray, str]]) -> bytes:
    """Build a tiny FER2013-layout CSV (emotion, pixels, Usage) in memory, for tests and demos."""
    out = io.StringIO()
    out.write("emotion,pixels,Usage\n")
    for label, pixels, usage in rows:
        out.write(f"{label},{' '.join(str(int(v)) for v in pixels.ravel())},{usage}\n")
    return out.getvalue().encode()
