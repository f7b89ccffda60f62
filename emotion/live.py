"""Live frames: detect, track, smooth, classify and annotate one video frame at a time.

`FrameProcessor.process(frame) -> (annotated, FrameResult)` is the whole per-frame pipeline of the
webcam page and of video files (emotion.video). It is UI-free and thread-safe to read from:

- Tracking: faces are matched across frames by IoU, then by centroid distance (`Tracker`), so each
  face keeps a track id while it moves; a track not seen for `max_missed` frames is dropped.
- Smoothing: per track, an exponential moving average (EMA) of the class probabilities,
  ``s_t = (1 - a) * p_t + a * s_(t-1)`` with ``a = strength`` in [0, 1). After a step change of the
  input the remaining distance to the new value is ``a ** n`` of the step after n frames (half-life
  ``log(0.5) / log(a)`` frames: a=0.6 -> 1.4 frames, a=0.8 -> 3.1, a=0.9 -> 6.6). Boxes get the same
  EMA with ``min(a, 0.5)`` so they follow motion without jitter. strength 0 (or smoothing off) shows raw
  per-frame output.
- Frame budget: a full-frame detection costs several times the rest of the pipeline, so it runs every
  `detect_every` frames on a copy scaled to `detect_side` pixels; frames in between detect only inside
  a small region around each tracked box (ROI detection, rescaled so the face is ~64 px) every
  `roi_every` frames, and follow each face by template matching on the others. `FrameBudget` raises or
  lowers that level from the measured frame time. Frames that arrive while one is being
  processed are dropped, never queued (see `recv_queued`), so latency cannot pile up.

Thread model: `process` runs in streamlit-webrtc's media worker thread; the Streamlit page reads
`snapshot()` from its script thread and changes settings with `configure()`. Both cross through
`self._lock` (held only to swap references, never while computing), because a page rerun and a frame
can happen at the same time and the page must never see a half-updated result. The tracker and budget
are touched by the processing thread only; `reset()` from another thread is a request it applies on
its next frame. The model runtime is shared by all sessions (emotion.runtime holds its own lock).
"""

from __future__ import annotations

import collections
import json
import math
import threading
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from emotion import config
from emotion.detectors import DEFAULT_DETECTOR, Box, clip_box, crop, expand_box, get_detector
from emotion.pipeline import FaceResult, annotate, classify_crops, face_crop
from emotion.registry import EmotionModel, load

# ROI detection: the region around a tracked box is rescaled so the previous face is this many pixels
# wide (HOG's window is 80 px, so it needs more), and a face must be at least `ROI_MIN_FRACTION` of it.
ROI_FACE_PX = {"blazeface": 64, "haar": 64, "hog": 96}
ROI_MARGIN = 0.45  # region = previous box grown by this fraction of its size on every side
ROI_MIN_FRACTION = 0.62
# Budget levels, cheapest last: (full detection every n frames, longer side of the detection copy,
# ROI detection every m frames). Frames with neither follow each face by template matching.
BUDGET_LEVELS: tuple[tuple[int, int, int], ...] = (
    (1, 400, 1), (2, 400, 1), (3, 320, 1), (5, 320, 2), (8, 320, 3), (12, 320, 3), (20, 320, 3),
)  # fmt: skip
TEMPLATE_PX = 32  # face templates are matched at this width
TEMPLATE_MIN_SCORE = 0.5  # normalised cross-correlation below this: the face is lost (until detected again)


def rtc_configuration(env_value: str | None = None, secret_value: object = None) -> dict:
    """The WebRTC configuration: {"iceServers": [...]}; none by default (works offline, on one machine or a LAN).

    env_value: the EMOTION_ICE_SERVERS environment variable, a JSON list of RTCIceServer objects
    ([{"urls": ["stun:stun.l.google.com:19302"]}, {"urls": "turn:...", "username": ..., "credential": ...}]);
    secret_value: `ice_servers` from .streamlit/secrets.toml, the same list. The variable wins.
    Raises ValueError (user-facing message) when the value is not such a list.
    """
    servers = secret_value if env_value in (None, "") else env_value
    if servers in (None, ""):
        return {"iceServers": [dict(s) for s in config.DEFAULT_ICE_SERVERS]}
    if isinstance(servers, str):
        try:
            servers = json.loads(servers)
        except json.JSONDecodeError as error:
            raise ValueError(f"EMOTION_ICE_SERVERS is not valid JSON ({error.msg})") from error
    if not isinstance(servers, list) or not all(isinstance(s, dict) and s.get("urls") for s in servers):
        raise ValueError('ICE servers must be a JSON list of objects with "urls", e.g. [{"urls": "stun:host:3478"}]')
    return {"iceServers": [dict(s) for s in servers]}


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, in [0, 1]."""
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a.area + b.area - inter
    return inter / union if union else 0.0


def ema(previous: np.ndarray | None, new: np.ndarray, strength: float) -> np.ndarray:
    """(K,) EMA step: ``(1 - strength) * new + strength * previous``; `new` when there is no history."""
    if previous is None or strength <= 0:
        return np.asarray(new, dtype=np.float64).copy()
    return (1.0 - strength) * np.asarray(new, dtype=np.float64) + strength * previous


@dataclass
class Track:
    """A face followed across frames: its latest box, smoothed probabilities (K,) and bookkeeping."""

    id: int
    box: Box
    last_seen: int  # frame index of the last detection matched to it
    hits: int = 1
    probs: np.ndarray | None = None  # smoothed (K,) probabilities, None until first classified
    box_state: np.ndarray | None = None  # smoothed (x, y, w, h) float64
    template: np.ndarray | None = None  # grey (TEMPLATE_PX, TEMPLATE_PX) uint8 of the last detected face
    detection_score: float | None = None  # the detector's confidence at its last detection (BlazeFace gives one)
    # The eyes of the last detection that gave them, as fractions of its box ((fx, fy), (fx, fy)): they move
    # with the (smoothed, tracked) box between detections, so every frame's crop can be aligned.
    eyes_in_box: tuple[tuple[float, float], tuple[float, float]] | None = None

    def record(self, box: Box) -> None:
        """A detection's confidence and eye keypoints, when the detector gives them."""
        if box.score is not None:
            self.detection_score = box.score
        if box.eyes is not None and box.w > 0 and box.h > 0:
            self.eyes_in_box = tuple(((ex - box.x) / box.w, (ey - box.y) / box.h) for ex, ey in box.eyes)

    def aligned_box(self) -> Box:
        """The current box, carrying the eyes placed in it (None when no detection gave eyes)."""
        if self.eyes_in_box is None:
            return self.box
        b = self.box
        return replace(b, eyes=tuple((b.x + fx * b.w, b.y + fy * b.h) for fx, fy in self.eyes_in_box))

    @property
    def center(self) -> tuple[float, float]:
        return self.box.x + self.box.w / 2, self.box.y + self.box.h / 2


class Tracker:
    """Greedy IoU matching of detections to tracks, with a centroid-distance fallback.

    A detection matches the free track of highest IoU >= `iou_threshold`; left-overs match the nearest
    free track whose centre lies within `max_shift` x the track's box size. Unmatched detections start
    new tracks (ids never reused); tracks unseen for more than `max_missed` frames are dropped.
    """

    def __init__(self, iou_threshold: float = 0.3, max_shift: float = 0.6, max_missed: int = 10):
        self.iou_threshold = iou_threshold
        self.max_shift = max_shift
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: list[Box], frame_index: int) -> list[Track]:
        """Match this frame's detections; returns the track of each box, in the order of `boxes`."""
        free = list(self.tracks)
        assigned: list[Track | None] = [None] * len(boxes)
        pairs = sorted(((iou(b, t.box), i, t) for i, b in enumerate(boxes) for t in free), key=lambda p: -p[0])
        for overlap, i, track in pairs:
            if overlap < self.iou_threshold:
                break
            if assigned[i] is None and track in free:
                assigned[i] = track
                free.remove(track)
        for i, box in enumerate(boxes):
            if assigned[i] is not None:
                continue
            cx, cy = box.x + box.w / 2, box.y + box.h / 2
            near = [(math.dist((cx, cy), t.center) / max(t.box.w, t.box.h), t) for t in free]
            near = [(d, t) for d, t in near if d <= self.max_shift]
            if near:
                assigned[i] = min(near, key=lambda p: p[0])[1]
                free.remove(assigned[i])
        for i, box in enumerate(boxes):
            track = assigned[i]
            if track is None:
                track = Track(self._next_id, box, frame_index)
                track.record(box)
                self._next_id += 1
                self.tracks.append(track)
                assigned[i] = track
            else:
                self.observe(track, box, frame_index)
        self.prune(frame_index)
        return [t for t in assigned if t is not None]

    def observe(self, track: Track, box: Box, frame_index: int) -> None:
        """Record a detection already known to belong to `track` (ROI detection)."""
        track.box, track.last_seen, track.hits = box, frame_index, track.hits + 1
        track.record(box)

    def prune(self, frame_index: int) -> None:
        self.tracks = [t for t in self.tracks if frame_index - t.last_seen <= self.max_missed]

    def visible(self, frame_index: int, hold: int) -> list[Track]:
        """Tracks seen within the last `hold` frames, largest box first."""
        live = [t for t in self.tracks if frame_index - t.last_seen <= hold]
        return sorted(live, key=lambda t: -t.box.area)


class FrameBudget:
    """Chooses a BUDGET_LEVELS entry from an EMA of measured frame times (ms).

    Every `period` frames: above `target_ms` -> one level cheaper; below `relax` x target -> one level
    richer. target_ms None pins level 0 (full detection on every frame).
    """

    def __init__(self, target_ms: float | None = 16.0, period: int = 10, relax: float = 0.55):
        self.target_ms = target_ms
        self.period = period
        self.relax = relax
        self.level = 0
        self.mean_ms: float | None = None
        self._count = 0

    @property
    def detect_every(self) -> int:
        return BUDGET_LEVELS[self.level][0]

    @property
    def detect_side(self) -> int:
        return BUDGET_LEVELS[self.level][1]

    @property
    def roi_every(self) -> int:
        return BUDGET_LEVELS[self.level][2]

    def record(self, elapsed_ms: float) -> None:
        self.mean_ms = elapsed_ms if self.mean_ms is None else 0.8 * self.mean_ms + 0.2 * elapsed_ms
        self._count += 1
        if self.target_ms is None or self._count % self.period:
            return
        if self.mean_ms > self.target_ms and self.level < len(BUDGET_LEVELS) - 1:
            self.level += 1
        elif self.mean_ms < self.relax * self.target_ms and self.level > 0:
            self.level -= 1


@dataclass(frozen=True)
class LiveSettings:
    """What the page can change while streaming (all read once per frame)."""

    model: str | None = None  # None: the registry's default model
    detector: str = DEFAULT_DETECTOR
    smoothing: bool = True
    strength: float = 0.6  # EMA weight of the past, in [0, 0.95]
    budget_ms: float | None = 16.0  # per-frame target; None = full detection every frame
    min_face: int = 48  # pixels, in the frame (a face about 2 m from a 640x480 webcam)
    margin: float = 0.1  # crop margin around a box before classification (faces without eye keypoints)
    align: bool = True  # rotate each face upright from its eyes, framed like FER2013 (emotion.pipeline.face_crop)
    tta: bool = True  # the model's test-time augmentation, as on the Photo page: its calibrated answers there
    draw_stats: bool = True  # FPS / latency banner on the frame
    hold: int = 3  # frames a face stays drawn after its detector stops finding it


@dataclass
class TrackedFace:
    """A face in one frame: its track id, the smoothed result (drawn) and the raw scores."""

    track_id: int
    result: FaceResult  # smoothed scores and box
    raw_scores: dict[str, float]
    detected: bool  # False when the box was held from an earlier frame
    detection_score: float | None = None  # the detector's confidence in this face (None: not given)

    def to_dict(self) -> dict:
        return {
            "track_id": self.track_id,
            **self.result.to_dict(),
            "detected": self.detected,
            "detection_score": self.detection_score,
        }


@dataclass
class FrameResult:
    """The outcome of one processed frame; `timings` in ms; `mode` "full" (detection on the whole frame),
    "roi" (detection around each tracked face) or "track" (template matching only)."""

    index: int
    size: tuple[int, int]  # (width, height)
    faces: list[TrackedFace]
    mode: str
    timings: dict[str, float]
    fps: float
    detect_every: int
    detect_side: int
    dropped: int = 0

    @property
    def main_face(self) -> TrackedFace | None:
        return self.faces[0] if self.faces else None

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "size": list(self.size),
            "mode": self.mode,
            "fps": round(self.fps, 2),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "faces": [f.to_dict() for f in self.faces],
        }


@dataclass
class LiveSnapshot:
    """What the page reads: the latest annotated RGB frames (H, W, 3) (as shown, and without the stats
    banner for snapshots), its result, the main face's timeline and counters."""

    frame: np.ndarray | None
    clean_frame: np.ndarray | None
    result: FrameResult | None
    timeline: list[dict]
    frames_processed: int
    frames_dropped: int
    settings: LiveSettings = field(default_factory=LiveSettings)


class FrameProcessor:
    """Per-stream state and the frame pipeline. One per browser session; the model is shared."""

    def __init__(self, settings: LiveSettings | None = None, timeline_seconds: float = 60.0):
        self._lock = threading.Lock()
        self._settings = settings or LiveSettings()
        self._timeline_seconds = timeline_seconds
        self._latest_frame: np.ndarray | None = None
        self._latest_clean: np.ndarray | None = None
        self._latest: FrameResult | None = None
        self._timeline: collections.deque[dict] = collections.deque()
        self._processed = 0
        self._dropped = 0
        self._reset_requested = False
        self._model: EmotionModel | None = None
        self._model_key: str | None = None
        self._init_stream_state()

    # --- called from any thread -------------------------------------------------------------
    @property
    def settings(self) -> LiveSettings:
        with self._lock:
            return self._settings

    def configure(self, **changes) -> LiveSettings:
        """Change settings (LiveSettings field names); a new model or detector restarts tracking."""
        with self._lock:
            new = replace(self._settings, **changes)
            if (new.model, new.detector) != (self._settings.model, self._settings.detector):
                self._reset_requested = True
            self._settings = new
            return new

    def reset(self) -> None:
        """Forget tracks, timeline and counters (applied by the processing thread on its next frame)."""
        with self._lock:
            self._reset_requested = True
            self._latest, self._latest_frame, self._latest_clean = None, None, None
            self._timeline.clear()
            self._processed = self._dropped = 0

    def snapshot(self) -> LiveSnapshot:
        """A consistent view for the page. The frame array is never written after it is published."""
        with self._lock:
            return LiveSnapshot(
                self._latest_frame,
                self._latest_clean,
                self._latest,
                list(self._timeline),
                self._processed,
                self._dropped,
                self._settings,
            )

    # --- called from the processing thread ---------------------------------------------------
    def _init_stream_state(self) -> None:
        self.tracker = Tracker()
        self.budget = FrameBudget(self._settings.budget_ms)
        self._index = -1
        self._last_full = -(10**9)
        self._out_times: collections.deque[float] = collections.deque(maxlen=30)
        self._started = time.monotonic()

    def process(
        self, frame: np.ndarray, *, bgr: bool = False, started: float | None = None, dropped: int = 0
    ) -> tuple[np.ndarray, FrameResult]:
        """One RGB (or BGR with bgr=True) uint8 (H, W, 3) frame -> annotated RGB (H, W, 3) copy + result.

        `started` (time.perf_counter()) lets a caller include its own decoding in the latency shown.
        """
        started = started if started is not None else time.perf_counter()
        with self._lock:
            settings, reset = self._settings, self._reset_requested
            self._reset_requested = False
        if reset:
            self._init_stream_state()
        self.budget.target_ms = settings.budget_ms
        rgb = np.ascontiguousarray(frame[:, :, 2::-1]) if bgr else frame[:, :, :3]
        self._index += 1
        tracks, mode, detect_ms = self._detect(rgb, settings)
        t1 = time.perf_counter()
        faces = self._classify(rgb, tracks, settings)
        t2 = time.perf_counter()
        annotated = annotate(rgb, [f.result for f in faces], numbers=[f.track_id for f in faces])
        elapsed = (time.perf_counter() - started) * 1000
        self._out_times.append(time.monotonic())
        fps = self._fps()
        result = FrameResult(
            self._index,
            (rgb.shape[1], rgb.shape[0]),
            faces,
            mode,
            {"detect_ms": detect_ms, "classify_ms": (t2 - t1) * 1000, "total_ms": elapsed},
            fps,
            self.budget.detect_every,
            self.budget.detect_side,
            dropped,
        )
        clean = annotated
        if settings.draw_stats:
            clean = annotated.copy()  # snapshots are saved without the banner
            draw_stats(annotated, result)
        result.timings["total_ms"] = (time.perf_counter() - started) * 1000
        self.budget.record(result.timings["total_ms"])
        self._publish(annotated, clean, result)
        return annotated, result

    def _detect(self, rgb: np.ndarray, settings: LiveSettings) -> tuple[list[Track], str, float]:
        started = time.perf_counter()
        height, width = rgb.shape[:2]
        since_full = self._index - self._last_full
        # Without tracks too, the budget's interval holds: an empty scene must not cost a detection a frame.
        if since_full >= self.budget.detect_every:
            mode = "full"
            detector = get_detector(settings.detector, min_face=settings.min_face, max_side=self.budget.detect_side)
            self.tracker.update(detector.detect(rgb), self._index)
            self._last_full = self._index
        else:
            mode = "roi" if since_full % self.budget.roi_every == 0 else "track"
            for track in list(self.tracker.tracks):
                if mode == "roi":
                    box = roi_detect(rgb, track.box, settings.detector)
                else:
                    box = template_track(rgb, track.box, track.template) if track.template is not None else None
                if box is not None:
                    self.tracker.observe(track, box, self._index)
            self._merge_duplicates()
            self.tracker.prune(self._index)
        strength = min(settings.strength, 0.5) if settings.smoothing else 0.0
        for track in self.tracker.tracks:
            if track.last_seen == self._index:
                if mode != "track":  # a fresh detection: the template follows the face's current look
                    track.template = face_template(rgb, track.box)
                state = ema(track.box_state, np.array(track.box.as_list(), float), strength)
                track.box_state = state
                track.box = clip_box(*state, width, height) or track.box
        return self.tracker.visible(self._index, settings.hold), mode, (time.perf_counter() - started) * 1000

    def _merge_duplicates(self) -> None:
        """Two tracks whose ROI searches found the same face: keep the older one."""
        kept: list[Track] = []
        for track in sorted(self.tracker.tracks, key=lambda t: t.id):
            if all(iou(track.box, k.box) < 0.5 for k in kept):
                kept.append(track)
        self.tracker.tracks = kept

    def _classify(self, rgb: np.ndarray, tracks: list[Track], settings: LiveSettings) -> list[TrackedFace]:
        if not tracks:
            return []
        if self._model is None or self._model_key != settings.model:  # resolve once, not per frame
            self._model, self._model_key = load(settings.model), settings.model
        model: EmotionModel = self._model
        boxes = [t.box for t in tracks]
        # Aligned like the Photo page's faces (eyes level, FER2013's framing) when the detector gave eyes.
        crops = [face_crop(rgb, t.aligned_box(), settings.margin, align=settings.align) for t in tracks]
        raw = classify_crops(crops, boxes, model, settings.tta)
        strength = settings.strength if settings.smoothing else 0.0
        faces = []
        for track, face in zip(tracks, raw, strict=True):
            probs = np.array([face.scores[k] for k in model.labels])
            history = track.probs if track.probs is not None and len(track.probs) == len(probs) else None
            track.probs = ema(history, probs, strength)
            scores = {k: float(v) for k, v in zip(model.labels, track.probs, strict=True)}
            smoothed = FaceResult(face.box, max(scores, key=scores.get), scores, dict(face.timings))
            detected = track.last_seen == self._index
            faces.append(TrackedFace(track.id, smoothed, face.scores, detected, track.detection_score))
        return faces

    def _fps(self) -> float:
        times = [t for t in self._out_times if self._out_times[-1] - t <= 2.0]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    def _publish(self, annotated: np.ndarray, clean: np.ndarray, result: FrameResult) -> None:
        now = time.monotonic() - self._started
        main = result.main_face
        with self._lock:
            self._latest_frame, self._latest_clean, self._latest = annotated, clean, result
            self._processed += 1
            self._dropped += result.dropped
            if main is not None:
                self._timeline.append(
                    {
                        "t": now,
                        "track_id": main.track_id,
                        "label": main.result.label,
                        "confidence": main.result.confidence,
                        **main.result.scores,
                    }
                )
            while self._timeline and now - self._timeline[0]["t"] > self._timeline_seconds:
                self._timeline.popleft()

    # --- streamlit-webrtc glue ---------------------------------------------------------------
    async def recv_queued(self, frames: list) -> list:
        """streamlit-webrtc `queued_video_frames_callback`: av.VideoFrames waiting -> one annotated frame.

        Only the newest frame is processed; older ones are dropped (and counted) instead of queued, so a
        slow frame never delays the next. The returned frame is sent for each incoming frame until the
        next one is ready.
        """
        started = time.perf_counter()
        rgb = frames[-1].to_ndarray(format="rgb24")
        annotated, _ = self.process(rgb, started=started, dropped=len(frames) - 1)
        return [to_video_frame(annotated)]

    def on_ended(self) -> None:
        """streamlit-webrtc `on_video_ended` (STOP): the panel empties and the next stream starts afresh."""
        self.reset()


def to_video_frame(rgb: np.ndarray):
    """An RGB (H, W, 3) frame as the yuv420p av.VideoFrame the VP8 encoder takes: OpenCV's conversion costs
    about a third of an rgb24 frame's conversion inside the encoder (odd sizes take that path)."""
    import av

    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return av.VideoFrame.from_ndarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format="yuv420p")


def roi_detect(rgb: np.ndarray, previous: Box, detector: str = DEFAULT_DETECTOR) -> Box | None:
    """Look for one face in a region around `previous` (RGB (H, W, 3) frame); None when it is gone.

    The region is rescaled so the previous face is ROI_FACE_PX wide; the largest hit is mapped back.
    """
    height, width = rgb.shape[:2]
    region = expand_box(previous, ROI_MARGIN, width, height)
    face_px = ROI_FACE_PX.get(detector, 80)
    scale = face_px / max(1, previous.w)
    patch = crop(rgb, region)
    size = (max(1, round(patch.shape[1] * scale)), max(1, round(patch.shape[0] * scale)))
    small = cv2.resize(patch, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    # max_side above any region size: the region is already at the wanted scale (one cached detector).
    found = get_detector(detector, min_face=int(face_px * ROI_MIN_FRACTION), max_side=100_000, pad=0.0).detect(small)
    if not found:
        return None
    b = found[0]
    box = clip_box(region.x + b.x / scale, region.y + b.y / scale, b.w / scale, b.h / scale, width, height)
    if box is None:
        return None
    eyes = None if b.eyes is None else tuple((region.x + ex / scale, region.y + ey / scale) for ex, ey in b.eyes)
    return replace(box, score=b.score, eyes=eyes)


def face_template(rgb: np.ndarray, box: Box) -> np.ndarray:
    """Grey (TEMPLATE_PX, TEMPLATE_PX) uint8 picture of the box's face, for `template_track`."""
    patch = cv2.cvtColor(np.ascontiguousarray(crop(rgb, box)), cv2.COLOR_RGB2GRAY)
    return cv2.resize(patch, (TEMPLATE_PX, TEMPLATE_PX), interpolation=cv2.INTER_AREA)


def template_track(rgb: np.ndarray, previous: Box, template: np.ndarray) -> Box | None:
    """Where the face of `template` moved near `previous` in an RGB (H, W, 3) frame (same size), or None.

    Normalised cross-correlation over the region around the box, both scaled so the face is TEMPLATE_PX
    wide (about 0.1 ms); only translation is followed, detection frames correct the size.
    """
    height, width = rgb.shape[:2]
    region = expand_box(previous, ROI_MARGIN, width, height)
    sx, sy = TEMPLATE_PX / max(1, previous.w), TEMPLATE_PX / max(1, previous.h)
    size = (round(region.w * sx), round(region.h * sy))
    if size[0] <= TEMPLATE_PX or size[1] <= TEMPLATE_PX:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(crop(rgb, region)), cv2.COLOR_RGB2GRAY)
    scores = cv2.matchTemplate(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(scores)
    if best < TEMPLATE_MIN_SCORE:
        return None
    return clip_box(region.x + x / sx, region.y + y / sy, previous.w, previous.h, width, height)


def draw_stats(image: np.ndarray, result: FrameResult) -> None:
    """Draw "NN FPS | NN ms | detect 1/N @side" bottom-left on an RGB (H, W, 3) image, in place: at the top
    it hid the label of a face near the top edge (labels go above their box)."""
    text = (
        f"{result.fps:4.1f} FPS | {result.timings['total_ms']:4.1f} ms | "
        f"detect 1/{result.detect_every} @{result.detect_side}px | faces {len(result.faces)}"
    )
    scale = max(0.4, image.shape[1] / 1400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    height = image.shape[0]
    top = height - (th + base + 8)
    cv2.rectangle(image, (0, top), (tw + 10, height), (0, 0, 0), -1)
    cv2.putText(image, text, (5, top + th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
