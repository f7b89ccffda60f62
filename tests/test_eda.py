"""emotion.datasets' readers and studio.eda's statistics on synthetic data (and, with ../shared, on FER2013)."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from emotion import config, datasets
from emotion.datasets import ImageSet, find_dirty
from studio import eda
from tests.support import csv_bytes_for_tests


def _faces(n: int, seed: int = 0) -> np.ndarray:
    """(n, 48, 48) uint8 smooth random images (distinct dHashes)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 5, 5)).astype(np.float32)
    return np.stack([np.clip(cv2.resize(s, (48, 48), interpolation=cv2.INTER_CUBIC), 0, 255) for s in small]).astype(
        np.uint8
    )


def _image_set(thumbs: np.ndarray, y: np.ndarray, split: np.ndarray | None = None) -> ImageSet:
    n = len(y)
    split = np.zeros(n, np.int64) if split is None else split
    return ImageSet(
        "synthetic", ("a", "b", "c"), ("Training", "PrivateTest"), thumbs, y, split, datasets.digests(thumbs),
        [f"row {i}" for i in range(n)], np.full((n, 2), 48), ["L"] * n,
    )  # fmt: skip


def _reference_read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A plain csv-module reader of well-formed rows: (images, labels, split index)."""
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as handle:
        rows = list(csv.DictReader(handle))
    images = np.array([np.array(r["pixels"].split(), np.uint8).reshape(48, 48) for r in rows])
    labels = np.array([int(r["emotion"]) for r in rows])
    split = np.array([datasets.FER_SPLITS.index(r["Usage"]) for r in rows])
    return images, labels, split


@pytest.mark.parametrize("name", ["fer.csv", "fer.csv.gz"])
def test_fast_reader_matches_reference_reader(tmp_path, monkeypatch, name):
    # Tiny blocks and pieces, so rows straddle the boundaries of what is inflated and parsed at a time.
    monkeypatch.setattr(datasets, "_PIECE", 1000)
    monkeypatch.setattr(datasets, "_BLOCK", 20_000)
    rng = np.random.default_rng(1)
    rows = [
        (int(rng.integers(0, 7)), rng.integers(0, 256, 2304), u) for u in ("Training", "PublicTest", "PrivateTest") * 9
    ]
    csv_path = tmp_path / name
    text = csv_bytes_for_tests(rows)
    csv_path.write_bytes(gzip.compress(text[:5000]) + gzip.compress(text[5000:]) if name.endswith(".gz") else text)
    images, labels, split, source_rows, problems, _digests = datasets.read_fer2013_csv(csv_path)
    ref_images, ref_labels, ref_split = _reference_read(csv_path)
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(split, ref_split)
    assert problems == [] and source_rows.tolist() == list(range(27))


def test_fast_reader_skips_malformed_rows(tmp_path):
    good = np.full(2304, 7)
    text = csv_bytes_for_tests(
        [(1, good, "Training"), (9, good, "Training"), (2, good, "Nope"), (3, good, "PrivateTest")]
    )
    text += b"4,1 2 3,Training\n5," + b" ".join([b"300"] * 2304) + b",Training\n"
    text += b"1.5," + b" ".join([b"7"] * 2304) + b",Training\n"
    csv = tmp_path / "bad.csv"
    csv.write_bytes(text)
    images, labels, _split, rows, problems, _digests = datasets.read_fer2013_csv(csv)
    assert labels.tolist() == [1, 3] and rows.tolist() == [0, 3] and len(problems) == 5
    assert images.dtype == np.uint8 and images.shape == (2, 48, 48) and (images == 7).all()


def test_fast_path_takes_clean_blocks_and_hands_odd_ones_to_the_row_parser(tmp_path, monkeypatch):
    good = np.arange(2304) % 256
    clean = tmp_path / "clean.csv"
    clean.write_bytes(csv_bytes_for_tests([(3, good, "Training"), (5, good, "PublicTest")]).replace(b"\n", b"\r\n"))

    def row_parser(*args):
        raise AssertionError("a clean block went to the row-by-row parser")

    with monkeypatch.context() as patch:
        patch.setattr(datasets, "_parse_lines", row_parser)
        images, labels, split, _rows, problems, _digests = datasets.read_fer2013_csv(clean)  # CRLF line ends too
    assert labels.tolist() == [3, 5] and split.tolist() == [0, 1] and problems == []
    assert (images.reshape(2, -1) == good).all()
    pixels = [str(v) for v in good]
    odd = tmp_path / "odd.csv"
    odd.write_text(
        "emotion,pixels,Usage\n"
        f"1,{' '.join(['007', *pixels[1:]])},Training\n"  # a leading zero: still 7
        f"2,{' '.join(['65543', *pixels[1:]])},Training\n"  # int16 would wrap this to 7
        f"3,{' '.join(pixels[:-1])},Training\n"  # 2303 values ...
        f"4,{' '.join([*pixels, '9'])},Training\n"  # ... then 2305: the total is right, both rows are wrong
        f"5,{' '.join(pixels)},PrivateTest\n"
    )
    images, labels, _split, rows, problems, _digests = datasets.read_fer2013_csv(odd)
    assert labels.tolist() == [1, 5] and rows.tolist() == [0, 4] and len(problems) == 3
    assert images[0].ravel()[0] == 7 and (images[1].ravel() == good).all()


def test_fer_arrays_are_cached_on_disk(tmp_path):
    csv = tmp_path / "fer.csv"
    csv.write_bytes(csv_bytes_for_tests([(0, np.arange(2304) % 256, "Training"), (6, np.zeros(2304), "PrivateTest")]))
    first = datasets.load_fer2013(csv, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("fer2013_*.npz"))) == 1
    second = datasets.load_fer2013(csv, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.thumbs, second.thumbs)
    assert second.sources == ["row 2", "row 3"] and second.splits[second.split[1]] == "PrivateTest"
    assert first.key == second.key != ""
    # The digests made while parsing, and the cached ones, are the one content hash of each image.
    np.testing.assert_array_equal(first.digest, datasets.digests(first.thumbs))
    np.testing.assert_array_equal(second.digest, first.digest)


def test_dhash_of_a_stack_is_each_images_own():
    images = np.random.default_rng(0).integers(0, 256, (300, 48, 48), dtype=np.uint8)
    np.testing.assert_array_equal(eda.dhash(images), eda.dhash(list(images)))  # the one-resize path and the loop


def test_cache_folder_is_read_from_config_when_called(tmp_path, monkeypatch):
    csv = tmp_path / "fer.csv"
    csv.write_bytes(csv_bytes_for_tests([(0, np.arange(2304) % 256, "Training")]))
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "elsewhere")
    ds = datasets.load_fer2013(csv)
    eda.cached_stats(ds)
    assert len(list((tmp_path / "elsewhere").glob("*.npz"))) == 2  # the arrays and their statistics


def test_cache_folder_follows_the_data_folder(tmp_path):
    """EMOTION_DATA_DIR moves the cache with it; EMOTION_CACHE_DIR moves the cache alone."""
    script = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('c', sys.argv[1]); "
        "c = importlib.util.module_from_spec(spec); spec.loader.exec_module(c); print(c.CACHE_DIR)"
    )
    run = [sys.executable, "-c", script, str(config.REPO_ROOT / "emotion" / "config.py")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTION_")}
    moved = subprocess.run(run, env={**env, "EMOTION_DATA_DIR": str(tmp_path)}, capture_output=True, text=True)
    assert moved.stdout.strip() == str((tmp_path / "cache").resolve())
    alone = subprocess.run(run, env={**env, "EMOTION_CACHE_DIR": str(tmp_path / "c")}, capture_output=True, text=True)
    assert alone.stdout.strip() == str((tmp_path / "c").resolve())


def test_statistics_are_cached_on_disk(tmp_path):
    faces = _faces(30)
    ds = _image_set(np.concatenate([faces, faces[:2], np.zeros((1, 48, 48), np.uint8)]), np.arange(33) % 3)
    fresh, fresh_summary = eda.cached_stats(ds, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # no cache key (a folder dataset): nothing written
    ds.key = "abc"
    eda.cached_stats(ds, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("stats_*abc.npz"))) == 1
    cached, cached_summary = eda.cached_stats(ds, cache_dir=tmp_path)
    assert json.dumps(cached_summary) == json.dumps(fresh_summary)  # (NaN != NaN, so compare as text)
    for name in ("mean_faces", "std_faces", "brightness", "contrast", "blank", "dhash", "near_pairs"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(fresh, name))
    assert [g.tolist() for g in cached.exact_groups] == [g.tolist() for g in fresh.exact_groups] == [[0, 30], [1, 31]]
    assert cached.counts.equals(fresh.counts)


def test_class_counts_and_imbalance():
    y, split = np.array([0, 0, 0, 1, 2, 2]), np.array([0, 0, 1, 0, 0, 1])
    frame = eda.class_counts(y, split, ("a", "b", "c"), ("Training", "PrivateTest"))
    train = frame[frame.split == "Training"].set_index("label")
    assert train["count"].tolist() == [2, 1, 1] and train["percent"].tolist() == [50.0, 25.0, 25.0]
    assert eda.imbalance_ratio([10, 5, 2]) == 5.0
    assert eda.imbalance_ratio([3, 0]) == float("inf")


def test_mean_std_faces_and_brightness():
    thumbs = np.stack([np.full((48, 48), v, np.uint8) for v in (10, 30, 200)])
    thumbs[2, :24] = 0
    mean, std = eda.mean_std_faces(thumbs, np.array([0, 0, 1]), 3)
    assert mean.shape == (3, 48, 48) and np.allclose(mean[0], 20) and np.allclose(std[0], 10)
    assert np.allclose(mean[2], 0) and np.allclose(std[1], 0)
    brightness, contrast = eda.brightness_contrast(thumbs)
    np.testing.assert_allclose(brightness, [10, 30, 100], atol=1e-4)
    np.testing.assert_allclose(contrast, [0, 0, 100], atol=1e-2)
    hist = eda.histograms(brightness, np.array([0, 0, 1]), 3)
    assert hist.shape == (3, 32) and hist.sum(axis=1).tolist() == [2, 1, 0]


def test_hashes_are_robust_to_small_changes_and_tell_images_apart():
    faces = _faces(40)
    noisy = np.clip(faces.astype(int) + np.random.default_rng(2).integers(-3, 4, faces.shape), 0, 255).astype(np.uint8)
    for hasher in (eda.dhash, eda.phash):
        a, b = hasher(faces), hasher(noisy)
        assert a.dtype == np.uint64 and a.shape == (40,)
        assert np.median(eda.hamming(a, b)) <= 2
        others = eda.hamming(a[:, None], a[None, :])[np.triu_indices(40, 1)]
        assert np.median(others) > 20


def test_near_duplicate_pairs_match_brute_force():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, 300).astype(np.uint64)
    hashes = np.concatenate([base, base[:100] ^ flips[:100], base[:50] ^ flips[100:150] ^ flips[150:200]])
    for threshold in (0, 1, 3, 6):
        pairs = eda.near_duplicate_pairs(hashes, threshold)
        dist = eda.hamming(hashes[:, None], hashes[None, :])
        ii, jj = np.nonzero(np.triu(dist <= threshold, 1))
        assert {tuple(p) for p in pairs[:, :2].tolist()} == set(zip(ii.tolist(), jj.tolist(), strict=True))
        assert (pairs[:, 2] == dist[pairs[:, 0], pairs[:, 1]]).all()
    skip = np.zeros(len(hashes), bool)
    skip[:100] = True
    assert not np.isin(eda.near_duplicate_pairs(hashes, 3, skip=skip)[:, :2], np.arange(100)).any()


def test_stats_agree_with_find_dirty_and_find_conflicts():
    faces = _faces(30)
    thumbs = np.concatenate([faces, faces[:3], np.full((2, 48, 48), 90, np.uint8)])
    y = np.concatenate([np.arange(30) % 3, [0, 2, 2], [1, 1]])
    y[0], y[1] = 0, 1  # copies: 30 is face 0 labelled 0 (same), 31 is face 1 labelled 2 (conflict)
    split = np.zeros(len(y), np.int64)
    split[32] = 1
    ds = _image_set(thumbs, y, split)
    stats = eda.compute_stats(ds)
    duplicate, blank = find_dirty(list(thumbs))
    assert (stats.blank == blank).all() and blank.sum() == 2
    later = np.zeros(len(y), bool)
    for group in stats.exact_groups:
        later[group[1:]] = True
    assert (later == duplicate).all()
    assert [g.tolist() for g in eda.label_conflicts(stats.exact_groups, y)] == [[1, 31]]
    assert [g.tolist() for g in eda.cross_split(stats.exact_groups, split)] == [[2, 32]]
    summary = eda.summary(ds, stats)
    json.dumps(summary)  # JSON-ready
    assert summary["exact_duplicates"] == {
        "groups": 4, "redundant_images": 4, "cross_split_groups": 1, "label_conflict_groups": 1,
    }  # fmt: skip
    assert summary["class_counts"]["PrivateTest"] == {"a": 0, "b": 0, "c": 1}
    # Re-asked at another threshold (the explorer's slider), the same images stay out.
    assert np.array_equal(eda.near_duplicates(stats, eda.NEAR_THRESHOLD), stats.near_pairs)
    loose = eda.near_duplicates(stats, 15)
    assert len(loose) >= len(stats.near_pairs)
    assert not np.isin(loose[:, :2], np.flatnonzero(blank | later)).any()


def test_sample_indices_reproducible_and_within_class():
    y = np.array([0] * 20 + [1] * 3 + [2] * 10)
    a, b = eda.sample_indices(y, 3, 5, seed=4), eda.sample_indices(y, 3, 5, seed=4)
    assert all((p == q).all() for p, q in zip(a, b, strict=True))
    assert [len(p) for p in a] == [5, 3, 5] and all((y[p] == k).all() for k, p in enumerate(a))
    assert any((p != q).any() for p, q in zip(a, eda.sample_indices(y, 3, 5, seed=5), strict=True))


def test_display_image_and_face_tiles(tmp_path):
    faces = _faces(6)
    fer = _image_set(faces, np.arange(6) % 3)
    assert np.array_equal(eda.display_image(fer, 4), fer.thumbs[4])  # FER: the 48x48 face itself
    (tmp_path / "ds" / "happy").mkdir(parents=True)
    photo = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "ds" / "happy" / "big.png")
    Image.fromarray(photo[:90, :120]).save(tmp_path / "ds" / "happy" / "small.png")
    folder = datasets.scan_folder(tmp_path / "ds")
    shown = {folder.sources[i]: eda.display_image(folder, i) for i in range(len(folder))}
    assert shown["happy/big.png"].shape == (120, 160, 3)  # shrunk to 160 px on its longer side, in colour
    assert np.array_equal(shown["happy/small.png"], photo[:90, :120])  # small images are not enlarged
    (tmp_path / "ds" / "happy" / "big.png").unlink()
    gone = folder.sources.index("happy/big.png")
    # A file gone since the scan: its thumbnail.
    assert np.array_equal(eda.display_image(folder, gone), folder.thumbs[gone])

    mean = eda.mean_std_faces(faces, np.arange(6) % 3, 3)[0]
    tiles, low, high = eda.face_tiles(mean, size=96)
    assert (low, high) == (float(mean.min()), float(mean.max()))
    assert len(tiles) == 3 and all(t.shape == (96, 96) and t.dtype == np.uint8 for t in tiles)
    assert min(int(t.min()) for t in tiles) <= 2 and max(int(t.max()) for t in tiles) >= 253  # one shared stretch
    flat, _, _ = eda.face_tiles(np.full((2, 48, 48), 7.0, np.float32))
    assert all((t == 0).all() for t in flat)  # a constant input does not divide by zero


def _write_folder(root: Path) -> None:
    rng = np.random.default_rng(5)
    for label, n in (("anger", 3), ("happy", 2), ("uncertain", 1)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (60 + 10 * i, 80, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.jpg")
    Image.fromarray(np.full((30, 30), 128, np.uint8)).save(root / "happy" / "grey.png")
    (root / "happy" / "broken.jpg").write_bytes(b"not an image")
    (root / "happy" / "notes.txt").write_text("ignored")


def test_scan_folder(tmp_path):
    _write_folder(tmp_path / "ds")
    ds = datasets.scan_folder(tmp_path / "ds")
    assert ds.labels == ("angry", "happy", "uncertain") and ds.splits == ("all",)
    assert len(ds) == 7 and ds.thumbs.shape == (7, 48, 48) and len(ds.problems) == 1
    assert "broken.jpg" in ds.problems[0]
    assert sorted({tuple(s) for s in ds.sizes.tolist()})[:2] == [(30, 30), (80, 60)]
    assert set(ds.modes) == {"RGB", "L"}
    assert datasets.folder_signature(tmp_path / "ds") == datasets.folder_signature(tmp_path / "ds")
    stats = eda.compute_stats(ds)
    assert stats.mean_faces.shape == (3, 48, 48)


def test_derived_data_shipped_and_consistent():
    summary = eda.read_derived()
    assert summary is not None, "data/derived is missing: run python -m studio.eda --derive"
    assert summary["images"] == sum(sum(c.values()) for c in summary["class_counts"].values())
    assert summary["class_counts"]["Training"]["disgust"] == 436  # as in the dataset's README
    # Numbers only: no image of the dataset (not even mean faces) is shipped.
    shipped = sorted(p.name for p in config.DERIVED_DIR.iterdir())
    assert shipped == ["fer2013_stats.json"], shipped


def test_shipped_summary_serves_only_the_file_it_was_computed_from(tmp_path):
    derived = tmp_path / "derived"
    derived.mkdir()
    data = tmp_path / "fer2013.csv"
    data.write_bytes(b"emotion,pixels,Usage\n")
    (derived / "fer2013_stats.json").write_text(json.dumps({"images": 0, "source": {"sha256": eda.file_sha256(data)}}))
    assert eda.shipped_summary_for(data, derived)["images"] == 0
    data.write_bytes(b"emotion,pixels,Usage\n3,0 0,Training\n")  # another file at the same path
    assert eda.shipped_summary_for(data, derived) is None
    (derived / "fer2013_stats.json").write_text(json.dumps({"images": 0}))  # no digest: never trusted
    assert eda.shipped_summary_for(data, derived) is None
    assert eda.shipped_summary_for(data, tmp_path / "none") is None


def test_warm_up_parses_here_when_its_child_process_fails(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "fer2013.csv").write_bytes(csv_bytes_for_tests([(3, np.arange(2304) % 256, "Training")]))
    monkeypatch.setattr(config, "DATA_DIR", folder)
    monkeypatch.setattr(config, "SHARED_DIR", tmp_path / "none")
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(eda.sys, "executable", "/bin/false")  # the child exits 1 at once
    assert eda.warm_fer2013_cache(in_child=True) is True
    assert "warm-up process failed" in caplog.text
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


@pytest.mark.shared
@pytest.mark.slow
def test_fer2013_real_file(fer2013_csv, tmp_path):
    ds = datasets.load_fer2013(fer2013_csv, cache_dir=tmp_path)
    assert len(ds) == 35887 and ds.problems == []
    counts = np.bincount(ds.y[ds.split == 0], minlength=7).tolist()
    assert counts == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    stats, summary = eda.cached_stats(ds, cache_dir=tmp_path)
    assert stats.mean_faces.shape == (7, 48, 48)
    shipped = eda.read_derived()
    for key in ("class_counts", "exact_duplicates", "near_duplicates", "blank", "brightness_hist"):
        assert summary[key] == shipped[key]


def test_single_flight_runs_a_key_once_for_callers_that_arrive_together():
    import threading
    import time

    calls, results = [], []
    started = threading.Event()

    def compute() -> int:
        calls.append(1)
        started.set()
        time.sleep(0.3)
        return 42

    first = threading.Thread(target=lambda: results.append(datasets.single_flight("k", compute)))
    first.start()
    started.wait(5)
    results.append(datasets.single_flight("k", compute))  # arrives while the first runs: waits for it
    first.join()
    assert results == [42, 42] and len(calls) == 1
    assert datasets.single_flight("k", lambda: 7) == 7  # done: the next call computes afresh

    def fail() -> int:
        raise ValueError("unreadable")

    with pytest.raises(ValueError, match="unreadable"):
        datasets.single_flight("bad", fail)


@pytest.mark.parametrize("in_child", [False, True])
def test_warm_up_fills_the_explorers_cache_once(in_child, tmp_path, monkeypatch):
    folder = tmp_path / "data" / "fer2013"
    folder.mkdir(parents=True)
    (folder / "fer2013.csv").write_bytes(
        csv_bytes_for_tests([(0, np.arange(2304) % 256, "Training"), (6, np.zeros(2304), "PrivateTest")])
    )
    monkeypatch.setattr(config, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(config, "SHARED_DIR", tmp_path / "none")
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")
    assert eda.warm_fer2013_cache(in_child) is True
    assert {p.name.split("_")[0] for p in (tmp_path / "cache").glob("*.npz")} == {"fer2013", "stats"}
    assert eda.warm_fer2013_cache(in_child) is False  # filled: nothing to do
    monkeypatch.setattr(config, "DATA_DIR", tmp_path / "nothing")
    assert eda.warm_fer2013_cache() is False  # no dataset: nothing to do


def test_warm_up_child_ends_when_its_parent_is_gone(tmp_path):
    """A server stopped during its start-up warm-up leaves no parse running (exit_with_parent)."""
    marker = tmp_path / "watching"
    code = (
        "from emotion.explain import exit_with_parent; import pathlib, sys, time; "
        "exit_with_parent(int(sys.argv[1]), 0.05); "
        f"pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    )
    parent = subprocess.run(  # a shell that starts the child, waits until it watches, and exits
        ["bash", "-c", f'"{sys.executable}" -c "{code}" $$ >/dev/null 2>&1 & echo $!; '
                       f'for _ in $(seq 400); do [ -e "{marker}" ] && break; sleep 0.05; done'],
        cwd=config.REPO_ROOT, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    stat = Path(f"/proc/{int(parent.stdout.strip())}/stat")

    def running() -> bool:
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):
            return False

    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:  # the child is watching its parent
        time.sleep(0.05)
    assert marker.exists()
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running()  # without the watch it would sleep on for a minute
