"""Fuzz the upload paths: mutated and hostile images through the Photo page's path, and videos
through the Live & video page's path; prints what happened to each and the peak memory.

    python scripts/fuzz_uploads.py [--images 10000] [--videos 500] [--seed 0] [--threads 1]
                                   [--limits] [--show 5] [--max-minutes M]

Every input is made by code (no dataset file is read): valid seeds in every format and colour mode
Pillow and PyAV write, then byte flips, truncations, spliced chunks, patched header sizes (pixel
bombs), broken EXIF blocks, degenerate shapes (20000x20 strips, 1x1) with every detector and with
minimum faces larger than the image, random bytes; videos in mp4/webm/avi at 1 to 240 fps, with
Latin-1 metadata, truncated or flipped. Each goes through the same functions, in the same order, as
pages/classify.py's run_analysis (decode, detect, classify, annotate, PNG, save, report, PDF; and
the whole-image retry the page offers when no face is found) and pages/live.py's _analyze_video
(process_video, save, report, PDF, CSV, JSON), against a temporary store.

Counts: typed errors (ImageLoadError, VideoLoadError: the page shows their message), successes, and
other exceptions, which must be 0 (the first --show of them are printed with their input). Exit
status 1 when any other exception happened. --limits also measures, each in a fresh process, the
peak RSS of one upload at the largest size the limits allow and of three at once. Timings and memory
are those of the machine it runs on.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import av
from PIL import Image

import emotion
from emotion import config
from emotion.imageio import ImageLoadError
from emotion.video import VideoLoadError, frames_to_csv, process_video
from studio import analyses
from studio.analyses import FACE_KEYS
from studio.store import Store, User

DETECTORS = tuple(emotion.DETECTORS)
TYPED = (ImageLoadError, VideoLoadError)


# --- the page paths ---------------------------------------------------------------------------------


def photo_path(data: bytes, name: str, options: dict, store: Store, user: User) -> int:
    """pages/classify.py: studio.analyses.analyze_photo (decode, analyse, annotate, save), the whole-image
    retry when no face was found, and the PDF a download builds; returns the number of faces."""
    result = analyses.analyze_photo(store, user, data, name=name, source="photo", options=options)
    if not result.faces:
        result = analyses.analyze_photo(store, user, data, name=name, source="photo", options=options, detect=False)
    result.pdf()
    return len(result.faces)


def video_path(data: bytes, name: str, options: dict, store: Store, user: User) -> int:
    """pages/live.py _analyze_video: process_video, then studio.analyses.save_analysis with the mp4 and its
    frames, and the downloads a user can click; returns the number of analysed frames."""
    analysis = process_video(
        data, model=options["model"], detector=options["detector"], smoothing=True, strength=0.6,
        progress=lambda done, total: None,
    )  # fmt: skip
    faces = [{**{k: f[k] for k in FACE_KEYS}, "index": f["track_id"]} for f in analysis.representative_faces]
    recorded = {"model": analysis.model, "detector": analysis.detector, "smoothing": 0.6}
    saved = analyses.save_analysis(
        store, user, source="video", content=data, options=recorded, faces=faces,
        annotated=analysis.representative, original_name=name, title=f"Video {name}",
        timings=analysis.timings, media=analysis.mp4, frames=analysis.frames, labels=analysis.labels,
        extra={"fps": analysis.fps, "representative_frame": analysis.representative_index},
    )  # fmt: skip
    saved.pdf()
    frames_to_csv(analysis.frames, analysis.labels)
    analysis.to_json()
    return len(analysis.frames)


# --- image corpus -----------------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _picture(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Smooth colour gradients (compresses like a photo, not like noise), drawn small and resized so
    that a large one costs no more memory than its own pixels."""
    width, height = size
    small = (min(width, 128), min(height, 128))
    ys, xs = np.mgrid[0 : small[1], 0 : small[0]]
    phase = rng.random() * 6
    rgb = np.stack(
        [127 + 120 * np.sin(xs / small[0] * 6 + phase + k) * np.cos(ys / small[1] * 4 - k) for k in range(3)], axis=2
    )
    image = Image.fromarray(rgb.astype(np.uint8), "RGB")
    return image if small == size else image.resize(size, Image.Resampling.BILINEAR)


def _png_with_size(width: int, height: int, mode_byte: int = 6) -> bytes:
    """A PNG whose header declares width x height (colour type mode_byte, 8 bits) over a tiny IDAT:
    what a decompression bomb looks like before it is decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, mode_byte, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _webp_declaring(width: int, height: int) -> bytes:
    """A small extended WebP whose VP8X header declares a width x height canvas."""
    data = bytearray(_encode(Image.new("RGBA", (16, 16), (9, 9, 9, 128)), "WEBP", lossless=True, exif=b"Exif\0\0"))
    at = data.find(b"VP8X")
    if at >= 0:
        data[at + 12 : at + 18] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


def _exif_block(rng: random.Random) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = rng.randint(0, 9)  # orientation, including invalid values
    exif[0x010F] = "Camera"
    exif.get_ifd(0x8769)[0x9003] = "2020:01:01 00:00:00"
    exif.get_ifd(0x8825)[2] = (1.0, 2.0, 3.0)
    return exif.tobytes()


def seed_images(rng: random.Random) -> list[tuple[str, bytes]]:
    """Valid files in every format and mode the upload accepts or Pillow opens."""
    base = _picture(rng, (rng.randint(24, 200), rng.randint(24, 200)))
    seeds = [
        ("rgb.jpg", _encode(base, "JPEG", quality=rng.randint(30, 95))),
        ("exif.jpg", _encode(base, "JPEG", exif=_exif_block(rng))),
        ("progressive.jpg", _encode(base, "JPEG", progressive=True)),
        ("cmyk.jpg", _encode(base.convert("CMYK"), "JPEG")),
        ("grey.jpg", _encode(base.convert("L"), "JPEG")),
        ("rgb.png", _encode(base, "PNG")),
        ("rgba.png", _encode(base.convert("RGBA"), "PNG")),
        ("la.png", _encode(base.convert("LA"), "PNG")),
        ("p.png", _encode(base.convert("P"), "PNG")),
        ("p_transparent.png", _encode(base.convert("P"), "PNG", transparency=0)),
        ("i16.png", _encode(base.convert("I").point(lambda v: v * 200).convert("I;16"), "PNG")),
        ("bilevel.png", _encode(base.convert("1"), "PNG")),
        ("rgb.webp", _encode(base, "WEBP")),
        ("rgba.webp", _encode(base.convert("RGBA"), "WEBP", lossless=True)),
        ("rgb.bmp", _encode(base, "BMP")),
        ("p.gif", _encode(base.convert("P"), "GIF")),
        ("animated.gif", _encode(base.convert("P"), "GIF", save_all=True, append_images=[base.convert("P")] * 3)),
        ("float.tif", _encode(base.convert("F"), "TIFF")),
        ("rgb.tif", _encode(base, "TIFF")),
    ]
    return seeds


def hostile_images(rng: random.Random) -> list[tuple[str, bytes, dict]]:
    """The nastiest cases by construction: bombs by bytes and pixels, degenerate shapes with every
    detector and oversize minimum faces, broken EXIF, empty and random files."""
    cases: list[tuple[str, bytes, dict]] = []
    for width, height in ((20000, 20), (20, 20000), (1, 1), (2, 3), (1, 5000), (5000, 1)):
        data = _encode(Image.new("RGB", (width, height), (120, 90, 60)), "PNG")
        for detector in DETECTORS:
            for min_face in (12, 24, 400, 5000):
                cases.append((f"strip{width}x{height}.png", data, {"detector": detector, "min_face": min_face}))
    side = int((config.MAX_DECODED_IMAGE_BYTES / 6) ** 0.5)  # over the byte limit in RGBA, not in grey
    cases += [
        ("rgba_bomb.png", _encode(Image.new("RGBA", (side, side)), "PNG", optimize=True), {}),
        ("declared_bomb.png", _png_with_size(60000, 60000), {}),
        ("declared_huge_rgba.png", _png_with_size(7000, 5000), {}),
        ("declared_zero.png", _png_with_size(0, 10), {}),
        ("webp_bomb.webp", _webp_declaring(16383, 16383), {}),
        ("empty.jpg", b"", {}),
        ("random.png", rng.randbytes(4096), {}),
        ("text.jpg", b"this is not an image" * 50, {}),
        ("gif_header.gif", b"GIF89a" + b"\xff\xff\xff\xff" + b"\0" * 20, {}),
    ]
    for index in range(8):
        exif = bytearray(_exif_block(rng))
        for _ in range(rng.randint(1, 8)):
            exif[rng.randrange(len(exif))] = rng.randrange(256)
        image = _encode(_picture(rng, (40, 30)), "JPEG", exif=bytes(exif[: rng.randint(8, len(exif))]))
        cases.append((f"broken_exif{index}.jpg", image, {}))
    return cases


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One of: byte flips, truncation, a duplicated or deleted span, a patched 32-bit size, appended junk."""
    out = bytearray(data)
    if not out:
        return rng.randbytes(rng.randint(1, 64))
    kind = rng.randrange(6)
    if kind == 0:
        for _ in range(rng.randint(1, 12)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == 1:
        out = out[: rng.randrange(len(out))]
    elif kind == 2:
        start = rng.randrange(len(out))
        span = out[start : start + rng.randint(1, 256)]
        at = rng.randrange(len(out))
        out[at:at] = span
    elif kind == 3:
        start = rng.randrange(len(out))
        del out[start : start + rng.randint(1, 64)]
    elif kind == 4 and len(out) > 32:
        at = rng.randrange(8, min(len(out) - 4, 64))  # headers: sizes live near the start
        out[at : at + 4] = struct.pack(">I", rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, rng.randrange(2**32)]))
    else:
        out += rng.randbytes(rng.randint(1, 512))
    return bytes(out)


def image_inputs(count: int, rng: random.Random) -> Iterator[tuple[str, bytes, dict]]:
    """The fixed hostile cases first, then mutated seeds (a new seed set every 200 inputs)."""
    produced = 0
    for case in hostile_images(rng):
        if produced >= count:
            return
        yield case
        produced += 1
    seeds: list[tuple[str, bytes]] = []
    while produced < count:
        if produced % 200 == 0 or not seeds:
            seeds = seed_images(rng)
        name, data = rng.choice(seeds)
        for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
            data = mutate(rng, data)
        yield name, data, {}
        produced += 1


# --- video corpus -----------------------------------------------------------------------------------


def make_video(rng: random.Random, *, fps: int, seconds: float, size: tuple[int, int], container: str,
               latin1: bool = False) -> bytes:  # fmt: skip
    codec = {"mp4": "libx264", "webm": "libvpx", "avi": "mpeg4", "mkv": "libx264"}[container]
    with tempfile.TemporaryDirectory(prefix="fuzz-video-") as folder:
        path = Path(folder) / f"clip.{container}"
        options = {"metadata_encoding": "latin-1"} if latin1 else {}
        with av.open(str(path), "w", **options) as output:
            if latin1:
                output.metadata["title"] = "caf\xe9 \xff\xfe"
            stream = output.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            base = np.asarray(_picture(rng, size))
            for index in range(max(1, int(fps * seconds))):
                frame = av.VideoFrame.from_ndarray(np.roll(base, index * 2, axis=1), format="rgb24")
                frame.pts = index
                output.mux(stream.encode(frame))
            output.mux(stream.encode(None))
        return path.read_bytes()


def video_inputs(count: int, rng: random.Random) -> Iterator[tuple[str, bytes, dict]]:
    """Fixed nasty videos first, then small clips of random rate, size and container, often mutated."""
    fixed = [
        ("latin1.mp4", make_video(rng, fps=10, seconds=0.5, size=(64, 48), container="mp4", latin1=True)),
        ("fast240.mp4", make_video(rng, fps=240, seconds=1.0, size=(64, 48), container="mp4")),
        ("strip.mp4", make_video(rng, fps=5, seconds=0.4, size=(1280, 16), container="mp4")),
        ("empty.mp4", b""),
        ("random.webm", rng.randbytes(8192)),
        ("text.avi", b"RIFF" + b"not a video" * 100),
        (
            "unknown_codec.mp4",
            make_video(rng, fps=10, seconds=0.3, size=(64, 48), container="mp4").replace(b"avc1", b"zzzz"),
        ),
    ]
    produced = 0
    for name, data in fixed:
        if produced >= count:
            return
        yield name, data, {}
        produced += 1
    while produced < count:
        container = rng.choice(("mp4", "webm", "avi", "mkv"))
        fps = rng.choice((1, 5, 10, 15, 30, 60, 120, 240))
        size = (rng.randrange(16, 160, 2), rng.randrange(16, 120, 2))
        data = make_video(rng, fps=fps, seconds=rng.choice((0.2, 0.5, 1.0)), size=size, container=container,
                          latin1=rng.random() < 0.2)  # fmt: skip
        for _ in range(rng.choice((0, 0, 1, 2))):
            data = mutate(rng, data)
        yield f"clip{produced}.{container}", data, {}
        produced += 1


# --- running ----------------------------------------------------------------------------------------


class Tally:
    """Outcome counts, thread-safe, with the first few unexpected exceptions kept."""

    def __init__(self, show: int) -> None:
        self.counts: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.show = show
        self.stopped_early: list[str] = []
        self._lock = threading.Lock()

    def summary(self, kind: str) -> str:
        """'N: s successes, t typed errors, o other exceptions' for images or videos."""
        with self._lock:
            counts = {k.split(" ", 1)[1]: v for k, v in self.counts.items() if k.startswith(kind)}
        success, typed, other = (counts.get(k, 0) for k in ("success", "typed error", "other exception"))
        return f"{sum(counts.values())}: {success} successes, {typed} typed errors, {other} other exceptions"

    def run(self, kind: str, path: Callable[..., int], name: str, data: bytes, options: dict, *args) -> None:
        try:
            path(data, name, options, *args)
            outcome = "success"
        except TYPED:
            outcome = "typed error"
        except Exception:  # what the fuzzing is for: anything else is counted and shown
            outcome = "other exception"
            with self._lock:
                if len(self.unexpected) < self.show:
                    self.unexpected.append(f"{kind} {name} ({len(data)} bytes, {options}):\n{traceback.format_exc()}")
        with self._lock:
            self.counts[f"{kind} {outcome}"] += 1


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB: Linux's VmHWM (getrusage's ru_maxrss is
    not reset by exec, so a child started by a large parent would report the parent's peak)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_corpus(kind: str, inputs: Iterator[tuple[str, bytes, dict]], path: Callable[..., int], tally: Tally,
               store: Store, user: User, model: str, threads: int, rng: random.Random,
               deadline: float | None = None) -> float:  # fmt: skip
    """Every input through the page path (at most `threads` at once; inputs are made as they are needed,
    so the corpus never sits in memory), until `deadline` (time.monotonic()) if one is given; returns
    the seconds it took."""
    started = time.perf_counter()

    def job(item: tuple[str, bytes, dict]) -> None:
        name, data, overrides = item
        options = {
            "model": model,
            "detector": overrides.get("detector", rng.choice(DETECTORS)),
            "tta": False,
            "min_face": overrides.get("min_face", rng.choice((12, 24, 48, 400))),
            "title": "**fuzz** [x](y)",
        }
        tally.run(kind, path, name, data, options, store, user)

    done = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: set = set()
        for item in inputs:
            if deadline is not None and time.monotonic() > deadline:
                tally.stopped_early.append(kind)
                break
            pending.add(pool.submit(job, item))
            if len(pending) >= threads:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
                done += len(finished)
                if done % 250 < len(finished):
                    print(f"  {kind}s: {tally.summary(kind)}; peak RSS {peak_rss_mb():.0f} MB", flush=True)
        for future in pending:
            future.result()
    return time.perf_counter() - started


LIMITS_PROBE = """
import os, sys, threading
sys.path.insert(0, {root!r})
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import fuzz_uploads as f
from PIL import Image
import emotion
store, user, model = f.temporary_store(), None, emotion.default_model_name()
user = store.create_user("probe", "Probe", "probe@example.com", "$2b$12$" + "x" * 53)
emotion.analyze(emotion.load_image(f._encode(Image.new("RGB", (64, 64)), "PNG")), model)  # load everything
before = f.peak_rss_mb()
data = f.largest_allowed_image({mode!r})
options = {{"model": model, "detector": "blazeface", "tta": False, "min_face": 24, "title": None}}
threads = [threading.Thread(target=f.photo_path, args=(data, "largest.png", options, store, user))
           for _ in range({uploads})]
for t in threads: t.start()
for t in threads: t.join()
print(before, f.peak_rss_mb())
"""


LIMIT_MODES = {"L": 1, "RGBA": 4}  # decoded bytes per pixel: the most pixels, the most bytes per pixel


def largest_allowed_image(mode: str = "L") -> bytes:
    """A PNG of this mode at the most pixels the limits let through (decoded bytes + 3 per pixel for
    the RGB result), a photo-like picture so that the whole path (detection, PDF) does its full work."""
    side = int((config.MAX_DECODED_IMAGE_BYTES / (LIMIT_MODES[mode] + 3)) ** 0.5) - 8
    return _encode(_picture(random.Random(0), (side, side)).convert(mode), "PNG")


def measure_limits() -> None:
    """Peak RSS of the Photo path for one, then three concurrent, uploads of the largest allowed image
    of each mode, each in a fresh process (models loaded first: the app's own baseline is included)."""
    for mode in LIMIT_MODES:
        data = largest_allowed_image(mode)
        width, height = Image.open(io.BytesIO(data)).size
        for uploads in (1, 3):
            script = textwrap.dedent(
                LIMITS_PROBE.format(root=str(Path(__file__).resolve().parent), uploads=uploads, mode=mode)
            )
            done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                print(done.stderr[-3000:])
                raise SystemExit(f"limits probe with {uploads} upload(s) failed")
            before, after = (float(v) for v in done.stdout.split()[-2:])
            print(f"limits: {uploads} upload(s) at once of a {width}x{height} {mode} PNG ({len(data) / 1e6:.1f} MB): "
                  f"peak RSS {after:.0f} MB (models loaded: {before:.0f} MB)")  # fmt: skip


def temporary_store() -> Store:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-store-"))
    return Store(folder / "studio.db", folder / "media")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="images through the Photo path")
    parser.add_argument("--videos", type=int, default=500, help="videos through the Live & video path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="uploads handled at once")
    parser.add_argument("--limits", action="store_true", help="also measure peak RSS at the limits")
    parser.add_argument("--show", type=int, default=5, help="unexpected exceptions to print")
    parser.add_argument("--max-minutes", type=float, default=0, help="stop starting new inputs after this long")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    model = emotion.default_model_name()
    store = temporary_store()
    user = store.create_user("fuzz", "Fuzz **user**", "fuzz@example.com", "$2b$12$" + "x" * 53)
    tally = Tally(args.show)
    print(f"fuzzing {args.images} images and {args.videos} videos (seed {args.seed}, {args.threads} thread(s), "
          f"model {model}, detectors {', '.join(DETECTORS)})", flush=True)  # fmt: skip
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None
    # Videos first: they are fewer, and a time limit then cuts the long image run.
    video_s = run_corpus("video", video_inputs(args.videos, rng), video_path, tally, store, user, model,
                         args.threads, rng, deadline)  # fmt: skip
    image_s = run_corpus("image", image_inputs(args.images, rng), photo_path, tally, store, user, model,
                         args.threads, rng, deadline)  # fmt: skip
    for text in tally.unexpected:
        print(text)
    for kind, seconds in (("image", image_s), ("video", video_s)):
        cut = " (stopped at the time limit)" if kind in tally.stopped_early else ""
        print(f"{kind}s{cut} in {seconds:.0f} s: {tally.summary(kind)}")
    print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")
    if args.limits:
        measure_limits()
    return 1 if any(k.endswith("other exception") for k in tally.counts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
