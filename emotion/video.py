"""Video files: decode, run every frame through the live FrameProcessor, encode an H.264 mp4.

    analysis = process_video("clip.webm", progress=lambda done, total: ...)
    analysis.mp4          # annotated H.264 (yuv420p, +faststart) mp4 bytes that browsers play
    analysis.frames       # per frame: {"frame", "time", "faces": [{"track_id", "box", "label", ...}]}
    frames_to_csv(analysis.frames), analysis.to_json()

Decoding and encoding use PyAV (its wheels bundle FFmpeg with libx264). Files are processed at full
quality: full-frame detection on every analysed frame (no frame budget), with the same per-face tracking and
EMA smoothing as the webcam. A track is reported (drawn, counted, in the CSV/JSON) only when it lasted
MIN_TRACK_SECONDS and its mean detection score reaches MIN_TRACK_SCORE (`real_tracks`); the mp4 is
drawn in a second decoding pass, once the tracks are known. `write_y4m` writes raw YUV4MPEG2 (the
fake-camera format of Chromium).

Limits (emotion.config) bound the work whatever the file declares: the first MAX_VIDEO_SECONDS are
analysed, frames are sampled down to MAX_ANALYSIS_FPS (the annotated video plays at that rate), at
most MAX_DECODED_VIDEO_FRAMES are decoded and frames over MAX_VIDEO_FRAME_PIXELS are refused;
`VideoAnalysis.notes` says which applied, for the user. Metadata that is not UTF-8 is read with
replacement characters; every failure is a VideoLoadError.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from emotion.config import (
    MAX_ANALYSIS_FPS,
    MAX_DECODED_VIDEO_FRAMES,
    MAX_VIDEO_BYTES,
    MAX_VIDEO_FRAME_PIXELS,
    MAX_VIDEO_SECONDS,
    MAX_VIDEO_SIDE,
    VIDEO_EXTENSIONS,
)
from emotion.detectors import DEFAULT_DETECTOR
from emotion.live import FrameProcessor, LiveSettings
from emotion.pipeline import FaceResult, annotate
from emotion.registry import load

MIN_TRACK_SECONDS = 0.5  # a face track shorter than this (or half the clip) is not reported
MIN_TRACK_SCORE = 0.7  # nor one whose mean detection score (BlazeFace) is below this
H264_ENCODERS = ("libx264", "libopenh264", "h264")


class VideoLoadError(ValueError):
    """The file is not a readable video, or is over the limits; the message is user-facing."""


@dataclass
class VideoAnalysis:
    """The annotated mp4, per-frame results and a representative annotated RGB frame (H, W, 3)."""

    mp4: bytes
    frames: list[dict]
    fps: float
    size: tuple[int, int]  # (width, height) of the output
    model: str
    detector: str
    labels: tuple[str, ...]
    representative_index: int
    representative: np.ndarray
    truncated: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    tracks: list[dict] = field(default_factory=list)  # the reported faces (track_summaries rows)
    dropped_tracks: list[dict] = field(default_factory=list)  # too short or too unsure to report
    source_fps: float = 0.0  # the file's frame rate; `fps` is the analysed (and output) rate
    analysed_seconds: float = 0.0

    @property
    def notes(self) -> list[str]:
        """What the limits changed, in words for the user (empty when the whole file was analysed)."""
        notes = []
        if self.truncated:
            notes.append(f"Only the first {self.analysed_seconds:.0f} seconds were analysed.")
        if self.source_fps > self.fps + 0.01:
            notes.append(
                f"Frames were analysed at {self.fps:g} per second (the video has {self.source_fps:.4g}); "
                "the annotated video plays at that rate."
            )
        return notes

    @property
    def face_count(self) -> int:
        """Distinct faces in the video: its real tracks."""
        return len(self.tracks)

    @property
    def representative_faces(self) -> list[dict]:
        return self.frames[self.representative_index]["faces"] if self.frames else []

    def to_json(self) -> str:
        return json.dumps(
            {
                "model": self.model,
                "detector": self.detector,
                "fps": self.fps,
                "size": list(self.size),
                "labels": list(self.labels),
                "truncated": self.truncated,
                "source_fps": self.source_fps,
                "face_count": self.face_count,
                "tracks": self.tracks,
                "dropped_tracks": self.dropped_tracks,
                "frames": self.frames,
            }
        )


def h264_encoder() -> str:
    """The first H.264 encoder this PyAV build ships (libx264 in the PyPI wheels)."""
    for name in H264_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
        return name
    raise RuntimeError("PyAV has no H.264 encoder (libx264 or libopenh264)")


def _even_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_VIDEO_SIDE / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _open(source: str | Path | bytes) -> av.container.InputContainer:
    if isinstance(source, bytes | bytearray) and len(source) > MAX_VIDEO_BYTES:
        raise VideoLoadError(f"the video is larger than {MAX_VIDEO_BYTES // 2**20} MB")
    if isinstance(source, str | Path) and Path(source).stat().st_size > MAX_VIDEO_BYTES:
        raise VideoLoadError(f"the video is larger than {MAX_VIDEO_BYTES // 2**20} MB")
    try:
        # Metadata (titles, tags) that is not UTF-8 is read with replacement characters, not refused.
        container = av.open(
            io.BytesIO(source) if isinstance(source, bytes | bytearray) else str(source), metadata_errors="replace"
        )
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as error:
        raise VideoLoadError(f"this file is not a video that can be read ({', '.join(VIDEO_EXTENSIONS)})") from error
    if not container.streams.video:
        container.close()
        raise VideoLoadError("this file has no video track")
    context = container.streams.video[0].codec_context
    if context is None:  # a video track in a codec this FFmpeg build cannot decode (or a damaged header)
        container.close()
        raise VideoLoadError("this file's video track uses a format that cannot be decoded")
    if (context.width or 0) * (context.height or 0) > MAX_VIDEO_FRAME_PIXELS:
        container.close()
        raise VideoLoadError(
            f"the video's frames are {context.width}x{context.height}; the limit is {MAX_VIDEO_FRAME_PIXELS:,} pixels "
            "per frame (4K UHD)"
        )
    return container


def _decoded(
    source: str | Path | bytes,
    max_seconds: float,
    fps: float,
    max_frames: int = MAX_DECODED_VIDEO_FRAMES,
    cut: dict | None = None,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, seconds, RGB (H, W, 3) frame) of a video's first `max_seconds`, sampled evenly in time to
    at most `fps` frames a second, at most `max_frames` decoded (cut["truncated"] is set when there was
    more, cut["last_seconds"] to the last frame's time); raises VideoLoadError."""
    container = _open(source)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        source_fps = float(stream.average_rate or stream.guessed_rate or Fraction(25))
        next_sample = 0.0  # seconds: the next frame at or after this time is analysed
        for index, frame in enumerate(container.decode(stream)):
            seconds = float(frame.time) if frame.time is not None else index / source_fps
            if seconds > max_seconds or index >= max_frames:
                if cut is not None:
                    cut["truncated"] = True
                return
            if seconds + 1e-6 < next_sample:
                continue
            next_sample = max(next_sample + 1 / fps, seconds + 0.5 / fps)
            if cut is not None:
                cut["last_seconds"] = seconds
            yield index, seconds, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as error:
        raise VideoLoadError(f"the video could not be decoded ({error.strerror or 'corrupt data'})") from error
    except (UnicodeDecodeError, ValueError, ZeroDivisionError) as error:
        raise VideoLoadError("the video could not be decoded (corrupt data)") from error
    finally:
        container.close()


def track_summaries(frames: list[dict], fps: float) -> dict[int, dict]:
    """Per track id, over the frames where it was detected: first and last time (s), duration (s, one
    frame counts 1/fps), their number, and its mean detection score (None when the detector gives none)."""
    tracks: dict[int, dict] = {}
    for frame in frames:
        for face in frame["faces"]:
            if not face.get("detected", True):  # a box held after the detector lost it is no evidence
                continue
            track = tracks.setdefault(
                face["track_id"], {"track_id": face["track_id"], "first": frame["time"], "detected": 0, "scores": []}
            )
            track["last"] = frame["time"]
            track["detected"] += 1
            if face.get("detection_score") is not None:
                track["scores"].append(face["detection_score"])
    for track in tracks.values():
        track["duration"] = round(track["last"] - track["first"] + 1 / fps, 4)
        scores = track.pop("scores")
        track["detection_score"] = round(float(np.mean(scores)), 4) if scores else None
    return tracks


def real_tracks(
    summaries: dict[int, dict],
    clip_seconds: float,
    *,
    min_seconds: float = MIN_TRACK_SECONDS,
    min_score: float = MIN_TRACK_SCORE,
) -> set[int]:
    """The track ids reported: seen for at least `min_seconds` (or half of a shorter clip) and, when the
    detector scores its boxes, with a mean detection score of at least `min_score`. A face is not
    reported from a few frames of a shirt or a shadow the detector took for one."""
    needed = min(min_seconds, 0.5 * clip_seconds)
    return {
        track_id
        for track_id, track in summaries.items()
        if track["duration"] >= needed and (track["detection_score"] is None or track["detection_score"] >= min_score)
    }


def process_video(
    source: str | Path | bytes,
    *,
    model: str | None = None,
    detector: str = DEFAULT_DETECTOR,
    smoothing: bool = True,
    strength: float = 0.6,
    tta: bool = True,
    min_face: int = 24,
    max_seconds: float = MAX_VIDEO_SECONDS,
    max_fps: float = MAX_ANALYSIS_FPS,
    max_frames: int = MAX_DECODED_VIDEO_FRAMES,
    min_track_seconds: float = MIN_TRACK_SECONDS,
    min_track_score: float = MIN_TRACK_SCORE,
    progress: Callable[[int, int], None] | None = None,
) -> VideoAnalysis:
    """Analyse a video file (path or bytes) and encode the annotated result as H.264 mp4.

    The first ``max_seconds`` are analysed, at most ``max_fps`` frames per second of them (frames are
    sampled evenly in time; the output plays at the analysed rate), and at most ``max_frames`` frames
    are decoded. Two passes over the file: the first tracks and classifies every analysed frame; only
    the tracks that pass `real_tracks` are kept, in the per-frame results, the counts and the mp4 the
    second pass draws. progress(done, total) is called after each analysed frame of both passes (total,
    twice the frame count, is an estimate from the container; it is at least `done`).
    Raises VideoLoadError for unreadable input.
    """
    started = time.perf_counter()
    emotion_model = load(model)
    settings = LiveSettings(
        model=emotion_model.name,
        detector=detector,
        smoothing=smoothing,
        strength=strength,
        tta=tta,
        budget_ms=None,
        min_face=min_face,
        draw_stats=False,
    )
    processor = FrameProcessor(settings)
    container = _open(source)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        source_fps = float(rate)
        if source_fps > max_fps:  # sample down: the output plays at the analysed rate
            rate = Fraction(max_fps).limit_denominator(1001)
        fps = float(rate)
        duration = (
            float(stream.duration * stream.time_base)
            if stream.duration
            else (container.duration / av.time_base if container.duration else 0.0)
        )
        total = max(1, round(min(duration or max_seconds, max_seconds) * fps))
        size = _even_size(stream.codec_context.width or 2, stream.codec_context.height or 2)
    except (av.error.FFmpegError, ValueError, ZeroDivisionError, TypeError) as error:
        raise VideoLoadError("the video's header cannot be read") from error
    finally:
        container.close()

    def fit(rgb: np.ndarray) -> np.ndarray:
        return rgb if (rgb.shape[1], rgb.shape[0]) == size else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)

    frames: list[dict] = []
    cut = {"truncated": False, "last_seconds": 0.0}
    for index, seconds, rgb in _decoded(source, max_seconds, fps, max_frames, cut):
        _, result = processor.process(fit(rgb))
        frames.append({"frame": index, "time": round(seconds, 4), "faces": [f.to_dict() for f in result.faces]})
        if progress is not None:
            progress(len(frames), 2 * max(total, len(frames)))
    if not frames:
        raise VideoLoadError("the video has no frames that can be decoded")
    analysed = time.perf_counter()
    clip_seconds = frames[-1]["time"] - frames[0]["time"] + 1 / fps
    summaries = track_summaries(frames, fps)
    kept = real_tracks(summaries, clip_seconds, min_seconds=min_track_seconds, min_score=min_track_score)
    for frame in frames:
        frame["faces"] = [face for face in frame["faces"] if face["track_id"] in kept]
    scores = [len(f["faces"]) + max((face["confidence"] for face in f["faces"]), default=0.0) for f in frames]
    best = int(np.argmax(scores))
    representative: np.ndarray | None = None
    with _Mp4Writer(rate) as writer:
        for position, (_, _, rgb) in enumerate(_decoded(source, max_seconds, fps, max_frames)):
            if position >= len(frames):
                break
            annotated = annotate(writer.fit(rgb), [FaceResult.from_dict(face) for face in frames[position]["faces"]])
            if position == best:
                representative = annotated
            writer.write(annotated)
            if progress is not None:
                progress(len(frames) + position + 1, 2 * len(frames))
    return VideoAnalysis(
        mp4=writer.data,
        frames=frames,
        fps=fps,
        size=writer.size,
        model=emotion_model.name,
        detector=detector,
        labels=emotion_model.labels,
        representative_index=best,
        representative=representative if representative is not None else writer.fit(np.zeros((2, 2, 3), np.uint8)),
        truncated=cut["truncated"],
        timings={"analyse_s": analysed - started, "total_s": time.perf_counter() - started},
        tracks=[summaries[t] for t in sorted(kept)],
        dropped_tracks=[summaries[t] for t in sorted(set(summaries) - kept)],
        source_fps=source_fps,
        analysed_seconds=cut["last_seconds"] if cut["truncated"] else min(duration, max_seconds) or cut["last_seconds"],
    )


class _Mp4Writer:
    """H.264 yuv420p mp4 with +faststart (index first, so browsers play while downloading). Faststart
    rewrites the file, so it is written to a temporary path; `data` holds the bytes after the block."""

    def __init__(self, rate: Fraction):
        self.rate = rate
        self.data = b""
        self.size = (0, 0)
        self._stream: av.video.stream.VideoStream | None = None
        self._count = 0

    def __enter__(self) -> _Mp4Writer:
        self._dir = tempfile.TemporaryDirectory(prefix="emotion-video-")
        self._path = Path(self._dir.name) / "annotated.mp4"
        self._output = av.open(str(self._path), "w", format="mp4", options={"movflags": "+faststart"})
        return self

    def fit(self, rgb: np.ndarray) -> np.ndarray:
        """RGB (H, W, 3) -> the output size: even sides, at most MAX_VIDEO_SIDE (set by the first frame)."""
        if self._stream is None:
            self.size = _even_size(rgb.shape[1], rgb.shape[0])
            self._stream = self._output.add_stream(h264_encoder(), rate=self.rate)
            self._stream.width, self._stream.height = self.size
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "23", "preset": "veryfast"}
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        return rgb

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = self._count, 1 / self.rate
        self._count += 1
        self._output.mux(self._stream.encode(frame))

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self._stream is not None:
                self._output.mux(self._stream.encode(None))
            self._output.close()
            if exc_type is None:
                self.data = self._path.read_bytes()
        finally:
            self._dir.cleanup()


def frames_to_csv(frames: list[dict], labels: Iterable[str] = ()) -> str:
    """One row per face per frame: frame, time, track_id, label, confidence, x, y, w, h, one column per label."""
    labels = list(labels) or sorted({k for f in frames for face in f["faces"] for k in face["scores"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["frame", "time", "track_id", "label", "confidence", "x", "y", "w", "h", *labels])
    for f in frames:
        for face in f["faces"]:
            writer.writerow(
                [
                    f["frame"],
                    f["time"],
                    face["track_id"],
                    face["label"],
                    face["confidence"],
                    *face["box"],
                    *(face["scores"].get(k, "") for k in labels),
                ]
            )
    return buffer.getvalue()


def timeline_rows(frames: list[dict]) -> list[dict]:
    """Flat rows for a per-face timeline chart: {"time", "track", "label", "confidence"} per face per frame."""
    return [
        {
            "time": f["time"],
            "track": f"face {face['track_id']}",
            "label": face["label"],
            "confidence": face["confidence"],
        }
        for f in frames
        for face in f["faces"]
    ]


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: int = 15, codec: str | None = None) -> Path:
    """Write RGB uint8 (H, W, 3) frames to a video file; codec from the extension unless given."""
    path = Path(path)
    codec = codec or {".webm": "libvpx", ".avi": "mpeg4"}.get(path.suffix.lower()) or h264_encoder()
    with av.open(str(path), "w") as output:
        stream = None
        for index, rgb in enumerate(frames):
            if stream is None:
                stream = output.add_stream(codec, rate=fps)
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = index
            output.mux(stream.encode(frame))
        if stream is not None:
            output.mux(stream.encode(None))
    return path


def write_y4m(frames: Iterable[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write RGB uint8 (H, W, 3) frames (even W, H) as YUV4MPEG2 4:2:0: a text header, then per frame
    "FRAME\\n" and the planar I420 bytes (Y H*W, U and V (H/2)*(W/2) each)."""
    path = Path(path)
    with path.open("wb") as handle:
        for index, rgb in enumerate(frames):
            height, width = rgb.shape[:2]
            if index == 0:
                handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            handle.write(b"FRAME\n")
            handle.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420).tobytes())
    return path
