"""Video files end to end: a clip written with PyAV from a real photo -> annotated H.264 mp4 + per-frame results."""

from __future__ import annotations

import csv
import io
import json

import av
import cv2
import numpy as np
import pytest

from emotion import load_image
from emotion.video import (
    VideoLoadError,
    frames_to_csv,
    h264_encoder,
    process_video,
    real_tracks,
    timeline_rows,
    write_video,
    write_y4m,
)

N_FRAMES = 12


@pytest.fixture(scope="module")
def clip_frames(photos_dir) -> list[np.ndarray]:
    """N_FRAMES RGB (240, 320, 3) frames: obama.jpg's face drifting 2 px a frame to the right."""
    photo = load_image(photos_dir / "obama.jpg")
    small = cv2.resize(photo, (192, 240), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(N_FRAMES):
        frame = np.full((240, 320, 3), 80, np.uint8)
        frame[:, 40 + 2 * i : 232 + 2 * i] = small
        frames.append(frame)
    return frames


def decode(mp4: bytes) -> tuple[str, list[np.ndarray]]:
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, [f.to_ndarray(format="rgb24") for f in container.decode(stream)]


def test_pyav_ships_an_h264_encoder():
    assert h264_encoder() in ("libx264", "libopenh264", "h264")


@pytest.mark.parametrize("extension", ["mp4", "webm", "avi"])
def test_process_video_end_to_end(clip_frames, tmp_path, extension):
    path = write_video(clip_frames, tmp_path / f"clip.{extension}", fps=10)
    calls: list[tuple[int, int]] = []
    source = path.read_bytes() if extension == "webm" else path  # bytes (an upload) and paths both work
    analysis = process_video(source, progress=lambda done, total: calls.append((done, total)))
    codec, decoded = decode(analysis.mp4)
    assert codec == "h264" and len(decoded) == N_FRAMES and decoded[0].shape == (240, 320, 3)
    assert analysis.mp4[4:8] == b"ftyp" and analysis.mp4.find(b"moov") < analysis.mp4.find(b"mdat")  # faststart
    assert analysis.size == (320, 240) and analysis.fps == pytest.approx(10)
    # Two passes (analysis, then drawing the real tracks), each reporting every frame.
    assert [c[0] for c in calls] == list(range(1, 2 * N_FRAMES + 1)) and all(t >= d for d, t in calls)
    assert [f["frame"] for f in analysis.frames] == list(range(N_FRAMES))
    assert analysis.frames[3]["time"] == pytest.approx(0.3, abs=1e-3)
    detected = [f for f in analysis.frames if f["faces"]]
    assert len(detected) >= N_FRAMES - 2
    assert {face["track_id"] for f in detected for face in f["faces"]} == {1}
    x0 = detected[0]["faces"][0]["box"][0]
    assert 70 <= x0 <= 130  # the face is in the middle of the pasted photo
    # The decoded output differs from the input where the box is drawn, not elsewhere far from it.
    box = analysis.frames[0]["faces"][0]["box"]
    diff = np.abs(decoded[0].astype(int) - clip_frames[0].astype(int)).max(axis=2)
    assert diff[box[1] + box[3] // 2, box[0] - 1 : box[0] + 2].max() > 60
    assert diff[220:, 290:].mean() < 8
    assert analysis.representative.shape == (240, 320, 3) and analysis.representative_faces
    assert analysis.face_count == 1 and analysis.tracks[0]["detection_score"] > 0.7


def test_csv_json_and_timeline(clip_frames, tmp_path):
    analysis = process_video(write_video(clip_frames, tmp_path / "clip.mp4", fps=10))
    rows = list(csv.DictReader(io.StringIO(frames_to_csv(analysis.frames, analysis.labels))))
    n_faces = sum(len(f["faces"]) for f in analysis.frames)
    assert len(rows) == n_faces and set(analysis.labels) <= set(rows[0])
    assert abs(sum(float(rows[0][k]) for k in analysis.labels) - 1) < 1e-3
    data = json.loads(analysis.to_json())
    assert len(data["frames"]) == N_FRAMES and data["size"] == [320, 240] and data["model"] == analysis.model
    timeline = timeline_rows(analysis.frames)
    assert len(timeline) == n_faces and timeline[0]["track"] == "face 1"


def test_max_seconds_cuts_long_clips(clip_frames, tmp_path):
    analysis = process_video(write_video(clip_frames, tmp_path / "clip.mp4", fps=10), max_seconds=0.45)
    assert analysis.truncated and len(analysis.frames) == 5
    assert len(decode(analysis.mp4)[1]) == 5


def test_unreadable_videos_raise_a_user_facing_error(tmp_path):
    with pytest.raises(VideoLoadError, match="not a video"):
        process_video(b"this is not a video at all" * 100)
    with pytest.raises(VideoLoadError, match="larger than"):
        process_video(b"\0" * (50 * 1024 * 1024 + 1))


def test_write_y4m_layout(clip_frames, tmp_path):
    path = write_y4m(clip_frames[:3], tmp_path / "cam.y4m", fps=30)
    data = path.read_bytes()
    header, _, rest = data.partition(b"\n")
    assert header == b"YUV4MPEG2 W320 H240 F30:1 Ip A1:1 C420jpeg"
    frame_bytes = 320 * 240 * 3 // 2
    assert len(rest) == 3 * (len(b"FRAME\n") + frame_bytes)
    y = np.frombuffer(rest[6 : 6 + 320 * 240], np.uint8).reshape(240, 320)
    # BT.601 studio range, as cameras (and Chromium's fake camera) deliver: Y = 16 + 219/255 x luma.
    expected = 16 + cv2.cvtColor(clip_frames[0], cv2.COLOR_RGB2GRAY).astype(float) * 219 / 255
    assert np.abs(y - expected).mean() < 1.5


def _synthetic_clip(path, *, fps: int, frames: int, size=(64, 48), latin1_metadata: bool = False):
    """A small H.264 mp4 of moving grey bars (no shared data); optionally with Latin-1 metadata bytes
    that are not valid UTF-8 (as some cameras and editors write them)."""
    options = {"metadata_encoding": "latin-1"} if latin1_metadata else {}
    with av.open(str(path), "w", **options) as output:
        if latin1_metadata:
            output.metadata["title"] = "caf\xe9 \xff"
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if latin1_metadata:
            stream.metadata["handler_name"] = "h\xe9"
        for index in range(frames):
            rgb = np.full((size[1], size[0], 3), (index * 7) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path


def test_metadata_that_is_not_utf8_is_read(tmp_path):
    path = _synthetic_clip(tmp_path / "latin1.mp4", fps=10, frames=6, latin1_metadata=True)
    with pytest.raises(UnicodeDecodeError):  # what PyAV does by default, and what reached the page
        av.open(str(path)).close()
    analysis = process_video(path.read_bytes())
    assert len(analysis.frames) == 6 and analysis.notes == []


def test_high_frame_rates_are_sampled_to_the_analysis_rate(tmp_path):
    """A 240 fps clip is analysed at max_fps: the work follows the analysis rate, not the file's."""
    path = _synthetic_clip(tmp_path / "fast.mp4", fps=240, frames=240)  # one second
    calls = []
    analysis = process_video(path, max_fps=10, progress=lambda done, total: calls.append((done, total)))
    assert len(analysis.frames) == 10 and analysis.fps == pytest.approx(10)
    assert analysis.source_fps == pytest.approx(240)
    times = [f["time"] for f in analysis.frames]
    assert times == sorted(times) and np.allclose(np.diff(times), 0.1, atol=1 / 240 + 1e-6)
    assert calls[-1] == (20, 20) and all(total >= done for done, total in calls)  # two passes of 10 frames
    assert any("analysed at 10 per second" in note for note in analysis.notes)
    _, decoded = decode(analysis.mp4)
    assert len(decoded) == 10
    assert analysis.representative_faces == analysis.frames[analysis.representative_index]["faces"]


def test_decoded_frames_are_capped(tmp_path):
    path = _synthetic_clip(tmp_path / "long.mp4", fps=30, frames=90)
    analysis = process_video(path, max_fps=30, max_frames=40)
    assert analysis.truncated and len(analysis.frames) == 40
    assert any("Only the first" in note for note in analysis.notes)


def test_oversized_frames_are_refused(tmp_path, monkeypatch):
    from emotion import video

    path = _synthetic_clip(tmp_path / "big.mp4", fps=10, frames=2, size=(128, 96))
    monkeypatch.setattr(video, "MAX_VIDEO_FRAME_PIXELS", 64 * 48)
    with pytest.raises(VideoLoadError, match="the limit is 3,072 pixels per frame"):
        process_video(path)


def test_short_false_tracks_are_dropped(photos_dir, tmp_path):
    """A 2 s clip: obama.jpg's face drifting on the left throughout, and a second copy on the right for 3
    frames (0.3 s): only the long track is reported, drawn, counted and in the per-frame results."""
    obama = cv2.resize(load_image(photos_dir / "obama.jpg"), (144, 180), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(20):
        frame = np.full((240, 400, 3), 80, np.uint8)
        frame[30:210, 10 + i : 154 + i] = obama
        if 8 <= i < 11:
            frame[30:210, 246:390] = obama
        frames.append(frame)
    path = write_video(frames, tmp_path / "clip.mp4", fps=10)
    analysis = process_video(path)
    assert [t["track_id"] for t in analysis.tracks] == [1] and analysis.face_count == 1
    assert len(analysis.dropped_tracks) == 1 and analysis.dropped_tracks[0]["duration"] < 0.5
    assert all(len(f["faces"]) == 1 and f["faces"][0]["track_id"] == 1 for f in analysis.frames if f["faces"])
    assert json.loads(analysis.to_json())["face_count"] == 1
    assert "2" not in {row["track"][-1] for row in timeline_rows(analysis.frames)}
    _, decoded = decode(analysis.mp4)
    # Where the short face was, the output is the input up to compression: no box was drawn around it.
    diff = np.abs(decoded[9].astype(int) - frames[9].astype(int)).max(axis=2)
    assert (diff[30:210, 240:396] > 60).mean() < 0.005 < (diff[:, :200] > 60).mean()  # the real face's box
    # The filter itself: too short, or (with a score) too unsure; a short clip needs half its length.
    summaries = {
        1: {"duration": 2.0, "detection_score": 0.95},
        2: {"duration": 0.3, "detection_score": 0.95},
        3: {"duration": 2.0, "detection_score": 0.55},
        4: {"duration": 2.0, "detection_score": None},
    }
    assert real_tracks(summaries, clip_seconds=2.0) == {1, 4}
    assert real_tracks(summaries, clip_seconds=0.5) == {1, 2, 4}


def test_a_track_in_an_unknown_codec_is_a_typed_error(tmp_path):
    """An mp4 whose sample entry names no known codec: PyAV gives the stream no codec context."""
    data = _synthetic_clip(tmp_path / "clip.mp4", fps=10, frames=3).read_bytes().replace(b"avc1", b"zzzz")
    with pytest.raises(VideoLoadError, match="cannot be decoded"):
        process_video(data)
