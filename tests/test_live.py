"""The live frame pipeline: annotation, tracking, EMA smoothing, frame budget, threads, WebRTC worker."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time

import av
import cv2
import numpy as np
import pytest

from emotion import color_for, get_detector, load_image
from emotion.detectors import DETECTORS, Box
from emotion.live import (
    BUDGET_LEVELS,
    FrameBudget,
    FrameProcessor,
    LiveSettings,
    Tracker,
    ema,
    face_template,
    iou,
    roi_detect,
    rtc_configuration,
    template_track,
)


def webcam_frame(photo: np.ndarray, dx: int = 0, dy: int = 0, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A (H, W, 3) RGB frame with the photo scaled to 90% of the height, shifted by (dx, dy) pixels."""
    width, height = size
    scale = 0.9 * height / photo.shape[0]
    small = cv2.resize(photo, (int(photo.shape[1] * scale), int(photo.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 90, np.uint8)
    y0, x0 = (height - small.shape[0]) // 2 + dy, (width - small.shape[1]) // 2 + dx
    frame[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return frame


@pytest.fixture(scope="module")
def obama(photos_dir) -> np.ndarray:
    return load_image(photos_dir / "obama.jpg")


def test_annotated_frame_has_the_input_size_rgb_and_bgr(obama):
    frame = webcam_frame(obama)
    processor = FrameProcessor()
    out, result = processor.process(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8 and out is not frame
    assert result.size == (640, 480) and len(result.faces) == 1
    out_bgr, result_bgr = FrameProcessor().process(np.ascontiguousarray(frame[:, :, ::-1]), bgr=True)
    assert out_bgr.shape == frame.shape
    assert result_bgr.faces[0].result.box == result.faces[0].result.box  # same face: BGR was converted
    odd = np.zeros((241, 319, 3), np.uint8)  # no face, odd size
    out_odd, result_odd = FrameProcessor().process(odd)
    assert out_odd.shape == odd.shape and result_odd.faces == []


def test_box_drawn_where_the_face_is(obama):
    frame = webcam_frame(obama)
    expected = get_detector(LiveSettings().detector, min_face=40, max_side=400).detect(frame)[0]
    out, result = FrameProcessor(LiveSettings(draw_stats=False)).process(frame)
    face = result.faces[0]
    assert iou(face.result.box, expected) > 0.9
    b = face.result.box
    colour = np.array(color_for(face.result.label))
    left_edge = out[b.y + b.h // 2 - 10 : b.y + b.h // 2 + 10, b.x]
    assert np.all(np.abs(left_edge.astype(int) - colour).max(axis=1) <= 1)
    assert set(face.to_dict()) >= {"track_id", "box", "label", "confidence", "scores"}


def test_stats_banner_drawn(obama):
    frame = webcam_frame(obama)
    with_stats, _ = FrameProcessor().process(frame)
    without, _ = FrameProcessor(LiveSettings(draw_stats=False)).process(frame)
    assert (with_stats[-12:, :200] != without[-12:, :200]).any()  # bottom-left, never over a label at the top
    assert (with_stats[:440] == without[:440]).all()


def test_ema_step_converges_at_documented_rate():
    old, new = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    for strength in (0.3, 0.6, 0.9):
        state = old
        for n in range(1, 25):
            state = ema(state, new, strength)
            assert np.allclose(state - new, strength**n * (old - new))
        half_life = math.log(0.5) / math.log(strength)
        state = old
        for _ in range(math.ceil(half_life)):
            state = ema(state, new, strength)
        assert abs(state[1]) >= 0.5  # at least half-way after ceil(half-life) frames
    assert np.array_equal(ema(None, new, 0.9), new) and np.array_equal(ema(old, new, 0.0), new)


def test_processor_smooths_with_the_documented_recurrence(obama, photos_dir):
    """Scores drawn = (1 - a) * raw + a * previous drawn, frame after frame, across a change of face."""
    biden = load_image(photos_dir / "biden.jpg")
    frames = [webcam_frame(obama)] * 4 + [webcam_frame(biden[: biden.shape[0] // 2])] * 8
    strength = 0.7
    processor = FrameProcessor(LiveSettings(strength=strength, budget_ms=None))
    previous, raw_changed = None, False
    for frame in frames:
        _, result = processor.process(frame)
        face = result.faces[0]
        raw = np.array(list(face.raw_scores.values()))
        drawn = np.array([face.result.scores[k] for k in face.raw_scores])
        expected = raw if previous is None else (1 - strength) * raw + strength * previous
        assert np.allclose(drawn, expected, atol=1e-9)
        raw_changed |= previous is not None and not np.allclose(raw, previous, rtol=0, atol=1e-7)
        previous = drawn
    assert raw_changed
    off = FrameProcessor(LiveSettings(smoothing=False, budget_ms=None))
    for frame in frames[3:6]:
        _, result = off.process(frame)
        face = result.faces[0]
        assert face.result.scores == pytest.approx(face.raw_scores)


def test_tracker_keeps_ids_across_small_motion_and_drops_stale_tracks():
    tracker = Tracker(max_missed=5)
    ids = set()
    for i in range(30):
        a = Box(100 + 4 * i, 80 + 2 * i, 120, 120)  # 4 px a frame to the right
        b = Box(450 - 3 * i, 200, 90, 90)
        tracks = tracker.update([b, a] if i % 2 else [a, b], i)
        by_box = {t.box: t.id for t in tracks}
        ids.add((by_box[a], by_box[b]))
    assert ids == {(1, 2)}
    # A big jump (centre more than 0.6 box sizes away, no overlap) is a new face.
    jumped = tracker.update([Box(10, 300, 60, 60)], 30)
    assert jumped[0].id == 3
    for frame in range(31, 37):
        tracker.update([Box(10, 300, 60, 60)], frame)
    assert [t.id for t in tracker.tracks] == [3]


def test_processor_track_id_stable_while_the_face_moves(obama):
    processor = FrameProcessor(LiveSettings(budget_ms=None))
    ids = set()
    for i in range(25):
        _, result = processor.process(webcam_frame(obama, dx=int(30 * math.sin(i / 4)), dy=i % 3))
        assert len(result.faces) == 1
        ids.add(result.faces[0].track_id)
    assert ids == {1}


@pytest.mark.parametrize(
    "detector", [pytest.param(d, marks=pytest.mark.slow) if d == "hog" else d for d in sorted(DETECTORS)]
)  # hog is the slowest detector: the full suite runs it
def test_roi_detection_follows_the_face(obama, detector):
    start = get_detector(detector, min_face=40, max_side=400).detect(webcam_frame(obama))[0]
    moved = webcam_frame(obama, dx=18, dy=-6)
    found = roi_detect(moved, start, detector)
    truth = get_detector(detector, min_face=40, max_side=400).detect(moved)[0]
    assert found is not None and iou(found, truth) > 0.7
    assert roi_detect(np.full_like(moved, 90), start, detector) is None


def test_template_tracking_follows_translation(obama):
    frame = webcam_frame(obama)
    start = get_detector("haar", min_face=40, max_side=400).detect(frame)[0]
    template = face_template(frame, start)
    assert template.shape == (32, 32)
    moved = template_track(webcam_frame(obama, dx=14, dy=-5), start, template)
    assert moved is not None and abs(moved.x - (start.x + 14)) <= 3 and abs(moved.y - (start.y - 5)) <= 3
    assert template_track(np.full_like(frame, 90), start, template) is None  # nothing to match: lost


def test_frame_budget_adapts_both_ways():
    budget = FrameBudget(target_ms=16, period=5)
    for _ in range(40):
        budget.record(60.0)
    assert budget.level == len(BUDGET_LEVELS) - 1 and budget.detect_every > 1
    for _ in range(80):
        budget.record(2.0)
    assert budget.level == 0 and budget.detect_every == 1
    pinned = FrameBudget(target_ms=None, period=1)
    for _ in range(20):
        pinned.record(500.0)
    assert pinned.level == 0


def test_processor_under_a_tight_budget_detects_less_often_and_keeps_the_face(obama):
    processor = FrameProcessor(LiveSettings(budget_ms=0.01))  # impossible target: cheapest level
    modes = []
    for i in range(90):
        _, result = processor.process(webcam_frame(obama, dx=i % 7))
        modes.append(result.mode)
        assert len(result.faces) == 1 and result.faces[0].track_id == 1
    assert result.detect_every == BUDGET_LEVELS[-1][0]
    assert modes[-24:].count("full") <= 3 and "roi" in modes and "track" in modes


def test_empty_scene_under_a_tight_budget_is_not_searched_every_frame():
    processor = FrameProcessor(LiveSettings(budget_ms=0.01))
    modes = [processor.process(np.full((480, 640, 3), 90, np.uint8))[1].mode for _ in range(90)]
    assert modes[0] == "full" and modes[-40:].count("full") <= 2


def test_snapshot_and_configure_from_another_thread(obama):
    """The page thread reads snapshots while the media thread processes: always a consistent pair."""
    frames = [webcam_frame(obama, dx=d) for d in (0, 4, 8)]
    processor = FrameProcessor()
    stop = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    def page() -> None:
        while not stop.is_set():
            snap = processor.snapshot()
            if snap.result is not None:
                if snap.frame.shape != (480, 640, 3) or (seen and snap.result.index < seen[-1]):
                    errors.append(f"inconsistent snapshot at {snap.result.index}")
                seen.append(snap.result.index)
            processor.configure(strength=0.5 + 0.1 * (len(seen) % 3))

    reader = threading.Thread(target=page)
    reader.start()
    for i in range(40):
        processor.process(frames[i % 3])
    stop.set()
    reader.join(5)
    assert not errors and seen and processor.snapshot().frames_processed == 40
    assert len(processor.snapshot().timeline) == 40
    processor.configure(detector="hog")  # a new detector restarts tracking on the next frame
    _, result = processor.process(frames[0])
    assert result.index == 0


def test_rtc_configuration_offline_by_default_and_configurable():
    assert rtc_configuration(None, None) == {"iceServers": []}
    stun = [{"urls": ["stun:stun.example.org:3478"]}]
    assert rtc_configuration('[{"urls": ["stun:stun.example.org:3478"]}]') == {"iceServers": stun}
    assert rtc_configuration(None, stun) == {"iceServers": stun}  # from secrets.toml
    turn = '[{"urls": "turn:t.example.org", "username": "u", "credential": "c"}]'
    assert rtc_configuration(turn, stun)["iceServers"][0]["username"] == "u"  # the variable wins
    for bad in ("not json", '{"urls": "stun:x"}', '[{"url": "stun:x"}]'):
        with pytest.raises(ValueError):
            rtc_configuration(bad)


def test_snapshot_frame_without_the_stats_banner(obama):
    processor = FrameProcessor()
    shown, _ = processor.process(webcam_frame(obama))
    snap = processor.snapshot()
    assert snap.frame is shown and snap.clean_frame.shape == shown.shape
    assert (snap.clean_frame[-12:, :150] == 90).all() and (shown[-12:, :150] != 90).any()


def test_recv_queued_processes_only_the_newest_frame(obama):
    processor = FrameProcessor()
    frames = [av.VideoFrame.from_ndarray(webcam_frame(obama, dx=d), format="rgb24") for d in (0, 5, 10)]
    out = asyncio.run(processor.recv_queued(frames))
    assert len(out) == 1 and (out[0].width, out[0].height) == (640, 480)
    snap = processor.snapshot()
    assert snap.frames_processed == 1 and snap.frames_dropped == 2


@pytest.mark.slow
def test_twenty_webrtc_sessions_leave_no_threads_behind(obama):
    """streamlit-webrtc's own server worker (as the page runs it) against an aiortc browser stand-in."""
    from aiortc import RTCConfiguration, RTCPeerConnection, VideoStreamTrack
    from aiortc.contrib.media import MediaRelay
    from streamlit_webrtc.models import VideoProcessorBase  # noqa: F401  (import side effects as in the app)
    from streamlit_webrtc.webrtc import WebRtcMode, WebRtcWorker

    frame_rgb = webcam_frame(obama)

    class Camera(VideoStreamTrack):
        async def recv(self) -> av.VideoFrame:
            pts, time_base = await self.next_timestamp()
            frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            return frame

    loop = asyncio.new_event_loop()
    # aiortc resolves addresses in the loop's default executor, whose pool grows lazily: one worker
    # thread, started by the warm-up session, keeps that pool out of the before/after comparison.
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="loop-pool"))
    loop_thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    loop_thread.start()
    relay = asyncio.run_coroutine_threadsafe(_make_relay(MediaRelay), loop).result(5)
    processor = FrameProcessor()

    def session() -> np.ndarray:
        client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        received: asyncio.Future = loop.create_future()

        async def offer() -> None:
            client.addTrack(Camera())
            client.on("track", lambda track: received.set_result(track) if not received.done() else None)
            await client.setLocalDescription(await client.createOffer())

        asyncio.run_coroutine_threadsafe(offer(), loop).result(10)
        worker = WebRtcWorker(
            mode=WebRtcMode.SENDRECV,
            rtc_configuration=RTCConfiguration(iceServers=[]),
            source_video_track=None,
            source_audio_track=None,
            sink_video_track=None,
            sink_audio_track=None,
            player_factory=None,
            in_recorder_factory=None,
            out_recorder_factory=None,
            video_frame_callback=None,
            audio_frame_callback=None,
            queued_video_frames_callback=processor.recv_queued,
            queued_audio_frames_callback=None,
            on_video_ended=processor.on_ended,
            on_audio_ended=None,
            video_processor_factory=None,
            audio_processor_factory=None,
            async_processing=True,
            video_receiver_size=4,
            audio_receiver_size=4,
            sendback_video=True,
            sendback_audio=False,
            loop=loop,
            relay=relay,
        )
        answer = worker.process_offer(client.localDescription.sdp, client.localDescription.type, timeout=10)

        async def play() -> np.ndarray:
            await client.setRemoteDescription(answer)
            track = await asyncio.wait_for(received, 10)
            frame = None
            for _ in range(8):  # the first frames can precede the first processed one
                frame = await asyncio.wait_for(track.recv(), 10)
            return frame.to_ndarray(format="rgb24")

        try:
            return asyncio.run_coroutine_threadsafe(play(), loop).result(30)
        finally:
            worker.stop(timeout=5)
            asyncio.run_coroutine_threadsafe(client.close(), loop).result(10)

    try:
        first = session()  # warms up thread pools that live as long as the loop
        time.sleep(0.5)
        before = {t.ident for t in threading.enumerate()}
        for _ in range(20):
            last = session()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            extra = [t for t in threading.enumerate() if t.ident not in before]
            if not extra:
                break
            time.sleep(0.2)
        assert not extra, f"threads left behind: {[t.name for t in extra]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(5)
    # Frames came back through WebRTC annotated: the stats banner and a box edge in the label colour.
    for image in (first, last):
        assert image.shape == (480, 640, 3)
        assert image[-10:, :150].mean() < 60  # black banner bottom-left (the camera frame is grey 90 there)
    snap = processor.snapshot()  # each session's end (STOP) emptied the panel
    assert snap.result is None and snap.frames_processed == 0 and snap.timeline == []


async def _make_relay(factory):
    return factory()


def test_stop_empties_the_panel_and_restarts_tracking(obama):
    processor = FrameProcessor()
    for _ in range(3):
        processor.process(webcam_frame(obama))
    assert processor.snapshot().frames_processed == 3
    processor.on_ended()  # STOP
    snap = processor.snapshot()
    assert snap.result is None and snap.frame is None and snap.timeline == [] and snap.frames_processed == 0
    _, result = processor.process(webcam_frame(obama))  # the next stream
    assert result.index == 0 and [f.track_id for f in result.faces] == [1]


def test_frames_go_back_as_yuv420p_with_the_same_picture(obama):
    from emotion.live import to_video_frame

    frame = webcam_frame(obama)
    out = to_video_frame(frame)
    assert out.format.name == "yuv420p" and (out.width, out.height) == (640, 480)
    back = out.to_ndarray(format="rgb24").astype(int)
    assert np.abs(back - frame.astype(int)).mean() < 4  # colour conversion, not a different picture
    assert to_video_frame(frame[:479, :639]).format.name == "rgb24"  # odd sizes: the encoder converts


def test_roi_detection_keeps_blazeface_eyes_in_frame_pixels(obama):
    frame = webcam_frame(obama)
    start = get_detector("blazeface", min_face=40, max_side=400).detect(frame)[0]
    found = roi_detect(webcam_frame(obama, dx=18, dy=-6), start, "blazeface")
    assert found is not None and found.eyes is not None and start.eyes is not None
    for (fx, fy), (sx, sy) in zip(found.eyes, start.eyes, strict=True):  # moved with the face, within 4 px
        assert abs(fx - (sx + 18)) <= 4 and abs(fy - (sy - 6)) <= 4


def test_live_faces_are_aligned_from_the_tracked_eyes(obama, monkeypatch):
    """A tilted face: every frame's crop (detection, ROI and template frames alike) is the eye-levelled
    crop of emotion.pipeline.face_crop, with the eyes carried by the track between detections."""
    import emotion.live as live

    frame = webcam_frame(obama)
    tilted = cv2.warpAffine(frame, cv2.getRotationMatrix2D((320, 240), 20, 1.0), (640, 480), borderValue=(90, 90, 90))
    seen: list = []
    original = live.face_crop
    monkeypatch.setattr(
        live, "face_crop", lambda image, box, margin, align: seen.append(box) or original(image, box, margin, align)
    )
    processor = FrameProcessor(LiveSettings(budget_ms=1e-3))  # a budget never met: detection gets rarer
    modes = set()
    for _ in range(40):
        _, result = processor.process(tilted)
        assert len(result.faces) == 1
        modes.add(result.mode)
    assert modes == {"full", "roi", "track"}
    assert len(seen) == 40 and all(box.eyes is not None for box in seen)
    (lx, ly), (rx, ry) = seen[-1].eyes
    assert abs(math.degrees(math.atan2(ry - ly, rx - lx)) + 20) < 6  # the 20° tilt, counter-clockwise
    processor.configure(align=False)
    processor.process(tilted)
    assert seen[-1].eyes is not None  # the box still carries them; face_crop is told not to rotate


def test_live_answers_are_the_photo_pages_with_tta_and_plain_without(obama, monkeypatch):
    """With TTA (the default) a live face's raw scores are the model's TTA answer for its crop, as the Photo
    page gives; turned off, its plain answer."""
    import emotion.live as live
    from emotion import load

    crops: list[np.ndarray] = []
    original = live.face_crop
    monkeypatch.setattr(live, "face_crop", lambda *args, **kwargs: crops.append(original(*args, **kwargs)) or crops[-1])
    model = load(None)
    for tta in (True, False):
        processor = FrameProcessor(LiveSettings(tta=tta, smoothing=False, budget_ms=None))
        assert LiveSettings().tta
        _, result = processor.process(webcam_frame(obama))
        raw = np.array(list(result.faces[0].raw_scores.values()))
        expected = model.predict_faces([crops[-1]], tta=tta)[0]
        other = model.predict_faces([crops[-1]], tta=not tta)[0]
        assert np.allclose(raw, expected, atol=1e-6) and not np.allclose(raw, other, atol=1e-6)
