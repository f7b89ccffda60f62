"""Reading datasets, in one place for the dataset explorer (studio.eda) and for training (training.data).

- FER2013 in Kaggle's CSV layout (`read_fer2013_csv`, and `load_fer2013`, the explorer's cached
  `ImageSet`): the file is decompressed in a thread while the pixel strings already read are parsed
  by numpy, and the decoded arrays are kept under `config.CACHE_DIR`, keyed by the file's path, size
  and mtime.
- Folder-per-class datasets: one walker (`folder_layout`) with one split rule (`split_folders`:
  train/val/test-like folders are splits; otherwise `stratified_indices` draws them).
- Exact duplicates and blank images: one hash (`digest`, BLAKE2b-128) and one blank test
  (`grey_std` under `BLANK_STD`), shared by the explorer's statistics and training's cleaning.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar

import numpy as np

try:  # Intel ISA-L's inflate (requirements.txt): 2.5x zlib's speed on FER2013's 296 MB, the same API
    from isal import isal_zlib as _inflate
except ImportError:  # an environment installed before it was required: slower, same result
    import zlib as _inflate

from emotion import config
from emotion.labels import FER2013_LABELS, canonical_label

FER_SPLITS = ("Training", "PublicTest", "PrivateTest")
# Folder names that mean FER2013's splits.
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
UNSPLIT = "all"  # folder_layout's split name when a folder dataset has no split folders
THUMB = 48  # the explorer looks at every image as the models do: grey, 48x48
BLANK_STD = 3.0  # an image whose grey-level std is under this is blank (the explorer and training agree)
_SIDE = 48  # FER2013's faces are 48x48
_CACHE_VERSION = 3  # bump when the cached arrays' format changes
_CHUNK = 512  # images per float32 block in grey_std
_PIECE = 4 << 20  # bytes read (and inflated) at a time
_BLOCK = 16 << 20  # bytes of text parsed at a time

Progress = Callable[[float, str], None]


def no_progress(fraction: float, text: str) -> None:
    """Default progress callback: does nothing."""


@dataclass
class ImageSet:
    """A dataset as the explorer sees it.

    thumbs: (N, 48, 48) uint8 grey; y: (N,) int class index into `labels`; split: (N,) int index
    into `splits`; digest: (N,) 'S16' content hashes (exact duplicates); sources: N file paths
    relative to `root` (folders) or CSV row numbers; sizes: (N, 2) int (width, height); modes: N
    colour modes ("L", "RGB", "RGB (grey)", ...); key: a cache key of the source file, "" when the
    statistics are not cached (folders).
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
    key: str = ""

    def __len__(self) -> int:
        return len(self.y)


# ------------------------------------------------------------------------------- FER2013 CSV


class Fer2013Arrays(NamedTuple):
    """FER2013's usable rows: images (N, 48, 48) uint8, labels (N,) int16, split (N,) int8 index into
    FER_SPLITS, rows (N,) int32 0-based data row of each image, and problems (skipped rows)."""

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    rows: np.ndarray
    problems: list[str]
    digests: np.ndarray | None = None  # (N,) 'S16' digest() of each image, when asked for (with_digests)


def file_key(path: Path) -> str:
    """A cache key for a file: a hash of its resolved path, size and mtime (ns)."""
    st = Path(path).stat()
    return hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def _byte_chunks(path: Path) -> Iterator[bytes]:
    """The file's (decompressed when .gz) bytes in pieces. Decompression runs in a thread (ISA-L
    releases the GIL), so parsing one piece overlaps with inflating the next."""
    if path.suffix != ".gz":
        with open(path, "rb") as handle:
            while piece := handle.read(_PIECE):
                yield piece
        return
    pieces: queue.Queue = queue.Queue(maxsize=8)
    stop = threading.Event()

    def inflate() -> None:
        try:
            with open(path, "rb") as handle:
                inflater = _inflate.decompressobj(wbits=31)
                while (data := handle.read(_PIECE)) and not stop.is_set():
                    while data:
                        pieces.put(inflater.decompress(data))
                        # A gzip file may hold several members one after another.
                        data = inflater.unused_data
                        if data:
                            inflater = _inflate.decompressobj(wbits=31)
                pieces.put(inflater.flush())
        except (OSError, _inflate.error) as error:
            pieces.put(error)
        pieces.put(None)

    worker = threading.Thread(target=inflate, name="fer2013-inflate", daemon=True)
    worker.start()
    try:
        while (piece := pieces.get()) is not None:
            if isinstance(piece, Exception):
                raise ValueError(f"{path.name}: cannot be decompressed ({piece})")
            yield piece
    finally:
        stop.set()
        while worker.is_alive():  # drain so the thread is never stuck on a full queue
            with contextlib.suppress(queue.Empty):
                pieces.get(timeout=0.05)


def _blocks(path: Path) -> Iterator[bytes]:
    """The file's text in blocks of about _BLOCK bytes, each ending with a line end."""
    pending: list[bytes] = []
    size = 0
    for piece in _byte_chunks(path):
        pending.append(piece)
        size += len(piece)
        if size < _BLOCK:
            continue
        text = b"".join(pending)
        cut = text.rfind(b"\n") + 1
        if cut:
            yield text[:cut]
            pending, size = [text[cut:]], len(text) - cut
    text = b"".join(pending)
    if text.strip():
        yield text if text.endswith(b"\n") else text + b"\n"


def read_fer2013_csv(path: str | Path, with_digests: bool = False) -> Fer2013Arrays:
    """Read Kaggle's fer2013.csv(.gz): columns emotion, pixels (2304 grey levels), Usage.

    Each block of rows is parsed by one numpy call (`_parse_block_fast`); a block it cannot take
    (quotes, stray characters, a row of the wrong length) is parsed row by row. Malformed rows
    (bad emotion, wrong pixel count or range, unknown Usage) are skipped and listed in `problems`.
    Raises ValueError for a file without those columns or without a usable row. with_digests: also
    each image's digest(), computed block by block while the next blocks inflate and parse (hashing
    holds the interpreter lock, which the inflate and np.fromstring threads do not need).
    """
    path = Path(path)
    blocks = _blocks(path)
    first = next(blocks, b"")
    header_end = first.find(b"\n")
    if header_end < 0:
        raise ValueError(f"{path.name}: empty file")
    header = next(csv.reader([first[:header_end].decode("utf-8-sig", "replace").strip()]), [])
    columns = [name.strip() for name in header]
    missing = {"emotion", "pixels", "Usage"} - set(columns)
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
    where = (columns.index("emotion"), columns.index("pixels"), columns.index("Usage"))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    problems: list[str] = []
    row = 0  # 0-based data row (the file's line number minus 2)

    def blocks_after_header() -> Iterator[bytes]:
        yield first[header_end + 1 :]
        yield from blocks

    def finish(block: bytes, fast: Future | None) -> None:
        """Rows of one block, in file order: the fast parse's result, else the row-by-row one."""
        nonlocal row
        parsed = fast.result() if fast is not None else None
        if parsed is None:
            lines = block.split(b"\n")[:-1]
            parsed = _parse_lines(lines, len(columns), where, row, problems)
        labels, usages, values = parsed
        usable = _usable(labels, usages, values, row, problems)
        if usable is not None:
            parts.append((*usable, digests(usable[0]) if with_digests else np.zeros(0, "S16")))
        row += len(labels)

    # np.fromstring releases the GIL: two blocks parse at once while the next one is inflated.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fer2013-parse") as pool:
        in_flight: deque[tuple[bytes, Future | None]] = deque()
        for block in blocks_after_header():
            in_flight.append((block, pool.submit(_parse_block_fast, block) if where == (0, 1, 2) else None))
            if len(in_flight) > 2:
                finish(*in_flight.popleft())
        while in_flight:
            finish(*in_flight.popleft())
    if not parts:
        raise ValueError(f"{path.name}: no usable row")
    images, labels, split, rows, hashes = (np.concatenate(p) for p in zip(*parts, strict=True))
    return Fer2013Arrays(images, labels, split, rows, problems, hashes if with_digests else None)


_BAD = -1000  # marks a row whose pixel string could not be parsed, or a blank line
_SENTINEL = 999  # ends every row in the fast path: a row with too few or too many values misplaces it


def _parse_block_fast(block: bytes) -> tuple[list[int], list[str], np.ndarray] | None:
    """Rows "emotion,pixels,Usage" of one block -> (labels, usages, (n, 2304) int16 values) with one
    np.fromstring call over the whole block, or None when the block needs the row-by-row parser.

    Each ",<Usage>\n" becomes a sentinel value, so the block is numbers only; a row of the wrong
    length misplaces its sentinel, a stray character stops np.fromstring, and a digit count rules
    out leading zeros and numbers too long for int16."""
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    labels: list[int] = []
    usages: list[str] = []
    find, start, size = block.find, 0, len(block)
    while start < size:
        end = find(b"\n", start)
        c1 = find(b",", start, end)
        c2 = find(b",", c1 + 1, end)
        if c1 < 0 or c2 < 0 or find(b",", c2 + 1, end) >= 0:
            return None
        try:
            labels.append(int(block[start:c1]))
        except ValueError:
            return None
        usages.append(block[c2 + 1 : end].decode("ascii", "replace"))
        start = end + 1
    if not set(usages) <= set(FER_SPLITS):
        return None
    text = block
    for usage in FER_SPLITS:
        text = text.replace(b",%s\n" % usage.encode(), b" %d\n" % _SENTINEL)
    text = text.replace(b",", b" ")
    try:
        values = np.fromstring(text, dtype=np.int16, sep=" ")
    except ValueError:  # a character that is not part of a number
        return None
    n = len(labels)
    if values.size != n * (_SIDE * _SIDE + 2):
        return None
    values = values.reshape(n, -1)
    if (values[:, -1] != _SENTINEL).any() or (values[:, 0] != np.array(labels)).any() or (values < 0).any():
        return None
    digits = len(text) - text.count(b" ") - text.count(b"\n")
    if digits != values.size + int((values >= 10).sum()) + int((values >= 100).sum()):
        return None  # a leading zero, or a number with more than 3 digits (int16 could wrap it)
    return labels, usages, values[:, 1:-1]


def _parse_lines(
    lines: list[bytes], width: int, where: tuple[int, int, int], first_row: int, problems: list[str]
) -> tuple[list[int], list[str], np.ndarray]:
    """The row-by-row parser: lines -> (labels (-1: unreadable), usages, (n, 2304) int16 values,
    rows of _BAD where the pixels are not 2304 integers); a line that is not a row gets usage ""
    (blank lines silently, others with a problem)."""
    e_at, p_at, u_at = where
    labels, usages, pixels = [], [], []
    for offset, line in enumerate(lines):
        fields = line.rstrip(b"\r").split(b",")
        if len(fields) != width or b'"' in line:  # quoted fields: the csv module's job
            fields = [f.encode() for f in next(csv.reader([line.decode("utf-8", "replace")]), [])]
        if len(fields) != width:
            if line.strip():
                problems.append(f"row {first_row + offset + 2}: {len(fields)} fields, expected {width}")
            labels.append(-1)
            usages.append("")
            pixels.append(b"")
            continue
        try:
            labels.append(int(fields[e_at]))
        except ValueError:
            labels.append(-1)
        usages.append(fields[u_at].strip().decode("ascii", "replace"))
        pixels.append(fields[p_at].strip())
    return labels, usages, _parse_pixels(pixels)


def _usable(
    labels: list[int], usages: list[str], values: np.ndarray, first_row: int, problems: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The usable rows of a parsed block -> (images (n, 48, 48) uint8, labels int16, split int8,
    rows int32), or None when none is; problems get one line per skipped row."""
    label = np.array(labels, np.int64)
    split = np.array([FER_SPLITS.index(u) if u in FER_SPLITS else -1 for u in usages], np.int64)
    ok_label = (label >= 0) & (label < len(FER2013_LABELS))
    ok_pixels = (
        (values.min(axis=1, initial=0) >= 0) & (values.max(axis=1, initial=0) <= 255) if len(values) else ok_label
    )
    keep = (split >= 0) & ok_label & ok_pixels
    for i in np.flatnonzero(~keep):
        if usages[i] == "":  # blank line, or a line reported by _parse_lines
            continue
        if split[i] < 0:
            problems.append(f"row {first_row + i + 2}: unknown Usage {usages[i]!r}")
        elif not ok_label[i]:
            problems.append(f"row {first_row + i + 2}: emotion is not a class index 0..6")
        else:
            problems.append(f"row {first_row + i + 2}: pixels are not 2304 grey levels 0..255")
    index = np.flatnonzero(keep)
    if not len(index):
        return None
    images = values[index].astype(np.uint8).reshape(-1, _SIDE, _SIDE)
    return images, label[index].astype(np.int16), split[index].astype(np.int8), (first_row + index).astype(np.int32)


def _parse_pixels(texts: list[bytes]) -> np.ndarray:
    """n pixel strings -> (n, 2304) int16 (the row-by-row path); a row that is not 2304 integers
    in 0..255 is filled with _BAD."""
    out = np.full((len(texts), _SIDE * _SIDE), _BAD, np.int16)
    for i, text in enumerate(texts):
        try:
            row = np.array(text.split(), dtype=np.int64)
        except (ValueError, OverflowError):
            continue
        if row.size == _SIDE * _SIDE and row.min() >= 0 and row.max() <= 255:
            out[i] = row
    return out


T = TypeVar("T")
_in_flight: dict[str, Future] = {}  # work being done now, by key: a second caller waits for it
_in_flight_lock = threading.Lock()


def single_flight(key: str, compute: Callable[[], T]) -> T:
    """compute() once at a time per key in this process: a caller that arrives while another runs the same
    key waits for that result (or its exception) instead of repeating the work. The explorer's
    start-up warm-up and its first visitors share one FER2013 parse this way."""
    with _in_flight_lock:
        running = _in_flight.get(key)
        owner = running is None
        if owner:
            running = _in_flight[key] = Future()
    if not owner:
        return running.result()
    try:
        result = compute()
    except BaseException as error:
        running.set_exception(error)
        raise
    else:
        running.set_result(result)
        return result
    finally:
        with _in_flight_lock:
            _in_flight.pop(key, None)


def fer2013_cache_file(key: str, cache_dir: Path | None) -> Path | None:
    """Where load_fer2013 keeps the decoded arrays of the file with `key` (file_key); None: no cache."""
    return cache_dir / f"fer2013_v{_CACHE_VERSION}_{key}.npz" if cache_dir else None


def load_fer2013(
    path: str | Path,
    cache_dir: Path | Literal["config"] | None = "config",
    fill: Callable[[Path], None] | None = None,
) -> ImageSet:
    """FER2013 as the explorer's ImageSet, parsed once and then read from `cache_dir` ("config":
    config.CACHE_DIR as it is when called; None: no cache). fill(cache_dir), when given, fills a
    missing cache some other way (the app's warm-up: a child process, see studio.eda); callers that
    arrive meanwhile wait for it, and the file is parsed here only if the cache is still missing after."""
    path = Path(path)
    cache_dir = config.CACHE_DIR if cache_dir == "config" else cache_dir
    key = file_key(path)
    cache = fer2013_cache_file(key, cache_dir)

    def load() -> ImageSet:
        if fill is not None and cache is not None and not cache.is_file():
            fill(cache_dir)
        return _load_fer2013(path, cache, key)

    return single_flight(f"fer2013|{cache}|{key}", load)


def _load_fer2013(path: Path, cache: Path | None, key: str) -> ImageSet:
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            arrays = Fer2013Arrays(
                data["images"],
                data["labels"],
                data["split"],
                data["rows"],
                [str(p) for p in data["problems"]],
                data["digests"],
            )
    else:
        arrays = read_fer2013_csv(path, with_digests=True)
        if cache is not None:
            save_npz(cache, **arrays._asdict() | {"problems": np.array(arrays.problems, str)})
    n = len(arrays.labels)
    return ImageSet(
        "FER2013",
        FER2013_LABELS,
        FER_SPLITS,
        arrays.images,
        arrays.labels.astype(np.int64),
        arrays.split.astype(np.int64),
        arrays.digests,
        [f"row {r + 2}" for r in arrays.rows.tolist()],
        np.full((n, 2), _SIDE, np.int32),
        ["L"] * n,
        None,
        arrays.problems,
        key,
    )


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an uncompressed .npz atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{threading.get_ident()}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


# ----------------------------------------------------------------------------- folder datasets


def split_folders(root: Path) -> dict[str, Path]:
    """{FER2013 split name: folder} for root's train/val/test-like subfolders, in name order (empty
    when the dataset is not split in advance)."""
    folders = sorted(d for d in Path(root).iterdir() if d.is_dir())
    return {SPLIT_ALIASES[d.name.lower()]: d for d in folders if d.name.lower() in SPLIT_ALIASES}


def folder_layout(root: Path) -> dict[str, list[tuple[Path, str]]]:
    """root/<class>/* or root/<split>/<class>/* -> {split: [(file, canonical label)]}.

    Without split folders every file is in split UNSPLIT ("all"). Hidden folders and files and
    non-image files are skipped. Raises FileNotFoundError when root is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    layout = split_folders(root) or {UNSPLIT: root}
    found: dict[str, list[tuple[Path, str]]] = {}
    for split, split_root in layout.items():
        class_dirs = [d for d in sorted(split_root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        found[split] = [
            (f, canonical_label(d.name))
            for d in class_dirs
            for f in sorted(d.rglob("*"))
            if f.suffix.lower() in config.IMAGE_SUFFIXES and f.is_file() and not f.name.startswith(".")
        ]
    return found


def stratified_indices(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """The split rule for a folder dataset without split folders: per class, a `seed`-drawn share
    goes to PublicTest and PrivateTest, the rest to Training. (N,) labels -> {split: sorted indices}
    (splits that get no image are left out)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"Training": [], "PublicTest": [], "PrivateTest": []}
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(idx) * val_fraction))
        n_test = int(round(len(idx) * test_fraction))
        parts["PublicTest"] += idx[:n_val].tolist()
        parts["PrivateTest"] += idx[n_val : n_val + n_test].tolist()
        parts["Training"] += idx[n_val + n_test :].tolist()
    return {name: np.array(sorted(ix), dtype=np.int64) for name, ix in parts.items() if ix}


def folder_signature(root: Path) -> str:
    """A cache key for a folder dataset: a hash of every image's relative path, size and mtime."""
    digest_ = hashlib.sha1(str(Path(root).resolve()).encode())
    for split, files in folder_layout(root).items():
        for path, label in files:
            st = path.stat()
            digest_.update(f"{split}|{label}|{path.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest_.hexdigest()[:16]


def dataset_root(folder: Path) -> Path:
    """Descend through folders that hold nothing but one sub-folder (a zip of `dataset/` extracts so)."""
    folder = Path(folder)
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        folder = entries[0]


def read_thumbnail(path: Path) -> tuple[np.ndarray, tuple[int, int], str, bytes]:
    """One image file -> (48x48 uint8 grey, (width, height), colour mode, digest of the file's bytes).

    JPEGs are decoded at a reduced scale (PIL draft) for speed; EXIF orientation is applied.
    Raises ValueError with a readable message for unreadable or over-sized files.
    """
    import cv2
    from PIL import Image, ImageOps, UnidentifiedImageError

    if path.stat().st_size > config.MAX_IMAGE_BYTES:
        raise ValueError(f"{path.name}: over {config.MAX_IMAGE_BYTES // 2**20} MB")
    data = path.read_bytes()
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
    return thumb, (width, height), mode, digest(data)


def scan_folder(root: Path, progress: Progress = no_progress) -> ImageSet:
    """A folder-per-class dataset -> ImageSet (labels are the sorted union of class folder names)."""
    root = Path(root)
    layout = folder_layout(root)
    labels = tuple(sorted({label for entries in layout.values() for _, label in entries}))
    if not labels:
        raise ValueError(f"{root}: no class folder with images (expected {root}/<class>/<image>)")
    splits = tuple(layout)
    entries = [(s, f, lab) for s, files in layout.items() for f, lab in files]
    thumbs, ys, split_ix, hashes, sources, sizes, modes, problems = [], [], [], [], [], [], [], []
    for i, (split, path, label) in enumerate(entries):
        if i % 50 == 0:
            progress(i / max(len(entries), 1), f"Reading images {i:,}/{len(entries):,}")
        try:
            thumb, size, mode, content = read_thumbnail(path)
        except (ValueError, OSError) as error:
            problems.append(str(error))
            continue
        thumbs.append(thumb)
        ys.append(labels.index(label))
        split_ix.append(splits.index(split))
        hashes.append(content)
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
        np.array(hashes, dtype="S16"),
        sources,
        np.array(sizes, np.int32).reshape(-1, 2),
        modes,
        root,
        problems,
    )


# ------------------------------------------------------------------------- duplicates, blanks


def digest(data: bytes | np.ndarray) -> bytes:
    """The one content hash (16-byte BLAKE2b) of a file's bytes or of an image's pixels (an array's
    shape is hashed too, so a crop never matches its image)."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).tobytes() + str(data.shape).encode()
    return hashlib.blake2b(data, digest_size=16).digest()


def digests(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """N images (arrays) -> (N,) 'S16' digests of their pixels."""
    return np.array([digest(image) for image in images], dtype="S16")


def exact_duplicate_groups(hashes: np.ndarray) -> list[np.ndarray]:
    """(N,) digests -> groups (arrays of indices, ascending) of images with identical content, size >= 2."""
    if not len(hashes):
        return []
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    return [np.sort(g) for g, c in zip(groups, counts, strict=True) if c > 1]


def later_copies(groups: list[np.ndarray], size: int) -> np.ndarray:
    """(size,) bool: every member of an exact-duplicate group but its first (one copy is enough)."""
    later = np.zeros(size, bool)
    for group in groups:
        later[group[1:]] = True
    return later


def grey_std(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """N images -> (N,) float32 standard deviation of each image's values (the blank test's measure).

    A stacked (N, ...) array is done in float32 blocks (fast, and mean-centred so it stays exact);
    a list of images of different shapes one by one, with the same arithmetic."""
    if isinstance(images, np.ndarray) and images.ndim >= 2:
        flat = images.reshape(len(images), -1)
        out = np.zeros(len(images), np.float32)
        for start in range(0, len(images), _CHUNK):
            block = flat[start : start + _CHUNK].astype(np.float32)
            block -= block.mean(axis=1, keepdims=True)
            out[start : start + _CHUNK] = np.sqrt(np.einsum("ij,ij->i", block, block) / block.shape[1])
        return out
    return np.array([grey_std(np.asarray(image)[None])[0] for image in images], np.float32)


def find_dirty(
    images: Sequence[np.ndarray] | np.ndarray, blank_std: float = BLANK_STD
) -> tuple[np.ndarray, np.ndarray]:
    """Exact duplicates and blank images among N images.

    Returns (duplicate, blank) boolean masks of shape (N,): duplicate marks every image after
    the first with the same pixels; blank marks images whose grey-level std is under blank_std.
    """
    duplicate = later_copies(exact_duplicate_groups(digests(images)), len(images))
    return duplicate, grey_std(images) < blank_std


def copies_in(images: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> np.ndarray:
    """(N,) bool: which of `images` have an exact pixel copy in `reference` (for FER2013, some
    PrivateTest images are also in Training: figures on them measure memory, not skill)."""
    known = set(digests(reference).tolist())
    return np.array([h in known for h in digests(images).tolist()], dtype=bool)
