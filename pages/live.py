"""Live webcam (WebRTC, annotated in real time) and video files (annotated H.264 mp4). UI only: the
frame pipeline is emotion.live.FrameProcessor, files go through emotion.video.process_video."""

from __future__ import annotations

import json
import logging
import os
import time

import plotly.graph_objects as go
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

import emotion
from emotion.detectors import DETECTOR_DESCRIPTIONS
from emotion.imageio import encode_png
from emotion.live import FrameProcessor, LiveSnapshot, rtc_configuration
from emotion.video import (
    MAX_VIDEO_BYTES,
    MAX_VIDEO_SECONDS,
    VIDEO_EXTENSIONS,
    VideoLoadError,
    frames_to_csv,
    process_video,
    timeline_rows,
)
from pages.common import installed_models, report_downloads, require_user, show_error, store
from studio import reports

log = logging.getLogger(__name__)
PROCESSOR_KEY = "live_processor"  # session_state: this browser session's FrameProcessor (tracks, timeline)
SNAPSHOT_KEY = "live_snapshot"  # session_state: the last saved snapshot and its reports
PANEL_SECONDS = 1.0  # the live panel's refresh period while the camera plays
TIMELINE_SECONDS = 3.0  # and its timeline chart's
VIDEO_KEY = "live_video"  # session_state: the last processed video, so reruns do not redo it
FACE_KEYS = ("box", "label", "confidence", "scores", "valence", "arousal")  # FaceResult.to_dict() fields


def _ice_configuration() -> dict:
    """EMOTION_ICE_SERVERS, else `ice_servers` in secrets.toml, else none (see docs/LIVE.md)."""
    try:
        secret = st.secrets.get("ice_servers")
    except (FileNotFoundError, KeyError):
        secret = None
    try:
        return rtc_configuration(os.environ.get("EMOTION_ICE_SERVERS"), secret)
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
        adaptive = st.toggle(
            "Frame budget", value=True, help="When frames take longer than the budget, detect less often and on "
            "a smaller image (tracking faces in between) instead of falling behind.",
        )  # fmt: skip
        budget = st.slider("Budget per frame (ms)", 8, 100, 33, disabled=not adaptive)
        draw_stats = st.toggle("FPS and latency on the video", value=True)
    return {
        "model": model, "detector": detector, "smoothing": smoothing, "strength": strength,
        "budget_ms": float(budget) if adaptive else None, "draw_stats": draw_stats,
    }  # fmt: skip


def _timeline(rows: list[dict], labels: tuple[str, ...]) -> go.Figure:
    figure = go.Figure()
    if rows:
        start = rows[0]["t"]
        times = [r["t"] - start for r in rows]
        for label in labels:
            figure.add_trace(
                go.Scatter(x=times, y=[r.get(label, 0.0) for r in rows], name=label, mode="lines",
                           line=dict(color=f"rgb{emotion.color_for(label)}"))
            )  # fmt: skip
    figure.update_layout(
        title="Main face over time", height=260, margin=dict(l=0, r=0, t=30, b=0),
        xaxis_title="seconds", yaxis=dict(range=[0, 1], title="probability"),
    )  # fmt: skip
    return figure


def _live_timeline(processor: FrameProcessor) -> None:
    """The main face's probabilities over time; redrawn less often than the numbers (a chart costs the
    browser more than the video beside it can spare)."""
    snap = processor.snapshot()
    main = snap.result.main_face if snap.result else None
    if main is not None:
        st.plotly_chart(_timeline(snap.timeline, tuple(main.result.scores)), key="live_timeline")


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
    st.markdown(f"**Face {main.track_id}: {label} ({main.result.confidence:.0%})** · {len(result.faces)} face(s)")
    # Plain bars, not a chart: this panel redraws every second beside the video, and a plotly redraw cost
    # the browser the frames it should have shown.
    for name, value in sorted(main.result.scores.items(), key=lambda item: -item[1]):
        st.progress(min(1.0, max(0.0, value)), text=f"{name} {value:.0%}")


def _save_snapshot(processor: FrameProcessor, user) -> None:
    snap = processor.snapshot()
    if snap.clean_frame is None or snap.result is None:
        st.warning("Start the camera first: there is no frame to save yet.")
        return
    frame, result = snap.clean_frame, snap.result
    faces = [{k: f.to_dict()[k] for k in FACE_KEYS} for f in result.faces]
    model = emotion.load(snap.settings.model).name
    analysis = store().add_analysis(
        user.id, source="snapshot", model=model, detector=snap.settings.detector, faces=faces,
        image_png=encode_png(frame), title=f"Webcam snapshot {time.strftime('%Y-%m-%d %H:%M:%S')}",
        extra={"image_size": list(result.size), "timings": result.timings,
               "track_ids": [f.track_id for f in result.faces],
               "smoothing": snap.settings.strength if snap.settings.smoothing else 0.0},
    )  # fmt: skip
    report = reports.report_for_analysis(analysis, user.username)
    st.session_state[SNAPSHOT_KEY] = {
        "id": analysis.id, "frame": frame, "report": report,
    }  # fmt: skip


def _snapshot_result() -> None:
    saved = st.session_state.get(SNAPSHOT_KEY)
    if not saved:
        return
    st.success(f"Snapshot saved to your history (analysis #{saved['id']}).")
    st.image(saved["frame"], caption="Saved snapshot", width=320)
    report = saved["report"]
    report_downloads(
        report, lambda: reports.pdf_report(report, saved["frame"]), json.dumps(report, indent=2),
        labels=("PDF report", "JSON report"),
        keys=("snap_pdf", "snap_json"), on_click="rerun",
    )  # fmt: skip


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
        st.fragment(run_every=TIMELINE_SECONDS if ctx.state.playing else None)(_live_timeline)(processor)


def _faces_chart(frames: list[dict]) -> go.Figure:
    figure = go.Figure()
    rows = timeline_rows(frames)
    for track in sorted({r["track"] for r in rows}):
        mine = [r for r in rows if r["track"] == track]
        figure.add_trace(
            go.Scatter(x=[r["time"] for r in mine], y=[r["label"] for r in mine], name=track, mode="markers+lines",
                       text=[f"{r['confidence']:.0%}" for r in mine],
                       marker=dict(color=[f"rgb{emotion.color_for(r['label'])}" for r in mine], size=7))
        )  # fmt: skip
    figure.update_layout(title="Emotion per face over time", xaxis_title="seconds", height=320)
    return figure


def _analyze_video(upload, options: dict, user) -> None:
    data = upload.getvalue()
    bar = st.progress(0.0, text="Analysing frames…")

    def progress(done: int, total: int) -> None:  # two passes: analysing, then drawing the real tracks
        if done == total or done % 5 == 0:
            step = "Analysing frames" if 2 * done <= total else "Drawing the faces found"
            bar.progress(min(1.0, done / total), text=f"{step}… {min(1.0, done / total):.0%}")

    try:
        analysis = process_video(
            data, model=options["model"], detector=options["detector"], smoothing=options["smoothing"],
            strength=options["strength"], progress=progress,
        )  # fmt: skip
    except VideoLoadError as error:
        bar.empty()
        show_error(str(error))
        return
    bar.progress(1.0, text=f"Done: {len(analysis.frames)} frames in {analysis.timings['total_s']:.1f} s")
    faces = [{k: f[k] for k in FACE_KEYS} for f in analysis.representative_faces]
    saved = store().add_analysis(
        user.id, source="video", model=analysis.model, detector=analysis.detector, faces=faces,
        image_png=encode_png(analysis.representative), original_name=upload.name, title=f"Video {upload.name}",
        media_bytes=analysis.mp4, media_ext="mp4",
        extra={"image_size": list(analysis.size), "fps": analysis.fps, "frames": analysis.frames,
               "representative_frame": analysis.representative_index, "timings": analysis.timings,
               "tracks": analysis.tracks, "dropped_tracks": len(analysis.dropped_tracks)},
    )  # fmt: skip
    report = reports.report_for_analysis(saved, user.username)
    st.session_state[VIDEO_KEY] = {
        "name": upload.name, "id": saved.id, "mp4": analysis.mp4, "frames": analysis.frames,
        "csv": frames_to_csv(analysis.frames, analysis.labels), "json": analysis.to_json(), "report": report,
        "frame": analysis.representative, "truncated": analysis.truncated,
        "face_count": analysis.face_count, "dropped_tracks": len(analysis.dropped_tracks),
    }  # fmt: skip


def video_tab(options: dict, user) -> None:
    st.caption(
        f"Up to {MAX_VIDEO_BYTES // 2**20} MB and {MAX_VIDEO_SECONDS:.0f} s ({', '.join(VIDEO_EXTENSIONS)}). "
        "Every frame is analysed; the annotated video is saved to your history."
    )
    upload = st.file_uploader("Video file", type=list(VIDEO_EXTENSIONS), key="live_video_upload")
    if upload is not None and st.button("Analyse video", type="primary"):
        _analyze_video(upload, options, user)
    result = st.session_state.get(VIDEO_KEY)
    if not result:
        return
    st.success(f"{result['name']}: saved to your history (analysis #{result['id']}).")
    st.caption(
        f"{result['face_count']} face(s) tracked; {result['dropped_tracks']} brief or unsure detection(s) not "
        "reported (a face must be followed for half a second with a confident detector)."
    )
    if result["truncated"]:
        st.info(f"Only the first {MAX_VIDEO_SECONDS:.0f} seconds were analysed.")
    st.video(result["mp4"], format="video/mp4")
    st.plotly_chart(_faces_chart(result["frames"]), key="video_chart")
    stem = result["name"].rsplit(".", 1)[0]
    cols = st.columns(5)
    cols[0].download_button("Annotated video", result["mp4"], f"{stem}-annotated.mp4", "video/mp4")
    cols[1].download_button("Per-frame CSV", result["csv"], f"{stem}-frames.csv", "text/csv")
    cols[2].download_button("Per-frame JSON", result["json"], f"{stem}-frames.json", "application/json")
    cols[3].download_button(  # built when clicked, not on every rerun
        "PDF report", lambda: reports.pdf_report(result["report"], result["frame"]),
        reports.report_filename(result["report"], "pdf"), "application/pdf", on_click="ignore",
    )  # fmt: skip
    cols[4].download_button(
        "JSON report", json.dumps(result["report"], indent=2), reports.report_filename(result["report"], "json")
    )


user = require_user()
st.title("Live webcam and video")
options = _options()
webcam, video = st.tabs(["Webcam", "Video file"])
with webcam:
    webcam_tab(options, user)
with video:
    video_tab(options, user)
