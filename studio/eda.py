"""Dataset statistics for the explorer: class balance, mean/std faces, brightness/contrast,
perceptual hashes, duplicates, blanks and label conflicts, of an `emotion.datasets.ImageSet`.

Every image is looked at as the models see it: grey, 48x48. FER2013's statistics are computed once
and kept under `config.CACHE_DIR` (`cached_stats`). `python -m studio.eda --derive` writes the
numbers the project ships in data/derived/fer2013_stats.json (never an image of the dataset: the
mean and std faces are computed at run time, when the data is on the machine).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pandas as pd

from emotion import config
from emotion.datasets import (
    BLANK_STD,
    ImageSet,
    Progress,
    exact_duplicate_groups,
    fer2013_cache_file,
    file_key,
    grey_std,
    later_copies,
    load_fer2013,
    no_progress,
    save_npz,
    single_flight,
)
from emotion.explain import exit_with_parent
from emotion.imageio import ImageLoadError, load_image

NEAR_THRESHOLD = 3  # dHash Hamming distance counted as a near duplicate
HIST_BINS = np.linspace(0.0, 256.0, 33)  # 32 bins of grey level (brightness) / std (contrast)
log = logging.getLogger(__name__)

STATS_JSON = config.DERIVED_DIR / "fer2013_stats.json"
_CHUNK = 512  # images per float32 block in the moment computations
_STATS_VERSION = 1  # bump when Stats' cached format changes


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
    """(N, H, W) uint8 -> per-image mean grey level (brightness) and grey-level std (contrast, the
    measure of emotion.datasets' blank test), (N,) float32 each."""
    flat = thumbs.reshape(len(thumbs), -1)
    mean = np.zeros(len(thumbs), np.float32)
    for start in range(0, len(thumbs), _CHUNK):
        mean[start : start + _CHUNK] = flat[start : start + _CHUNK].astype(np.float32).mean(axis=1)
    return mean, grey_std(thumbs)


def histograms(values: np.ndarray, y: np.ndarray, num_classes: int, bins: np.ndarray = HIST_BINS) -> np.ndarray:
    """(N,) values -> (K, len(bins) - 1) int histogram counts per class."""
    return np.stack([np.histogram(values[y == k], bins=bins)[0] for k in range(num_classes)])


def dhash(thumbs: np.ndarray) -> np.ndarray:
    """Difference hash: (N, H, W) uint8 grey -> (N,) uint64. Each image is shrunk to 9x8 and each bit
    says whether a pixel is brighter than its right neighbour; robust to scaling, JPEG and brightness."""
    if isinstance(thumbs, np.ndarray) and thumbs.ndim == 3 and len(thumbs) and thumbs.shape[1] % 8 == 0:
        # One resize of the stack (N*H, W) -> (N*8, 9): rows shrink by a whole factor, so INTER_AREA never
        # mixes two images, and the result is each image's own resize (a tenth of the time for FER2013).
        n, h, w = thumbs.shape
        small = cv2.resize(np.ascontiguousarray(thumbs).reshape(n * h, w), (9, n * 8), interpolation=cv2.INTER_AREA)
        small = small.reshape(n, 8, 9)
    elif len(thumbs):
        small = np.stack([cv2.resize(t, (9, 8), interpolation=cv2.INTER_AREA) for t in thumbs])
    else:
        small = np.zeros((0, 8, 9), np.uint8)
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


def compute_stats(ds: ImageSet, progress: Progress = no_progress, near_threshold: int = NEAR_THRESHOLD) -> Stats:
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
    pairs = near_duplicate_pairs(hashes, near_threshold, skip=blank | later_copies(groups, len(ds)))
    progress(1.0, "Done")
    return Stats(counts, mean, std, brightness, contrast, blank, hashes, groups, pairs)


def stats_cache_file(key: str, cache_dir: Path | None) -> Path | None:
    """Where cached_stats keeps the statistics of the set with cache `key` (ImageSet.key); None when there
    is no cache folder or no key (folders)."""
    return cache_dir / f"stats_v{_STATS_VERSION}_{key}.npz" if cache_dir and key else None


def cached_stats(
    ds: ImageSet, progress: Progress = no_progress, cache_dir: Path | Literal["config"] | None = "config"
) -> tuple[Stats, dict]:
    """(Stats, summary) of an ImageSet, computed once and then read from `cache_dir` ("config":
    config.CACHE_DIR as it is when called; None: no cache) when the set has a cache key (FER2013:
    its file's path, size and mtime); folders are computed each time."""
    cache_dir = config.CACHE_DIR if cache_dir == "config" else cache_dir
    cache = stats_cache_file(ds.key, cache_dir)
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            sizes = data["group_sizes"]
            groups = np.split(data["group_members"], np.cumsum(sizes)[:-1]) if len(sizes) else []
            stats = Stats(
                class_counts(ds.y, ds.split, ds.labels, ds.splits),
                data["mean_faces"],
                data["std_faces"],
                data["brightness"],
                data["contrast"],
                data["blank"],
                data["dhash"],
                groups,
                data["near_pairs"],
            )
            return stats, json.loads(str(data["summary"]))
    if cache is None:
        stats = compute_stats(ds, progress)
        return stats, summary(ds, stats)
    # One computation per cache file at a time in this process (the start-up warm-up and a first visitor).
    return single_flight(f"stats|{cache}", lambda: _compute_and_save(ds, progress, cache))


def _compute_and_save(ds: ImageSet, progress: Progress, cache: Path) -> tuple[Stats, dict]:
    """compute_stats and summary, written to the `cache` file."""
    stats = compute_stats(ds, progress)
    result = summary(ds, stats)
    members = np.concatenate(stats.exact_groups) if stats.exact_groups else np.zeros(0, np.int64)
    save_npz(
        cache,
        mean_faces=stats.mean_faces,
        std_faces=stats.std_faces,
        brightness=stats.brightness,
        contrast=stats.contrast,
        blank=stats.blank,
        dhash=stats.dhash,
        group_members=members,
        group_sizes=np.array([len(g) for g in stats.exact_groups], np.int64),
        near_pairs=stats.near_pairs,
        summary=np.array(json.dumps(result)),
    )
    return stats, result


def warm_fer2013_cache(in_child: bool = False) -> bool:
    """Parse FER2013 and compute its statistics into the cache when the dataset is here and the cache is
    not filled yet (a few seconds of both cores, once per machine); True when there was work to do.

    The app runs this in a background thread when it starts (pages.common.start_cache_warmup), so that
    the explorer's first visitor reads the cache. in_child=True parses in a child process (`python -m
    studio.eda --warm`): a parse in the server's own process holds the interpreter lock in many short
    stretches, and every page rendered meanwhile ran several times slower. A visitor who comes earlier
    waits for that same work instead of repeating it (single_flight in load_fer2013)."""
    csv = config.find_fer2013_csv()
    if csv is None:
        return False
    shipped_summary(csv)  # hash the file now, not during the explorer's first visit
    key = file_key(csv)  # both caches are keyed by the file: filled ones are not even opened
    arrays, stats = fer2013_cache_file(key, config.CACHE_DIR), stats_cache_file(key, config.CACHE_DIR)
    if arrays.is_file() and stats.is_file():
        return False
    ds = load_fer2013(csv, fill=functools.partial(_warm_in_child, csv) if in_child else None)
    if not stats.is_file():  # the child writes both; a parse in this process (no child, or it failed) only one
        cached_stats(ds)
    return True


def _warm_in_child(csv: Path, cache_dir: Path) -> None:
    """Fill both FER2013 caches in `python -m studio.eda --warm`; a failure is logged, and load_fer2013
    then parses the file in this process."""
    command = [sys.executable, "-m", "studio.eda", "--warm", "--csv", str(csv), "--cache-dir", str(cache_dir)]
    command += ["--parent", str(os.getpid())]
    try:
        subprocess.run(command, cwd=config.REPO_ROOT, check=True, capture_output=True, text=True, timeout=600)
    except subprocess.CalledProcessError as error:
        log.error("FER2013 warm-up process failed (exit %s): %s", error.returncode, error.stderr[-2000:])
    except (OSError, subprocess.TimeoutExpired) as error:
        log.error("FER2013 warm-up process did not run: %s", error)


def near_duplicates(stats: Stats, threshold: int) -> np.ndarray:
    """Near-duplicate pairs (P, 3) at another `threshold`, leaving out what compute_stats leaves out."""
    skip = stats.blank | later_copies(stats.exact_groups, len(stats.blank))
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
    """Compute FER2013's statistics and write their numbers (no image) to out_dir/fer2013_stats.json."""
    started = time.perf_counter()
    ds = load_fer2013(csv_path, cache_dir=None)
    data = summary(ds, compute_stats(ds))
    data["source"] = {"file": csv_path.name, "sha256": file_sha256(csv_path)}
    data["generated_by"] = "python -m studio.eda --derive"
    data["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    data["seconds"] = round(time.perf_counter() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / STATS_JSON.name).write_text(json.dumps(data, indent=1) + "\n")
    return data


def read_derived(directory: Path = config.DERIVED_DIR) -> dict | None:
    """The FER2013 summary shipped in data/derived (the format of `summary`), or None. It holds no
    image: the mean and std faces need the dataset on this machine."""
    stats_file = directory / STATS_JSON.name
    return json.loads(stats_file.read_text()) if stats_file.is_file() else None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex (a tenth of a second for FER2013's gzip)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def shipped_summary(csv_path: Path) -> dict | None:
    """shipped_summary_for with data/derived, hashed once per file version in this process."""
    return _shipped_summary(str(csv_path), file_key(csv_path))


@functools.lru_cache(maxsize=4)
def _shipped_summary(path: str, key: str) -> dict | None:  # key: the file's version, part of the cache key
    return shipped_summary_for(Path(path))


def shipped_summary_for(csv_path: Path, directory: Path = config.DERIVED_DIR) -> dict | None:
    """The shipped summary (read_derived) when it was computed from this very file (same SHA-256),
    else None: then the numbers must come from the file itself (cached_stats)."""
    shipped = read_derived(directory)
    if shipped is None or "sha256" not in shipped.get("source", {}):
        return None
    return shipped if shipped["source"]["sha256"] == file_sha256(csv_path) else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--derive", action="store_true", help="write data/derived/fer2013_stats.json")
    parser.add_argument("--warm", action="store_true", help="fill the explorer's FER2013 caches (the app's warm-up)")
    parser.add_argument("--csv", type=Path, default=None, help="FER2013 CSV (default: config.find_fer2013_csv())")
    parser.add_argument("--cache-dir", type=Path, default=None, help="--warm: the cache folder (default: the app's)")
    parser.add_argument("--parent", type=int, default=None, help="--warm: end when this process is gone (its pid)")
    args = parser.parse_args(argv)
    if not (args.derive or args.warm):
        parser.error("nothing to do: pass --derive or --warm")
    csv_path = args.csv or config.find_fer2013_csv()
    if csv_path is None:
        raise SystemExit(config.FER2013_MISSING_HELP)
    if args.warm:
        if hasattr(os, "nice"):
            os.nice(10)  # background work: the server's pages and their browsers come first on a busy CPU
        if args.parent is not None:  # a stopped server leaves no parse behind (the caches are written atomically)
            exit_with_parent(args.parent, poll_s=0.5)
        cache_dir = args.cache_dir or "config"
        cached_stats(load_fer2013(csv_path, cache_dir), cache_dir=cache_dir)
        return
    data = write_derived(csv_path)
    print(json.dumps({k: data[k] for k in ("images", "exact_duplicates", "near_duplicates", "blank", "seconds")}))


if __name__ == "__main__":
    main()
