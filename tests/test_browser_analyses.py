"""Issue 23's analysis flows in a real headless Chromium through the app shell (one `streamlit run`
for the module): numbered faces match their cards, repeated Analyze clicks keep one history entry, a
new input clears the result, a batch of photos, two models compared, and History's detail view
playing a saved video with every download. Set EMOTION_SCREENSHOT_DIR to keep the screenshots."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import bcrypt
import cv2
import numpy as np
import pytest

import emotion
from emotion.pipeline import FaceResult
from studio import analyses
from studio.store import Store
from tests.browser_support import launch_chromium, require_chromium, screenshot_dir, serve_app

pytestmark = [pytest.mark.browser, pytest.mark.shared, pytest.mark.slow]
USERNAME, PASSWORD = "flowuser", "correct-horse-battery"


@pytest.fixture(scope="module")
def studio(tmp_path_factory, photos_dir):
    """(url, store, user): the app on a free port over a fresh store with one user."""
    require_chromium()
    folder = tmp_path_factory.mktemp("flows")
    store = Store(folder / "studio.db", folder / "media")
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    user = store.create_user(USERNAME, "Flow User", "flow@example.com", password_hash)
    env = {
        "EMOTION_DB_PATH": str(folder / "studio.db"),
        "EMOTION_MEDIA_DIR": str(folder / "media"),
        "EMOTION_COOKIE_KEY": "analyses-browser-test-cookie-key-" + "x" * 32,
    }
    with serve_app(folder, env) as url:
        yield url, store, user


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as launched:
        yield launched


@pytest.fixture
def page(browser, studio):
    """A fresh, logged-in browser page on the Photo page."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1800})
    tab = context.new_page()
    tab.set_default_timeout(120_000)
    tab.goto(studio[0])
    login = tab.get_by_role("tabpanel", name="Log in")
    login.get_by_label("Username", exact=True).fill(USERNAME)
    login.get_by_label("Password", exact=True).fill(PASSWORD)
    login.get_by_role("button", name="Log in").click()
    tab.get_by_text("Signed in as").wait_for()
    tab.get_by_role("link", name="Photo").first.click()
    tab.get_by_role("heading", name="Classify a photo").wait_for()
    yield tab
    context.close()


def _clear_history(store: Store, user) -> None:
    for analysis in store.list_analyses(user.id):
        store.delete_analysis(user.id, analysis.id)


def _card(page, number: int):
    """The bordered card of face `number`: the innermost block holding its "Face n" heading and an
    image (the face's thumbnail; the heading sits in a column beside it)."""
    heading = page.locator("h4", has_text=re.compile(rf"^\s*Face {number}\s*$"))
    return page.locator('[data-testid="stVerticalBlock"]').filter(has=heading).filter(has=page.locator("img")).last


def _download(page, label: str) -> bytes:
    with page.expect_download() as info:
        page.get_by_role("button", name=label, exact=True).first.click()
    return Path(info.value.path()).read_bytes()


def test_numbered_faces_match_cards_one_entry_and_new_input_clears(page, studio, photos_dir, tmp_path):
    _, store, user = studio
    _clear_history(store, user)
    shots = screenshot_dir(tmp_path)
    page.locator('input[type="file"]').set_input_files(str(photos_dir / "two_people.jpg"))
    page.get_by_text("two_people.jpg").first.wait_for()
    for _ in range(3):  # the same photo with the same options, three times: one history entry
        page.get_by_role("button", name="Analyze", exact=True).click()
        page.get_by_text("2 faces found").wait_for()
        page.wait_for_timeout(500)
    page.get_by_text(re.compile(r"Saved to your history as analysis #\d+")).wait_for()
    report = json.loads(_download(page, "JSON report"))
    saved = store.list_analyses(user.id)
    assert len(saved) == 1 and report["analysis_id"] == saved[0].id
    # Face 1 is the left-hand man, face 2 the right-hand one, on the image, in the report and on the cards.
    faces = report["faces"]
    assert [f["index"] for f in faces] == [1, 2] and faces[0]["box"][0] < faces[1]["box"][0]
    for face in faces:
        card = _card(page, face["index"])
        assert face["label"] in card.inner_text() and f"Face {3 - face['index']}" not in card.inner_text()
        assert card.locator("img").count() == 1  # the face's crop thumbnail, and not the whole photo
    # The image shown is the saved one, drawn with those numbers at those boxes (re-drawn here alike).
    photo = emotion.load_image(photos_dir / "two_people.jpg")
    expected = emotion.annotate(photo, [FaceResult.from_dict(f) for f in faces])
    kept = analyses.display_jpeg(expected, max_width=None, quality=analyses.HISTORY_JPEG_QUALITY)  # as saved
    np.testing.assert_array_equal(emotion.load_image(store.read_image(user.id, saved[0].id)), emotion.load_image(kept))
    page.get_by_text("2 faces found").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "numbered_faces.png"))
    # A new input clears the old result before Analyze; so does switching to the camera. (The uploader
    # takes several files: a file added beside the first would make a batch, so the first is removed.)
    page.get_by_test_id("stFileChipDeleteBtn").first.click()
    page.get_by_text("2 faces found").wait_for(state="detached")
    page.locator('input[type="file"]').set_input_files(str(photos_dir / "obama.jpg"))
    page.get_by_text("obama.jpg").first.wait_for()
    page.get_by_role("button", name="Analyze", exact=True).click()
    page.get_by_text("1 face found").wait_for()
    page.get_by_text("Take a picture").click()
    page.get_by_text("1 face found").wait_for(state="detached")
    page.screenshot(path=str(shots / "camera_mode_cleared.png"))
    assert len(store.list_analyses(user.id)) == 2


def test_batch_of_photos(page, studio, photos_dir, tmp_path):
    _, store, user = studio
    _clear_history(store, user)
    names = ["obama.jpg", "two_people.jpg", "biden.jpg"]
    page.locator('input[type="file"]').set_input_files([str(photos_dir / n) for n in names])
    page.get_by_text("biden.jpg").first.wait_for()
    page.get_by_role("button", name="Analyze", exact=True).click()
    page.get_by_text("3 photos: 4 faces found").wait_for()
    page.get_by_text("Gallery").wait_for()
    rows = list(csv.DictReader(io.StringIO(_download(page, "Batch CSV (one row per face)").decode())))
    document = json.loads(_download(page, "Batch JSON (every report)"))
    page.screenshot(path=str(screenshot_dir(tmp_path) / "batch.png"), full_page=True)
    assert [r["file"] for r in rows] == ["obama.jpg", "two_people.jpg", "two_people.jpg", "biden.jpg"]
    assert [p["file"] for p in document["photos"]] == names
    saved = store.list_analyses(user.id)
    assert sorted(a.original_name for a in saved) == sorted(names)
    assert {int(r["analysis"]) for r in rows} == {a.id for a in saved}


def test_compare_two_models_side_by_side(page, studio, photos_dir, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.locator('input[type="file"]').set_input_files(str(photos_dir / "two_people.jpg"))
    page.get_by_text("two_people.jpg").first.wait_for()
    page.get_by_role("button", name="Analyze", exact=True).click()
    page.get_by_text("2 faces found").wait_for()
    page.get_by_text(re.compile("your history as analysis")).first.wait_for()  # the run is over (saved after shown)
    page.get_by_text("Options", exact=True).click()
    for attempt in range(3):  # a click that lands while the page reruns does not open the list: try again
        page.get_by_label("Compare with a second model (same faces, side by side)").click()
        try:
            page.get_by_role("option").nth(1).click(timeout=20_000)  # the first other model
            break
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
    page.get_by_text("on the same faces").wait_for()
    verdict = page.get_by_text(re.compile(r"The models disagree on|Both models agree on all")).first
    text = verdict.inner_text()
    verdict.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir(tmp_path) / "compare.png"), full_page=True)
    assert re.search(r"disagree on \d of 2|agree on all 2", text)


def test_history_detail_plays_the_video_and_offers_every_download(page, studio, photos_dir, tmp_path):
    from emotion.video import process_video, write_video

    _, store, user = studio
    _clear_history(store, user)
    photo = cv2.resize(emotion.load_image(photos_dir / "obama.jpg"), (192, 240))
    frames = [np.full((240, 320, 3), 80, np.uint8) for _ in range(8)]
    for i, frame in enumerate(frames):
        frame[:, 40 + 2 * i : 232 + 2 * i] = photo
    data = write_video(frames, tmp_path / "clip.mp4", fps=8).read_bytes()
    video = process_video(data)
    saved = analyses.save_analysis(
        store, user, source="video", content=data, options={"model": video.model, "detector": video.detector},
        faces=[{**f, "index": f["track_id"]} for f in video.representative_faces], annotated=video.representative,
        original_name="clip.mp4", title="Video clip.mp4", media=video.mp4, frames=video.frames, labels=video.labels,
    )  # fmt: skip
    page.get_by_role("link", name="History").first.click()
    page.get_by_role("heading", name="History").wait_for()
    page.locator(f".st-key-history_open_{saved.analysis_id} button").click()  # (selectboxes have "Open" too)
    page.get_by_text(f"#{saved.analysis_id} · Video clip.mp4").wait_for()
    player = page.locator("video").first
    player.wait_for()
    duration = page.wait_for_function(
        "() => { const v = document.querySelector('video'); return v && v.readyState >= 1 && v.duration; }",
        timeout=60_000,
    ).json_value()
    assert duration == pytest.approx(1.0, abs=0.3)  # 8 frames at 8 fps, decoded by the browser
    page.get_by_text("Emotion per face over time").first.wait_for()
    shots = screenshot_dir(tmp_path)
    page.screenshot(path=str(shots / "history_video_detail.png"), full_page=True)
    mp4 = _download(page, "Annotated video")
    rows = list(csv.DictReader(io.StringIO(_download(page, "Per-frame CSV").decode())))
    pdf = _download(page, "PDF report")
    assert mp4 == video.mp4 and pdf.startswith(b"%PDF-")
    assert len(rows) == sum(len(f["faces"]) for f in video.frames) and rows[0]["track_id"] == "1"
    assert "analysis=" in page.url  # the detail view is linkable
