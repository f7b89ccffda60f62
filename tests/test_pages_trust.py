"""User-controlled text on the pages is shown literally: a video file name with Markdown or HTML in
the Live & video success message."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from streamlit.testing.v1 import AppTest

from pages.common import md_escape
from studio import auth
from studio.store import get_store


def test_markdown_in_a_video_file_name_is_shown_literally(
    isolated_store: Path, repo_root: Path, photos_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    import cv2
    import numpy as np
    import streamlit_webrtc

    from emotion import load_image
    from emotion.video import write_video

    # The webcam tab's WebRTC component needs a browser; AppTest has none. Stand it in with a stopped
    # stream: this test is about the video tab.
    stopped = SimpleNamespace(state=SimpleNamespace(playing=False))
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", lambda **_: stopped)
    user = get_store().create_user("vid", "Vid", "vid@example.com", auth.hash_password("vid-mauve-kettle7"))
    name = "[click me](http://evil.example) **bold** <b>x</b>.mp4"
    photo = cv2.resize(load_image(photos_dir / "obama.jpg"), (192, 240))
    frames = [np.full((240, 320, 3), 80, np.uint8) for _ in range(6)]
    for frame in frames:
        frame[:, 60:252] = photo
    clip = write_video(frames, tmp_path / "clip.mp4", fps=6).read_bytes()
    at = AppTest.from_file(str(repo_root / "pages" / "live.py"), default_timeout=120)
    at.session_state["user"] = user
    at.run()
    at.file_uploader(key="live_video_upload").set_value((name, clip, "video/mp4"))
    at.run()
    next(b for b in at.button if b.label == "Analyse video").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    success = [s.value for s in at.success]
    assert len(success) == 1 and success[0].startswith(md_escape(name)), success
    assert "](http" not in success[0] and "**" not in success[0] and "<b>" not in success[0]
