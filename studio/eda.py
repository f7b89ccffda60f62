"""Dataset statistics for the explorer: fast FER2013 reading, folder scanning, class balance, mean
faces, brightness/contrast, perceptual hashes, duplicates, blanks and label conflicts.

Every image is looked at as the models see it: grey, 48x48 (`THUMB`). `python -m studio.eda
--derive` writes the FER2013 summary the project ships in data/derived/ (numbers and per-class
mean/std faces only, never an image of the dataset).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import stat
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from emotion import config
from emotion.config import IMAGE_SUFFIXES
from emotion.imageio import ImageLoadError, load_image
from emotion.labels import FER2013_LABELS, canonical_label
from training.data import FER_SPLITS, split_folders

THUMB = 48
BLANK_STD = 3.0  # the same threshold as training.data.find_dirty
NEAR_THRESHOLD = 3  # dHash Hamming distance counted as a near duplicate
HIST_BINS = np.linspace(0.0, 256.0, 33)  # 32 bins of grey level (brightness) / std (contrast)
CACHE_DIR = Path(os.environ.get("EMOTION_CACHE_DIR", config.REPO_ROOT / "data" / "cache"))
STATS_JSON = config.DERIVED_DIR / "fer2013_stats.json"
FACES_NPZ = config.DERIVED_DIR / "fer2013_faces.npz"
MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_BYTES = 2 * 1024**3  # uncompressed total
MAX_ZIP_RATIO = 100  # per-member uncompressed/compressed; JPEG/PNG stay near 1

Progress = Callable[[float, str], None]
_CHUNK = 512  # images per float32 block in the moment computations


def _no_progress(fraction: float, text: str) -> None:
    """Default progress callback: does nothing."""


@dataclass
class ImageSet:
    """A dataset as the explorer sees it.

    thumbs: (N, 48, 48) uint8 grey; y: (N,) int class index into `labels`; split: (N,) int index
    into `splits`; digest: (N,) 16-byte content hashes (exact duplicates); sources: N file paths
    relative to `root` (folders) or CSV row numbers; sizes: (N, 2) int (width, height); modes: N
    colour modes ("L", "RGB", "RGB (grey)", ...).
    """

    name: str
    labels: tuple[str, ...]
    splits: tuple[str, ...]
    thumbs: np.ndarray
    y: np.ndarray
    split: np.ndarray
    digest: np.ndarray
    sources: list[str]
    sizes: np.ndarray
    modes: list[str]
    root: Path | None = None
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


# ----------------------------------------------------------------------------------- reading


def file_key(path: Path) -> str:
    """A cache key for a file or folder: resolved path, size and mtime (ns)."""
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def parse_fer2013_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Vectorised FER2013 reader (several times faster than training.data.load_fer2013_csv).

    Returns images (N, 48, 48) uint8, labels (N,) int16, split (N,) int8 index into FER_SPLITS,
    rows (N,) int32 (0-based data row of each image) and the problems (malformed rows, skipped).
    Raises ValueError when no row is usable.
    """
    frame = pd.read_csv(path, dtype={"emotion": object, "pixels": object, "Usage": object})
    missing = {"emotion", "pixels", "Usage"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
    labels = pd.to_numeric(frame["emotion"], errors="coerce").to_numpy()
    # Plain Python string methods: pandas' .str accessors take ~10 s on these 8 kB strings.
    usage = [u.strip() if isinstance(u, str) else "" for u in frame["Usage"].tolist()]
    pixels = [p.strip() if isinstance(p, str) else "" for p in frame["pixels"].tolist()]
    text = "\n".join(pixels)
    tokens = np.array([p.count(" ") + 1 if p else 0 for p in pixels], np.int64)
    usable_text = tokens == 48 * 48
    split = np.array([FER_SPLITS.index(u) if u in FER_SPLITS else -1 for u in usage], np.int8)
    ok_label = ~np.isnan(labels) & (labels >= 0) & (labels < len(FER2013_LABELS)) & (labels == np.round(labels))
    values = np.fromstring(text, dtype=np.int16, sep=" ") if usable_text.all() else None
    if values is None or values.size != len(pixels) * 48 * 48:
        rows = [np.fromstring(p, dtype=np.int16, sep=" ") for p in pixels]
        usable_text = np.array([r.size == 48 * 48 for r in rows])
        values = np.concatenate([r if r.size == 48 * 48 else np.zeros(48 * 48, np.int16) for r in rows])
    images = values.reshape(-1, 48, 48)
    in_range = (images.min(axis=(1, 2)) >= 0) & (images.max(axis=(1, 2)) <= 255)
    keep = usable_text & in_range & ok_label & (split >= 0)
    problems = [
        f"row {i + 2}: " + ("unknown Usage" if split[i] < 0 else "bad emotion" if not ok_label[i] else "bad pixels")
        for i in np.flatnonzero(~keep)
    ]
    if not keep.any():
        raise ValueError(f"{path.name}: no usable row")
    rows = np.flatnonzero(keep).astype(np.int32)
    return images[keep].astype(np.uint8), labels[keep].astype(np.int16), split[keep], rows, problems


def load_fer2013_arrays(path: Path, cache_dir: Path | None = CACHE_DIR) -> ImageSet:
    """FER2013 as an ImageSet, parsed once and then read from `cache_dir/fer2013_<key>.npz`."""
    path = Path(path)
    cache = cache_dir / f"fer2013_{file_key(path)}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            images, labels, split = data["images"], data["labels"], data["split"]
            rows, problems = data["rows"], [str(p) for p in data["problems"]]
    else:
        images, labels, split, rows, problems = parse_fer2013_csv(path)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npz")
            np.savez(tmp, images=images, labels=labels, split=split, rows=rows, problems=np.array(problems, str))
            tmp.replace(cache)
    digest = _digests(images)
    n = len(labels)
    return ImageSet(
        "FER2013",
        FER2013_LABELS,
        FER_SPLITS,
        images,
        labels.astype(np.int64),
        split.astype(np.int64),
        digest,
        [f"row {r + 2}" for r in rows],
        np.full((n, 2), 48, np.int32),
        ["L"] * n,
        None,
        problems,
    )


def _digests(images: np.ndarray) -> np.ndarray:
    """(N, ...) uint8 -> (N,) 'S16' blake2b digests of each image's bytes."""
    return np.array([hashlib.blake2b(im.tobytes(), digest_size=16).digest() for im in images], dtype="S16")


def folder_layout(root: Path) -> dict[str, list[tuple[Path, str]]]:
    """root/<class>/* or root/<split>/<class>/* -> {split: [(file, canonical label)]}.

    Without split folders every file is in split "all". Hidden folders and non-image files are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    layout = split_folders(root) or {"all": root}
    found: dict[str, list[tuple[Path, str]]] = {}
    for split, split_root in layout.items():
        class_dirs = [d for d in sorted(split_root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        found[split] = [
            (f, canonical_label(d.name))
            for d in class_dirs
            for f in sorted(d.rglob("*"))
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not f.name.startswith(".")
        ]
    return found


def folder_signature(root: Path) -> str:
    """A cache key for a folder dataset: a hash of every image's relative path, size and mtime."""
    digest = hashlib.sha1(str(Path(root).resolve()).encode())
    for split, files in folder_layout(root).items():
        for path, label in files:
            st = path.stat()
            digest.update(f"{split}|{label}|{path.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def dataset_root(folder: Path) -> Path:
    """Descend through folders that hold nothing but one sub-folder (a zip of `dataset/` extracts so)."""
    folder = Path(folder)
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        folder = entries[0]


def read_thumbnail(path: Path) -> tuple[np.ndarray, tuple[int, int], str, bytes]:
    """One image file -> (48x48 uint8 grey, (width, height), colour mode, 16-byte content digest).

    JPEGs are decoded at a reduced scale (PIL draft) for speed; EXIF orientation is applied.
    Raises ValueError with a readable message for unreadable or over-sized files.
    """
    data = path.read_bytes() if path.stat().st_size <= config.MAX_IMAGE_BYTES else None
    if data is None:
        raise ValueError(f"{path.name}: over {config.MAX_IMAGE_BYTES // 2**20} MB")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > config.MAX_IMAGE_PIXELS:
            raise ValueError(f"{path.name}: {width}x{height} pixels is over the limit")
        mode = image.mode
        image.draft("RGB", (4 * THUMB, 4 * THUMB))
        image = ImageOps.exif_transpose(image)
        rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path.name}: not a readable image ({error})") from None
    if mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr") and np.abs(rgb.astype(np.int16) - rgb[..., :1]).max() <= 2:
        mode = f"{mode} (grey)"
    if image.size != (width, height) and image.size[::-1] == (width, height):
        width, height = height, width  # EXIF rotated by 90 degrees
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(
        grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA if min(grey.shape) > THUMB else cv2.INTER_LINEAR
    )
    return thumb, (width, height), mode, hashlib.blake2b(data, digest_size=16).digest()


def scan_folder(root: Path, progress: Progress = _no_progress) -> ImageSet:
    """A folder-per-class dataset -> ImageSet (labels are the sorted union of class folder names)."""
    root = Path(root)
    layout = folder_layout(root)
    labels = tuple(sorted({label for entries in layout.values() for _, label in entries}))
    if not labels:
        raise ValueError(f"{root}: no class folder with images (expected {root}/<class>/<image>)")
    splits = tuple(layout)
    entries = [(s, f, lab) for s, files in layout.items() for f, lab in files]
    thumbs, ys, split_ix, digests, sources, sizes, modes, problems = [], [], [], [], [], [], [], []
    for i, (split, path, label) in enumerate(entries):
        if i % 50 == 0:
            progress(i / max(len(entries), 1), f"Reading images {i:,}/{len(entries):,}")
        try:
            thumb, size, mode, digest = read_thumbnail(path)
        except (ValueError, OSError) as error:
            problems.append(str(error))
            continue
        thumbs.append(thumb)
        ys.append(labels.index(label))
        split_ix.append(splits.index(split))
        digests.append(digest)
        sources.append(str(path.relative_to(root)))
        sizes.append(size)
        modes.append(mode)
    progress(1.0, "Images read")
    return ImageSet(
        root.name,
        labels,
        splits,
        np.array(thumbs, np.uint8).reshape(-1, THUMB, THUMB),
        np.array(ys, np.int64),
        np.array(split_ix, np.int64),
        np.array(digests, dtype="S16"),
        sources,
        np.array(sizes, np.int32).reshape(-1, 2),
        modes,
        root,
        problems,
    )


# ------------------------------------------------------------------------------ statistics


def class_counts(y: np.ndarray, split: np.ndarray, labels: tuple[str, ...], splits: tuple[str, ...]) -> pd.DataFrame:
    """Counts per (split, label) with the percentage within the split: columns split, label, count, percent."""
    rows = []
    for s, name in enumerate(splits):
        counts = np.bincount(y[split == s], minlength=len(labels))
        total = max(int(counts.sum()), 1)
        rows += [(name, lab, int(c), 100.0 * c / total) for lab, c in zip(labels, counts, strict=True)]
    return pd.DataFrame(rows, columns=["split", "label", "count", "percent"])


def imbalance_ratio(counts: np.ndarray | list[int]) -> float:
    """Largest class count over the smallest non-empty one (1.0 = balanced; inf if a class is empty)."""
    counts = np.asarray(counts)
    if counts.size == 0 or counts.max() == 0:
        return float("nan")
    return float("inf") if (counts == 0).any() else float(counts.max() / counts.min())


def mean_std_faces(thumbs: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) uint8 and (N,) labels -> per-class pixel-wise mean and std, each (K, H, W) float32
    (zeros for an empty class)."""
    mean = np.zeros((num_classes, *thumbs.shape[1:]), np.float32)
    std = np.zeros_like(mean)
    flat = thumbs.reshape(len(thumbs), -1)
    for k in range(num_classes):
        members = flat[y == k]
        total, squares = np.zeros(flat.shape[1]), np.zeros(flat.shape[1])
        for start in range(0, len(members), _CHUNK):  # float32 chunks that stay in cache: ~10x faster
            chunk = members[start : start + _CHUNK].astype(np.float32)
            total += chunk.sum(axis=0)
            squares += (chunk * chunk).sum(axis=0)
        if len(members):
            m = total / len(members)
            mean[k] = m.reshape(mean.shape[1:])
            std[k] = np.sqrt(np.maximum(squares / len(members) - m * m, 0.0)).reshape(mean.shape[1:])
    return mean, std


def brightness_contrast(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) uint8 -> per-image mean grey level (brightness) and grey-level std (contrast), (N,) each."""
    flat = thumbs.reshape(len(thumbs), -1)
    mean, std = np.zeros(len(thumbs), np.float32), np.zeros(len(thumbs), np.float32)
    for start in range(0, len(thumbs), _CHUNK):
        chunk = flat[start : start + _CHUNK].astype(np.float32)
        m = chunk.mean(axis=1)
        mean[start : start + _CHUNK] = m
        std[start : start + _CHUNK] = np.sqrt(
            np.maximum(np.einsum("ij,ij->i", chunk, chunk) / chunk.shape[1] - m * m, 0)
        )
    return mean, std


def histograms(values: np.ndarray, y: np.ndarray, num_classes: int, bins: np.ndarray = HIST_BINS) -> np.ndarray:
    """(N,) values -> (K, len(bins) - 1) int histogram counts per class."""
    return np.stack([np.histogram(values[y == k], bins=bins)[0] for k in range(num_classes)])


def dhash(thumbs: np.ndarray) -> np.ndarray:
    """Difference hash: (N, H, W) uint8 grey -> (N,) uint64. Each image is shrunk to 9x8 and each bit
    says whether a pixel is brighter than its right neighbour; robust to scaling, JPEG and brightness."""
    small = (
        np.stack([cv2.resize(t, (9, 8), interpolation=cv2.INTER_AREA) for t in thumbs])
        if len(thumbs)
        else (np.zeros((0, 8, 9), np.uint8))
    )
    bits = (small[:, :, 1:] > small[:, :, :-1]).reshape(len(thumbs), 64)
    return _pack_bits(bits)


def phash(thumbs: np.ndarray) -> np.ndarray:
    """Perceptual hash: (N, H, W) uint8 -> (N,) uint64, the signs of the 8x8 lowest DCT frequencies
    (DC excluded from the median) of the image shrunk to 32x32."""
    bits = np.zeros((len(thumbs), 64), bool)
    for i, t in enumerate(thumbs):
        dct = cv2.dct(cv2.resize(t, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32))[:8, :8].ravel()
        bits[i] = dct > np.median(dct[1:])
    return _pack_bits(bits)


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """(N, 64) bool -> (N,) uint64, first bit most significant."""
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between uint64 hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def near_duplicate_pairs(
    hashes: np.ndarray, threshold: int = NEAR_THRESHOLD, skip: np.ndarray | None = None
) -> np.ndarray:
    """All pairs (i < j) of 64-bit hashes within `threshold` bits: (P, 3) int64 rows (i, j, distance).

    Exact for threshold < 16: the hash is cut into threshold + 1 bands, and two hashes that differ
    in at most `threshold` bits agree on at least one band (pigeonhole), so only pairs sharing a band
    value are compared. `skip` (N,) bool leaves images out (blank ones hash alike).
    """
    if not 0 <= threshold < 16:
        raise ValueError("threshold must be in 0..15")
    index = np.flatnonzero(~skip) if skip is not None else np.arange(len(hashes))
    h = hashes[index]
    bands = threshold + 1
    width = 64 // bands
    found = []
    for b in range(bands):
        shift = np.uint64(64 - width * (b + 1)) if b < bands - 1 else np.uint64(0)
        bits = 64 - width * b - int(shift)
        key = (h >> shift) & np.uint64((1 << bits) - 1)
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        # Equal keys are contiguous after sorting: pair each position with the one `offset` further
        # on while any run of equal keys is longer than `offset`.
        for offset in range(1, len(order)):
            same = np.flatnonzero(sorted_key[:-offset] == sorted_key[offset:])
            if not len(same):
                break
            a, c = order[same], order[same + offset]
            dist = hamming(h[a], h[c])
            close = dist <= threshold
            found.append(np.stack([np.minimum(a, c)[close], np.maximum(a, c)[close], dist[close]], axis=1))
    if not found:
        return np.zeros((0, 3), np.int64)
    pairs = np.unique(np.concatenate(found), axis=0)
    pairs[:, 0], pairs[:, 1] = index[pairs[:, 0]], index[pairs[:, 1]]
    return pairs


def exact_duplicate_groups(digest: np.ndarray) -> list[np.ndarray]:
    """(N,) digests -> groups (arrays of indices, ascending) of images with identical content, size >= 2."""
    _, inverse, counts = np.unique(digest, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    return [np.sort(g) for g, c in zip(groups, counts, strict=True) if c > 1]


@dataclass
class Stats:
    """Everything the explorer shows for one ImageSet (arrays are per image unless said)."""

    counts: pd.DataFrame
    mean_faces: np.ndarray  # (K, 48, 48) float32
    std_faces: np.ndarray  # (K, 48, 48) float32
    brightness: np.ndarray  # (N,) float32
    contrast: np.ndarray  # (N,) float32
    blank: np.ndarray  # (N,) bool
    dhash: np.ndarray  # (N,) uint64
    exact_groups: list[np.ndarray]
    near_pairs: np.ndarray  # (P, 3) i, j, distance (exact duplicates and blanks excluded)


def compute_stats(ds: ImageSet, progress: Progress = _no_progress, near_threshold: int = NEAR_THRESHOLD) -> Stats:
    """All statistics of an ImageSet; a few seconds for FER2013's 35,887 faces."""
    progress(0.0, "Counting classes")
    counts = class_counts(ds.y, ds.split, ds.labels, ds.splits)
    progress(0.1, "Mean and std faces")
    mean, std = mean_std_faces(ds.thumbs, ds.y, len(ds.labels))
    progress(0.3, "Brightness and contrast")
    brightness, contrast = brightness_contrast(ds.thumbs)
    blank = contrast < BLANK_STD
    progress(0.4, "Exact duplicates")
    groups = exact_duplicate_groups(ds.digest)
    progress(0.5, "Perceptual hashes")
    hashes = dhash(ds.thumbs)
    progress(0.7, "Near duplicates")
    pairs = near_duplicate_pairs(hashes, near_threshold, skip=blank | _later_copies(groups, len(ds)))
    progress(1.0, "Done")
    return Stats(counts, mean, std, brightness, contrast, blank, hashes, groups, pairs)


def _later_copies(groups: list[np.ndarray], size: int) -> np.ndarray:
    """(size,) bool: every member of an exact-duplicate group but its first (one copy is enough)."""
    later = np.zeros(size, bool)
    for group in groups:
        later[group[1:]] = True
    return later


def near_duplicates(stats: Stats, threshold: int) -> np.ndarray:
    """Near-duplicate pairs (P, 3) at another `threshold`, leaving out what compute_stats leaves out."""
    skip = stats.blank | _later_copies(stats.exact_groups, len(stats.blank))
    return near_duplicate_pairs(stats.dhash, threshold, skip=skip)


def display_image(ds: ImageSet, index: int, max_side: int = 160) -> np.ndarray:
    """One sample as people should see it: FER's 48x48 face, or a folder image in colour shrunk to
    `max_side` px on its longer side (its grey thumbnail if the file cannot be read any more)."""
    if ds.root is None:
        return ds.thumbs[index]
    try:
        image = load_image(ds.root / ds.sources[index])
    except ImageLoadError:
        return ds.thumbs[index]
    scale = max_side / max(image.shape[:2])
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image


def face_tiles(faces: np.ndarray, size: int = 96) -> tuple[list[np.ndarray], float, float]:
    """(K, 48, 48) float mean or std faces -> K uint8 (size, size) tiles stretched between the
    darkest and brightest value over all K (so classes compare on one scale), and those two values."""
    low, high = float(faces.min()), float(faces.max())
    scaled = np.clip((faces - low) * (255.0 / max(high - low, 1e-6)), 0, 255).astype(np.uint8)
    return [cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC) for face in scaled], low, high


def label_conflicts(groups: list[np.ndarray], y: np.ndarray) -> list[np.ndarray]:
    """Duplicate groups whose members carry more than one label (the same image under two labels)."""
    return [g for g in groups if len(np.unique(y[g])) > 1]


def pair_conflicts(pairs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Near-duplicate pairs (P, 3) whose two images have different labels."""
    return pairs[y[pairs[:, 0]] != y[pairs[:, 1]]] if len(pairs) else pairs


def cross_split(groups: list[np.ndarray], split: np.ndarray) -> list[np.ndarray]:
    """Duplicate groups spread over more than one split (test images also seen in training)."""
    return [g for g in groups if len(np.unique(split[g])) > 1]


def sample_indices(y: np.ndarray, num_classes: int, per_class: int, seed: int) -> list[np.ndarray]:
    """Up to `per_class` random image indices for each class, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(num_classes):
        members = np.flatnonzero(y == k)
        out.append(np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False)))
    return out


def summary(ds: ImageSet, stats: Stats) -> dict:
    """The numbers of a dataset's statistics as JSON-ready data (no image): the format of
    data/derived/fer2013_stats.json, which the explorer shows when the dataset is absent."""
    k = len(ds.labels)
    per_split = {
        name: {lab: int(c) for lab, c in zip(ds.labels, np.bincount(ds.y[ds.split == s], minlength=k), strict=True)}
        for s, name in enumerate(ds.splits)
    }
    total = np.bincount(ds.y, minlength=k)
    dup_extra = sum(len(g) - 1 for g in stats.exact_groups)
    return {
        "dataset": ds.name,
        "labels": list(ds.labels),
        "splits": list(ds.splits),
        "images": len(ds),
        "malformed_rows": len(ds.problems),
        "class_counts": per_split,
        "imbalance_ratio": {
            **{s: imbalance_ratio(list(c.values())) for s, c in per_split.items()},
            "all": imbalance_ratio(total),
        },
        "histogram_bins": HIST_BINS.tolist(),
        "brightness_hist": dict(zip(ds.labels, histograms(stats.brightness, ds.y, k).tolist(), strict=True)),
        "contrast_hist": dict(zip(ds.labels, histograms(stats.contrast, ds.y, k).tolist(), strict=True)),
        "brightness_mean": {lab: _mean(stats.brightness[ds.y == i]) for i, lab in enumerate(ds.labels)},
        "contrast_mean": {lab: _mean(stats.contrast[ds.y == i]) for i, lab in enumerate(ds.labels)},
        "brightness_percentiles": _percentiles(stats.brightness),
        "contrast_percentiles": _percentiles(stats.contrast),
        "blank": {
            "threshold_std": BLANK_STD,
            "count": int(stats.blank.sum()),
            "per_split": {s: int(stats.blank[ds.split == i].sum()) for i, s in enumerate(ds.splits)},
        },
        "exact_duplicates": {
            "groups": len(stats.exact_groups),
            "redundant_images": dup_extra,
            "cross_split_groups": len(cross_split(stats.exact_groups, ds.split)),
            "label_conflict_groups": len(label_conflicts(stats.exact_groups, ds.y)),
        },
        "near_duplicates": {
            "hash": "dHash 64-bit on the 48x48 grey image",
            "threshold_bits": NEAR_THRESHOLD,
            "pairs": len(stats.near_pairs),
            "label_conflict_pairs": len(pair_conflicts(stats.near_pairs, ds.y)),
        },
    }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    """The 1st, 10th, 50th, 90th and 99th percentiles of (N,) values, keyed "p1".. "p99"."""
    qs = (1, 10, 50, 90, 99)
    return {f"p{q}": float(v) for q, v in zip(qs, np.percentile(values, qs), strict=True)} if len(values) else {}


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


# -------------------------------------------------------------------------------- derived data


def write_derived(csv_path: Path, out_dir: Path = config.DERIVED_DIR) -> dict:
    """Compute FER2013's statistics and write fer2013_stats.json and fer2013_faces.npz to out_dir."""
    started = time.perf_counter()
    ds = load_fer2013_arrays(csv_path)
    stats = compute_stats(ds)
    data = summary(ds, stats)
    data["source"] = {"file": csv_path.name, "sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest()}
    data["generated_by"] = "python -m studio.eda --derive"
    data["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    data["seconds"] = round(time.perf_counter() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / STATS_JSON.name).write_text(json.dumps(data, indent=1) + "\n")
    np.savez_compressed(
        out_dir / FACES_NPZ.name,
        labels=np.array(ds.labels),
        mean=stats.mean_faces.astype(np.float16),
        std=stats.std_faces.astype(np.float16),
    )
    return data


def read_derived(directory: Path = config.DERIVED_DIR) -> tuple[dict, np.ndarray, np.ndarray] | None:
    """(summary, mean faces (K, 48, 48), std faces (K, 48, 48)) shipped in data/derived, or None."""
    stats_file, faces_file = directory / STATS_JSON.name, directory / FACES_NPZ.name
    if not (stats_file.is_file() and faces_file.is_file()):
        return None
    with np.load(faces_file, allow_pickle=False) as faces:
        return json.loads(stats_file.read_text()), faces["mean"].astype(np.float32), faces["std"].astype(np.float32)


# ---------------------------------------------------------------------------------- zip upload


class UnsafeArchiveError(ValueError):
    """A zip that may not be extracted (path traversal, links, bomb); the message is for the user."""


def safe_extract_zip(data: bytes | io.BufferedIOBase, target: Path) -> int:
    """Extract the image files of a zip into `target`; returns how many were written.

    Rejects (UnsafeArchiveError, nothing left behind) absolute or '..' paths, links, more than
    MAX_ZIP_MEMBERS entries, more than MAX_ZIP_BYTES in total, and members whose compression ratio
    is above MAX_ZIP_RATIO. Sizes are counted while writing, not trusted from the header.
    """
    target = Path(target).resolve()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except zipfile.BadZipFile as error:
        raise UnsafeArchiveError(f"not a zip file ({error})") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise UnsafeArchiveError(f"{len(members):,} entries; the limit is {MAX_ZIP_MEMBERS:,}")
        for info in members:
            _check_member(info, target)
        written, total = 0, 0
        target.mkdir(parents=True, exist_ok=True)
        try:
            for info in members:
                if info.is_dir() or Path(info.filename).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if any(part.startswith(".") or part == "__MACOSX" for part in Path(info.filename).parts):
                    continue
                dest = target / info.filename
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(dest, "wb") as out:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > MAX_ZIP_BYTES or out.tell() + len(chunk) > MAX_ZIP_RATIO * max(
                            info.compress_size, 1024
                        ):
                            raise UnsafeArchiveError("the archive expands far beyond its size (zip bomb?)")
                        out.write(chunk)
                written += 1
        except (UnsafeArchiveError, zipfile.BadZipFile, OSError) as error:
            shutil.rmtree(target, ignore_errors=True)
            raise UnsafeArchiveError(str(error)) from None
    return written


def _check_member(info: zipfile.ZipInfo, target: Path) -> None:
    name = info.filename
    if name.startswith(("/", "\\")) or ":" in name or ".." in Path(name.replace("\\", "/")).parts:
        raise UnsafeArchiveError(f"unsafe path in the archive: {name!r}")
    if not (target / name).resolve().is_relative_to(target):
        raise UnsafeArchiveError(f"unsafe path in the archive: {name!r}")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchiveError(f"link in the archive: {name!r}")
    if info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1024) or info.file_size > MAX_ZIP_BYTES:
        raise UnsafeArchiveError(f"{name!r} expands far beyond its size (zip bomb?)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--derive", action="store_true", help="write data/derived/fer2013_stats.json and faces .npz")
    parser.add_argument("--csv", type=Path, default=None, help="FER2013 CSV (default: config.find_fer2013_csv())")
    args = parser.parse_args(argv)
    if not args.derive:
        parser.error("nothing to do: pass --derive")
    csv_path = args.csv or config.find_fer2013_csv()
    if csv_path is None:
        raise SystemExit(config.FER2013_MISSING_HELP)
    data = write_derived(csv_path)
    print(json.dumps({k: data[k] for k in ("images", "exact_duplicates", "near_duplicates", "blank", "seconds")}))


if __name__ == "__main__":
    main()
