"""Live webcam (WebRTC, annotated in real time) and video files (annotated H.264 mp4). UI only: the
frame pipeline is emotion.live.FrameProcessor, files go through emotion.video.process_video."""

from __future__ import annotations

import logging
import time
import uuid

import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

import emotion
from emotion import config
from emotion.config import MAX_ANALYSIS_FPS, MAX_VIDEO_BYTES, MAX_VIDEO_SECONDS, VIDEO_EXTENSIONS
from emotion.detectors import DETECTOR_DESCRIPTIONS
from emotion.live import FrameProcessor, LiveSnapshot, rtc_configuration
from emotion.video import VideoLoadError, process_video
from pages.common import counted, installed_models, require_user, show_error, store
from pages.result_view import downloads, save_status, show_analysis
from studio import analyses
from studio.analyses import FACE_KEYS, AnalysisResult
from studio.figures import timeline_image

log = logging.getLogger(__name__)
PROCESSOR_KEY = "live_processor"  # session_state: this browser session's FrameProcessor (tracks, timeline)
SNAPSHOT_KEY = "live_snapshot"  # session_state: the last saved snapshot and its reports
PANEL_SECONDS = 1.0  # the live panel's refresh period while the camera plays
TIMELINE_SECONDS = 60.0  # the timeline shows the main face's last minute
VIDEO_KEY = "live_video"  # session_state: the last processed video, so reruns do not redo it


def _ice_configuration() -> dict:
    """EMOTION_ICE_SERVERS, else `ice_servers` in secrets.toml, else none (see docs/LIVE.md)."""
    try:
        secret = st.secrets.get("ice_servers")
    except (FileNotFoundError, KeyError):
        secret = None
    try:
        return rtc_configuration(config.ice_servers_env(), secret)
    except ValueError as error:
        show_error(f"{error}. Using no ICE servers (this machine and the LAN only).")
        return {"iceServers": []}


def _options() -> dict:
    """Model, detector and smoothing widgets (sidebar)."""
    models = installed_models()
    names = [m.name for m in models]
    default = emotion.default_model_name()
    with st.sidebar:
        st.subheader("Live settings")
        model = st.selectbox("Model", names, index=names.index(default), key="live_model")
        detector = st.selectbox(
            "Face detector", list(DETECTOR_DESCRIPTIONS), format_func=lambda n: f"{n}: {DETECTOR_DESCRIPTIONS[n]}"
        )
        smoothing = st.toggle("Smooth labels over time", value=True, help="EMA of each face's probabilities")
        strength = st.slider(
            "Smoothing strength", 0.0, 0.95, 0.6, 0.05, disabled=not smoothing,
            help="Weight of the past per frame: after n frames a change has reached 1 - strength^n of its "
            "new value (0.6: 78% after 3 frames; 0.9: 65% after 10).",
        )  # fmt: skip
        tta = st.toggle(
            "Test-time augmentation", value=True, help="Each face also classified mirrored (or in crops, as the "
            "model chose), as on the Photo page: the same answers there and here, a little more accurate and better "
            "calibrated, for about twice the classification time per face (see the Models page).",
        )  # fmt: skip
        adaptive = st.toggle(
            "Frame budget", value=True, help="When frames take longer than the budget, detect less often and on "
            "a smaller image (tracking faces in between) instead of falling behind.",
        )  # fmt: skip
        budget = st.slider("Budget per frame (ms)", 8, 100, 33, disabled=not adaptive)
        draw_stats = st.toggle("FPS and latency on the video", value=True)
    return {
        "model": model, "detector": detector, "smoothing": smoothing, "strength": strength, "tta": tta,
        "budget_ms": float(budget) if adaptive else None, "draw_stats": draw_stats,
    }  # fmt: skip


def _live_timeline(processor: FrameProcessor) -> None:
    """The main face's probabilities over the last minute, under the video at its drawn size. A picture,
    not a plotly chart: redrawing a chart every second cost the video above it frames (docs/LIVE.md)."""
    snap = processor.snapshot()
    main = snap.result.main_face if snap.result else None
    if main is not None:
        picture = timeline_image(snap.timeline, tuple(main.result.scores), TIMELINE_SECONDS)
        st.image(picture, caption="Main face over time", width=picture.shape[1])


def _live_panel(processor: FrameProcessor) -> None:
    """Probability bars, timeline and counters; re-run on a timer while the camera plays."""
    snap: LiveSnapshot = processor.snapshot()
    result = snap.result
    fps, latency = (result.fps, result.timings["total_ms"]) if result else (0.0, 0.0)
    top, bottom = st.columns(2), st.columns(2)
    top[0].metric("FPS", f"{fps:.1f}", help="Frames processed per second (last 2 s)")
    top[1].metric("Latency", f"{latency:.0f} ms", help="Server time from a frame's arrival to its annotated copy")
    bottom[0].metric("Frames processed", snap.frames_processed)
    bottom[1].metric("Frames dropped", snap.frames_dropped, help="Arrived while another frame was processed")
    main = result.main_face if result else None
    if main is None:
        st.caption("No face in view." if result else "Start the camera to see live results.")
        return
    label = main.result.label
    faces = counted(len(result.faces), "face")
    st.markdown(f"**Face {main.track_id}: {label} ({main.result.confidence:.0%})** · {faces}")
    # Plain bars, not a chart: this panel redraws every second beside the video, and a plotly redraw cost
    # the browser the frames it should have shown.
    for name, value in sorted(main.result.scores.items(), key=lambda item: -item[1]):
        st.progress(min(1.0, max(0.0, value)), text=f"{name} {value:.0%}")


def _save_snapshot(processor: FrameProcessor, user) -> None:
    """The current clean frame and its faces, saved through studio.analyses (numbered in reading order)."""
    snap = processor.snapshot()
    if snap.clean_frame is None or snap.result is None:
        st.warning("Start the camera first: there is no frame to save yet.")
        return
    frame, result = snap.clean_frame, snap.result
    faces = [{k: f.to_dict()[k] for k in FACE_KEYS} for f in result.faces]
    options = {
        "model": emotion.load(snap.settings.model).name, "detector": snap.settings.detector,
        "smoothing": snap.settings.strength if snap.settings.smoothing else 0.0, "tta": snap.settings.tta,
    }  # fmt: skip
    saved = analyses.save_analysis(
        store(), user, source="snapshot", content=frame.tobytes(), options=options, faces=faces, image=frame,
        title=f"Webcam snapshot {time.strftime('%Y-%m-%d %H:%M:%S')}", timings=result.timings,
        extra={"track_ids": [f.track_id for f in result.faces]},
    )  # fmt: skip
    st.session_state[SNAPSHOT_KEY] = {"key": uuid.uuid4().hex, "result": saved}


def _snapshot_result() -> None:
    kept = st.session_state.get(SNAPSHOT_KEY)
    if not kept:
        return
    result: AnalysisResult = kept["result"]
    save_status(result, "Snapshot saved")
    st.image(result.display_jpeg(640), caption="Saved snapshot (faces numbered left to right)", width=320)
    downloads(result, kept["key"])


def webcam_tab(options: dict, user) -> None:
    if PROCESSOR_KEY not in st.session_state:
        st.session_state[PROCESSOR_KEY] = FrameProcessor()
    processor: FrameProcessor = st.session_state[PROCESSOR_KEY]
    processor.configure(**options)
    video_col, side_col = st.columns([3, 2])
    with video_col:
        ctx = webrtc_streamer(
            key="emotion-live",
            mode=WebRtcMode.SENDRECV,
            rtc_configuration=_ice_configuration(),
            media_stream_constraints={"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}, "audio": False},
            # The callbacks run in streamlit-webrtc's media thread and never touch st.*: results reach this
            # page through the processor's lock (snapshot()). Only the newest queued frame is processed.
            queued_video_frames_callback=processor.recv_queued,
            on_video_ended=processor.on_ended,
            async_processing=True,
        )
        st.caption(
            "Your camera's video goes to this server only; frames are analysed in memory and nothing is kept "
            "unless you take a snapshot."
        )
        if st.button("Snapshot: save this frame", icon=":material/photo_camera:", disabled=not ctx.state.playing):
            _save_snapshot(processor, user)
        _snapshot_result()
    with side_col:
        if not ctx.state.playing and processor.snapshot().result is not None:
            processor.reset()  # stopped: the panel starts empty (on_ended does the same from the media thread)
        st.fragment(run_every=PANEL_SECONDS if ctx.state.playing else None)(_live_panel)(processor)
    st.fragment(run_every=PANEL_SECONDS if ctx.state.playing else None)(_live_timeline)(processor)


def _analyze_video(upload, options: dict, user) -> None:
    """Every frame analysed (progress bar), then saved through studio.analyses with its mp4 and frames."""
    data = upload.getvalue()
    bar = st.progress(0.0, text="Analysing frames…")

    def progress(done: int, total: int) -> None:  # two passes: analysing, then drawing the real tracks
        if done == total or done % 5 == 0:
            step = "Analysing frames" if 2 * done <= total else "Drawing the faces found"
            bar.progress(min(1.0, done / total), text=f"{step}… {min(1.0, done / total):.0%}")

    try:
        analysis = process_video(
            data, model=options["model"], detector=options["detector"], smoothing=options["smoothing"],
            strength=options["strength"], tta=options["tta"], progress=progress,
        )  # fmt: skip
    except VideoLoadError as error:
        bar.empty()
        show_error(f"{upload.name} cannot be analysed: {error}.")
        return
    bar.progress(1.0, text=f"Done: {len(analysis.frames)} frames in {analysis.timings['total_s']:.1f} s")
    faces = [{**{k: f[k] for k in FACE_KEYS}, "index": f["track_id"]} for f in analysis.representative_faces]
    recorded = {
        "model": analysis.model, "detector": analysis.detector,
        "smoothing": options["strength"] if options["smoothing"] else 0.0, "tta": options["tta"],
    }  # fmt: skip
    saved = analyses.save_analysis(
        store(), user, source="video", content=data, options=recorded, faces=faces,
        annotated=analysis.representative, original_name=upload.name, title=f"Video {upload.name}",
        timings=analysis.timings, media=analysis.mp4, frames=analysis.frames, labels=analysis.labels,
        extra={"fps": analysis.fps, "representative_frame": analysis.representative_index,
               "truncated": analysis.truncated, "tracks": analysis.tracks,
               "dropped_tracks": len(analysis.dropped_tracks)},
    )  # fmt: skip
    st.session_state[VIDEO_KEY] = {
        "key": uuid.uuid4().hex, "result": saved, "input": upload.file_id, "face_count": analysis.face_count,
        "dropped_tracks": len(analysis.dropped_tracks),
        "notes": analysis.notes, "frames": len(analysis.frames), "seconds": analysis.timings["total_s"],
    }  # fmt: skip


def video_tab(options: dict, user) -> None:
    st.caption(
        f"Up to {MAX_VIDEO_BYTES // 2**20} MB and {MAX_VIDEO_SECONDS:.0f} s ({', '.join(VIDEO_EXTENSIONS)}). "
        f"Frames are analysed at up to {MAX_ANALYSIS_FPS:g} per second; the annotated video, its per-frame CSV and "
        "reports are saved to your history."
    )
    upload = st.file_uploader("Video file", type=list(VIDEO_EXTENSIONS), key="live_video_upload")
    kept = st.session_state.get(VIDEO_KEY)
    if kept and (upload is None or kept["input"] != upload.file_id):  # a new file clears the old result
        st.session_state.pop(VIDEO_KEY)
    if upload is not None and st.button("Analyse video", type="primary"):
        _analyze_video(upload, options, user)
    kept = st.session_state.get(VIDEO_KEY)
    if not kept:
        return
    result: AnalysisResult = kept["result"]
    left_out = kept["dropped_tracks"]
    st.caption(
        f"{counted(kept['frames'], 'frame')} analysed in {kept['seconds']:.1f} s: "
        f"{counted(kept['face_count'], 'face')} tracked"
        + (f", {counted(left_out, 'brief or unsure detection')} left out" if left_out else "")
        + " (a face is reported when it was followed for half a second by a confident detector)."
    )
    for note in kept["notes"]:
        st.info(note)
    name = result.report["image"]["original_name"] or ""
    show_analysis(result, kept["key"], caption=name, saved=f"{name}: saved")


user = require_user()
st.title("Live webcam and video")
options = _options()
webcam, video = st.tabs(["Webcam", "Video file"])
with webcam:
    webcam_tab(options, user)
with video:
    video_tab(options, user)
