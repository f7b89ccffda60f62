"""User-controlled text on the pages is shown literally: a video file name with Markdown or HTML in
the Live & video success message."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from streamlit.testing.v1 import AppTest

from pages.common import md_escape
from studio import auth
from studio.store import get_store


def test_markdown_in_a_video_file_name_is_shown_literally(isolated_store: Path, repo_root: Path, monkeypatch) -> None:
    import streamlit_webrtc

    # The webcam tab's WebRTC component needs a browser; AppTest has none. Stand it in with a stopped
    # stream: this test is about the video tab.
    stopped = SimpleNamespace(state=SimpleNamespace(playing=False))
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", lambda **_: stopped)
    user = get_store().create_user("vid", "Vid", "vid@example.com", auth.hash_password("vid-mauve-kettle7"))
    name = "[click me](http://evil.example) **bold** <b>x</b>.mp4"
    at = AppTest.from_file(str(repo_root / "pages" / "live.py"), default_timeout=120)
    at.session_state["user"] = user
    at.session_state["live_video"] = {
        "name": name, "id": 7, "mp4": b"", "frames": [], "csv": "", "json": "{}",
        "report": {"source": "video", "created_at": "2026-01-01T00:00:00+00:00", "title": name},
        "pdf": b"%PDF-", "truncated": True, "notes": ["Only the first 120 seconds were analysed."],
    }  # fmt: skip
    at.run()
    assert not at.exception
    success = [s.value for s in at.success]
    assert len(success) == 1 and success[0].startswith(md_escape(name)), success
    assert "](http" not in success[0] and "**" not in success[0] and "<b>" not in success[0]
    assert [i.value for i in at.info][:1] == ["Only the first 120 seconds were analysed."]
