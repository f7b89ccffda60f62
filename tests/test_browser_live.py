"""The WebRTC path end to end: `streamlit run` the live page, headless Chromium streams a fake camera
(.y4m built here from a real photo), frames come back annotated, a snapshot is saved to the store."""

from __future__ import annotations

import numpy as np
import pytest

from emotion import get_detector, load_image
from emotion.labels import EMOTION_COLORS_RGB
from studio.store import Store
from tests.browser_support import FAKE_CAMERA_ARGS, launch_chromium, require_chromium
from tests.script_support import load_script

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def bench():
    """scripts/benchmark_live.py: the page server and browser driver shared with the benchmark."""
    require_chromium()
    return load_script("benchmark_live")


def _has_box_edge(image: np.ndarray, x: int, y0: int, y1: int, search: int = 10) -> bool:
    """Whether some column within `search` px of x is, over rows y0..y1, mostly one emotion colour."""
    palette = np.array(list(EMOTION_COLORS_RGB.values()), dtype=int)  # (C, 3)
    for column in range(max(0, x - search), min(image.shape[1], x + search + 1)):
        pixels = image[y0:y1, column].astype(int)  # (N, 3)
        distance = np.abs(pixels[:, None, :] - palette[None, :, :]).max(axis=2)  # (N, C)
        if (distance <= 45).mean(axis=0).max() >= 0.8:
            return True
    return False


def test_webcam_frames_come_back_annotated(bench, photos_dir, isolated_store, tmp_path):
    photo = load_image(photos_dir / "obama.jpg")
    source = bench.camera_frame(photo)
    y4m = bench.camera_y4m(photo, tmp_path / "camera.y4m")
    with bench.serve_live_page(tmp_path) as url:
        result = bench.run_browser(url, y4m, seconds=4, screenshot=tmp_path / "live.png", snapshot=True)
    frame = result["last_frame"]
    assert result["video_size"] == [640, 480] and frame.shape == source.shape
    assert result["rendered_fps"] > 1 and result["server_processed_fps"] > 1
    # The stats banner (black) over the camera's grey background, bottom left.
    assert frame[-12:-2, 5:150].mean() < 50 < source[-12:-2, 5:150].mean()
    # A box edge in an emotion colour where the face is, which the camera frame does not have there.
    box = get_detector("haar", min_face=40, max_side=400).detect(source)[0]
    rows = (box.y + box.h // 4, box.y + 3 * box.h // 4)
    assert _has_box_edge(frame, box.x, *rows) and _has_box_edge(frame, box.x + box.w, *rows)
    assert not _has_box_edge(source, box.x, *rows)
    # The snapshot is in this user's history.
    assert "Snapshot saved" in result["snapshot_message"]
    store = Store(isolated_store)
    user = store.get_user_by_username("livebench")
    saved = store.list_analyses(user.id, source="snapshot")
    assert len(saved) == 1 and len(saved[0].faces) == 1 and saved[0].has_image
    assert saved[0].extra["image_size"] == [640, 480]


def test_video_upload_is_annotated_and_saved(bench, photos_dir, isolated_store, tmp_path):
    import re

    from emotion.video import write_video

    photo = load_image(photos_dir / "obama.jpg")
    frames = [bench.camera_frame(photo, dx=2 * i, size=(320, 240)) for i in range(15)]
    clip = write_video(frames, tmp_path / "clip.webm", fps=10)
    with bench.serve_live_page(tmp_path) as url, launch_chromium(extra_args=FAKE_CAMERA_ARGS) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        page.get_by_role("tab", name="Video file").click()
        page.locator('input[type="file"]').set_input_files(str(clip))
        page.get_by_role("button", name="Analyse video").click()
        # md_escape keeps a file name from becoming a link with a word joiner (U+2060) before the colon
        page.get_by_text(re.compile("clip\\.webm\u2060?: saved to your history")).wait_for(timeout=120_000)
        page.locator("video").first.wait_for(timeout=30_000)  # the annotated mp4, in st.video
        page.get_by_role("button", name="JSON report").wait_for(timeout=30_000)
        assert page.get_by_text(re.compile(r"^15 frames analysed in [0-9.]+ s: 1 face tracked \(")).count() == 1
        for label in ("Annotated video", "Per-frame CSV", "Per-frame JSON", "PDF report", "JSON report"):
            assert page.get_by_role("button", name=label).count() == 1
        page.screenshot(path=str(tmp_path / "video.png"), full_page=True)
    store = Store(isolated_store)
    saved = store.list_analyses(store.get_user_by_username("livebench").id, source="video")
    assert len(saved) == 1 and saved[0].has_media and saved[0].original_name == "clip.webm"
    assert len(saved[0].extra["frames"]) == 15 and saved[0].faces
    media = store.read_media(saved[0].user_id, saved[0].id)
    assert media[4:8] == b"ftyp"
