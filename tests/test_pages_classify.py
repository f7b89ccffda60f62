"""AppTest of the classify and history pages: real uploads of ../shared/photos, a bad file, an image with
no face, the camera, downloads, the saved-analysis counter, Grad-CAM, history filters and deletion."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

import bcrypt
import numpy as np
import pypdf
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from pages.common import PRELOAD_KEY
from studio import analyses, reports
from studio.store import get_store

# Page flows under AppTest (a second or more each): the full suite runs them, the fast loop does not.
pytestmark = [pytest.mark.shared, pytest.mark.slow]
TIMEOUT = 180  # seconds per script run: the first Grad-CAM run loads TensorFlow on a busy CPU
PAGES = Path(__file__).parent.parent / "pages"
MIME = {".jpg": "image/jpeg", ".png": "image/png"}
# Faces the default (Haar) detector finds in each photo; the README of ../shared/photos lists what is in them.
EXPECTED_FACES = {
    "32bit.png": 1,
    "biden.jpg": 1,
    "obama-1080p.jpg": 1,
    "obama-240p.jpg": 1,
    "obama.jpg": 1,
    "obama2.jpg": 1,
    "obama_partial_face.jpg": 1,
    "two_people.jpg": 2,
    "obama_and_biden.jpg": 2,
}


@pytest.fixture
def user(isolated_store):
    password = bcrypt.hashpw(b"correct horse", bcrypt.gensalt(rounds=4)).decode()
    return get_store().create_user("alice", "Alice", "alice@example.com", password)


def _page(path: str, user) -> AppTest:
    at = AppTest.from_file(str(PAGES / path), default_timeout=TIMEOUT)
    at.session_state["user"] = user
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _upload(at: AppTest, name: str, data: bytes, mime: str = "image/jpeg") -> AppTest:
    at.file_uploader(key="classify_upload").set_value((name, data, mime))
    at.run()
    at.button(key="classify_analyze").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _counter(at: AppTest) -> int:
    return int(at.metric[0].value)


def _downloads(at: AppTest) -> list[str]:
    """The labels of the page's download buttons, less the hidden one that preloads their code."""
    return [b.label for b in at.get("download_button") if b.key != f"{PRELOAD_KEY}-download"]


def _texts(at: AppTest) -> str:
    parts = [
        e.value for kind in ("subheader", "markdown", "caption", "success", "warning", "error") for e in at.get(kind)
    ]
    return "\n".join(str(p) for p in parts)


def _check_wait_caption(at: AppTest) -> None:
    """The caption gives the click's wait end to end, and its parts add up to it (rounding apart)."""
    import re

    caption = next(c.value for c in at.caption if c.value.startswith("Answered in"))
    waited = int(re.match(r"Answered in (\d+) ms", caption)[1])
    parts = re.search(r"\((decode .*? ms)\)", caption)[1]
    names = ["decode", "detection", "classification", "image for the page", "charts and page"]
    values = dict(re.findall(r"([a-z ]+?) (\d+) ms", parts))
    assert [n.strip() for n in values] == names, caption
    assert sum(int(v) for v in values.values()) <= waited + len(names), caption
    assert "while it was drawn" in caption


# One photo in the fast loop (two faces), every photo in the full suite.
@pytest.mark.parametrize(
    "name", [n if n == "two_people.jpg" else pytest.param(n, marks=pytest.mark.slow) for n in sorted(EXPECTED_FACES)]
)
def test_upload_each_photo(photos_dir, user, name):
    at = _page("classify.py", user)
    assert _counter(at) == 0
    # Before a result: one element of each kind a result first uses, out of sight (the browser loads their code).
    assert [b.label for b in at.get("download_button")] == ["-"] and len(at.get("image")) == 1
    _upload(at, name, (photos_dir / name).read_bytes(), MIME[name[-4:]])
    faces = EXPECTED_FACES[name]
    assert f"{faces} face{'s' if faces > 1 else ''} found" in _texts(at)
    assert not at.get("plotly_chart")  # a result needs no plotly: bars and the plane are HTML and SVG
    assert sum("Valence and arousal:" in m.value for m in at.markdown) == 1  # the plane, an SVG
    assert sum("Probabilities:" in h.proto.body for h in at.get("html")) == faces  # one set of bars per face
    assert [b.label for b in at.get("download_button")] == ["PDF report", "JSON report"]
    assert _counter(at) == 1
    _check_wait_caption(at)
    assert not any("Analyzing the photo" in c.value for c in at.caption)  # the still note went with its block
    result = at.session_state["classify_result"]["result"]
    report = result.report
    assert reports.schema_errors(report) == []
    assert report["image"]["original_name"] == name and report["user"] == "alice" and report["source"] == "photo"
    assert report["face_count"] == faces and report["analysis_id"] > 0
    assert [f["index"] for f in report["faces"]] == list(range(1, faces + 1))
    assert all(f"Face {i}" in _texts(at) for i in range(1, faces + 1))
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(result.pdf())).pages)
    for face in report["faces"]:
        assert face["label"] in text and f"{face['confidence']:.1%}" in text
    saved = get_store().list_analyses(user.id)
    assert [a.id for a in saved] == [report["analysis_id"]] and len(saved[0].faces) == faces


@pytest.mark.slow
def test_repeated_analyze_saves_once_and_a_new_input_clears_the_result(photos_dir, user):
    at = _page("classify.py", user)
    _upload(at, "two_people.jpg", (photos_dir / "two_people.jpg").read_bytes())
    first = at.session_state["classify_result"]["result"].analysis_id
    at.text_input(key="classify_title").input("Second <b>try</b>")
    at.run()  # an unrelated rerun: the result and its downloads stay
    assert len(at.get("download_button")) == 2 and "2 faces found" in _texts(at)
    for _ in range(3):  # the same photo with the same options: one history entry
        at.button(key="classify_analyze").click()
        at.run()
    assert _counter(at) == 1 and at.session_state["classify_result"]["result"].analysis_id == first
    assert get_store().get_analysis(user.id, first).title == "Second <b>try</b>"  # the new title is kept
    assert "its title is now" in at.info[0].value and "<b>" not in at.info[0].value
    at.file_uploader(key="classify_upload").set_value(("two_people.jpg", (photos_dir / "two_people.jpg").read_bytes(),
                                                      "image/jpeg"))  # fmt: skip
    at.run()
    at.button(key="classify_analyze").click()
    at.run()  # the same bytes uploaded again: found in the history, not saved twice
    assert _counter(at) == 1 and "Already in your history" in at.info[0].value
    _check_wait_caption(at)  # this click's own parts, not those kept with the first analysis
    at.file_uploader(key="classify_upload").set_value(("obama.jpg", (photos_dir / "obama.jpg").read_bytes(),
                                                      "image/jpeg"))  # fmt: skip
    at.run()  # a new input: the old result is gone before Analyze
    assert "classify_result" not in at.session_state and "faces found" not in _texts(at)
    at.button(key="classify_analyze").click()
    at.run()
    assert _counter(at) == 2
    at.radio(key="classify_mode").set_value("Take a picture")
    at.run()
    assert "classify_result" not in at.session_state and not _downloads(at)


def test_batch_of_photos(photos_dir, user):
    at = _page("classify.py", user)
    names = ["obama.jpg", "two_people.jpg", "notes.jpg"]
    files = [(n, (photos_dir / n).read_bytes() if n != "notes.jpg" else b"not an image", "image/jpeg") for n in names]
    at.file_uploader(key="classify_upload").set_value(files)
    at.run()
    at.button(key="classify_analyze").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "3 photos: 3 faces found" in _texts(at)
    assert _counter(at) == 2 and "notes.jpg" in html.unescape(at.error[0].value)
    table = at.dataframe[0].value
    assert list(table["file"]) == ["obama.jpg", "two_people.jpg", "two_people.jpg"] and "error" not in table
    assert 50 < table["confidence"][0] <= 100 and abs(table[table["label"][0]][0] - table["confidence"][0]) < 1e-9
    assert [b.label for b in at.get("download_button")][-2:] == ["Batch CSV (one row per face)",
                                                                 "Batch JSON (every report)"]  # fmt: skip


def test_compare_two_models_on_the_same_faces(photos_dir, user):
    at = _page("classify.py", user)
    _upload(at, "two_people.jpg", (photos_dir / "two_people.jpg").read_bytes())
    other = next(o for o in at.selectbox(key="classify_compare").options if o != "no comparison")
    at.selectbox(key="classify_compare").select(other)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    kept = at.session_state["classify_result"]
    (comparison,) = kept["comparisons"].values()
    assert [r["index"] for r in comparison.rows] == [1, 2]
    frame = at.dataframe[0].value
    assert list(frame["face"]) == [1, 2] and comparison.models[0] in frame.columns
    said = _texts(at)
    assert ("disagree" in said) == bool(comparison.disagreements) and ("agree on all" in said) != bool(
        comparison.disagreements
    )


def test_pdf_is_built_only_when_asked(photos_dir, user, monkeypatch):
    from streamlit.runtime.media_file_manager import MediaFileManager

    built, deferred = [], {}
    original_pdf, original_add = reports.pdf_report, MediaFileManager.add_deferred
    monkeypatch.setattr(reports, "pdf_report", lambda *a, **k: built.append(1) or original_pdf(*a, **k))

    def add_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        file_id = original_add(self, data_callable, mimetype, coordinates, file_name, **kwargs)
        deferred[file_id] = data_callable  # what a click on the button runs
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    at = _page("classify.py", user)
    _upload(at, "two_people.jpg", (photos_dir / "two_people.jpg").read_bytes())
    at.text_input(key="classify_title").input("a rerun")
    at.run()
    assert built == [] and not at.session_state["classify_result"]["result"].pdf_built
    buttons = {b.label: b.proto.deferred_file_id for b in at.get("download_button")}
    assert buttons["PDF report"] in deferred and buttons["JSON report"] in deferred
    pdf = deferred[buttons["PDF report"]]()  # the click
    assert built == [1] and pypdf.PdfReader(io.BytesIO(pdf)).pages
    assert deferred[buttons["PDF report"]]() == pdf and built == [1]  # kept for a second click
    assert json.loads(deferred[buttons["JSON report"]]())["analysis_id"] > 0


@pytest.mark.parametrize(
    ("name", "data"),
    [("notes.jpg", b"this is not an image at all"), ("empty.png", b""), ("cut.jpg", None)],
)
def test_bad_file_gives_a_message_not_a_traceback(photos_dir, user, name, data):
    if data is None:  # a real JPEG cut in half
        whole = (photos_dir / "obama.jpg").read_bytes()
        data = whole[: len(whole) // 3]
    at = _page("classify.py", user)
    at.file_uploader(key="classify_upload").set_value((name, data, "image/jpeg"))
    at.run()
    at.button(key="classify_analyze").click()
    at.run()
    assert not at.exception
    message = html.unescape(at.error[0].value).replace("\u2060", "")  # show_error escapes Markdown (md_escape)
    assert len(at.error) == 1 and "cannot be analysed" in message and name in message
    assert "Traceback" not in message
    assert not _downloads(at) and _counter(at) == 0


def test_no_face_offers_whole_image(user):
    rng = np.random.default_rng(0)
    texture = (rng.random((200, 300, 3)) * 60 + np.linspace(80, 200, 300)[None, :, None]).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(texture).save(buffer, format="PNG")
    at = _page("classify.py", user)
    _upload(at, "wall.png", buffer.getvalue(), "image/png")
    assert "No face was found" in _texts(at)
    assert not _downloads(at) and _counter(at) == 0
    at.button(key="classify_whole").click()
    at.run()
    assert not at.exception
    assert "1 face found" in _texts(at) and _counter(at) == 1
    report = at.session_state["classify_result"]["result"].report
    assert report["detector"] == "none" and report["faces"][0]["box"] == [0, 0, 300, 200]


@pytest.mark.slow
def test_camera_snapshot(photos_dir, user):
    at = _page("classify.py", user)
    at.radio(key="classify_mode").set_value("Take a picture")
    at.run()
    at.camera_input(key="classify_camera").upload("photo.jpg", (photos_dir / "obama.jpg").read_bytes())
    at.run()
    at.button(key="classify_analyze").click()
    at.run()
    assert not at.exception
    assert "1 face found" in _texts(at)
    assert at.session_state["classify_result"]["result"].report["source"] == "snapshot"
    assert get_store().count_analyses(user.id) == {"photo": 0, "snapshot": 1, "video": 0, "total": 1}


@pytest.mark.slow
def test_gradcam_toggle_shows_overlay(photos_dir, user):
    at = _page("classify.py", user)
    _upload(at, "two_people.jpg", (photos_dir / "two_people.jpg").read_bytes())
    images_before = len(at.get("image"))
    key = at.session_state["classify_result"]["key"]
    at.toggle(key=f"gradcam_{key}_2").set_value(True)
    at.run()
    assert not at.exception
    assert len(at.get("image")) == images_before + 1  # the Grad-CAM overlay beside the card's face thumbnail
    captions = [c for e in at.get("image") for c in e.captions]
    assert any(c.startswith("Grad-CAM for") for c in captions)
    # Kept with the analysis: History's detail view shows it, and its PDF has it.
    analysis_id = at.session_state["classify_result"]["result"].analysis_id
    history = AppTest.from_file(str(PAGES / "history.py"), default_timeout=TIMEOUT)
    history.session_state["user"] = user
    history.query_params["analysis"] = str(analysis_id)
    history.run()
    assert not history.exception
    captions = [c for e in history.get("image") for c in e.captions]
    assert sum(c.startswith("Grad-CAM for") for c in captions) == 1


def _history(at_user, photos_dir, names: list[str]) -> AppTest:
    at = _page("classify.py", at_user)
    for name in names:
        _upload(at, name, (photos_dir / name).read_bytes())
    return _page("history.py", at_user)


@pytest.mark.slow
def test_history_lists_newest_first_with_downloads(photos_dir, user):
    at = _history(user, photos_dir, ["obama.jpg", "two_people.jpg"])
    assert int(at.metric[0].value) == 2
    captions = [c.value for c in at.caption if c.value.startswith("#")]
    saved = get_store().list_analyses(user.id)
    assert [f"#{a.id}" for a in saved] == [c.split(" ")[0] for c in captions]  # newest first
    assert saved[0].original_name == "two_people.jpg"
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["PDF", "JSON", "PDF", "JSON"]
    assert len(at.get("plotly_chart")) == 1  # emotions over time
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["yaxis"]["dtick"] == 1  # whole faces
    shown = analyses.stored_analysis(get_store(), user, saved[0].id)
    report, pdf = shown.report, shown.pdf()
    assert reports.schema_errors(report) == [] and report["face_count"] == 2
    assert all(f["label"] in pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text() for f in report["faces"])


@pytest.mark.slow
def test_history_filters_by_emotion_and_source(photos_dir, user):
    at = _history(user, photos_dir, ["obama.jpg", "two_people.jpg"])
    saved = get_store().list_analyses(user.id)
    label = saved[-1].faces[0]["label"]  # the label of the obama.jpg face
    at.selectbox(key="history_label").set_value(label)
    at.run()
    expected = [a.id for a in saved if any(f["label"] == label for f in a.faces)]
    shown = [int(c.value.split(" ")[0][1:]) for c in at.caption if c.value.startswith("#")]
    assert shown == expected
    at.selectbox(key="history_label").set_value("any")
    at.selectbox(key="history_source").set_value("video")
    at.run()
    assert "No analysis matches" in at.info[0].value


@pytest.mark.slow
def test_history_delete_needs_confirmation_and_removes_files(photos_dir, user, isolated_store):
    at = _history(user, photos_dir, ["obama.jpg"])
    analysis = get_store().list_analyses(user.id)[0]
    media = list((isolated_store.parent / "media").rglob("*.jpg"))
    assert len(media) == 1
    at.button(key=f"history_delete_{analysis.id}").click()
    at.run()
    assert "for good" in at.warning[0].value
    at.button(key=f"history_cancel_{analysis.id}").click()
    at.run()
    assert get_store().get_analysis(user.id, analysis.id) is not None
    at.button(key=f"history_delete_{analysis.id}").click()
    at.run()
    at.button(key=f"history_confirm_{analysis.id}").click()
    at.run()
    assert not at.exception
    assert get_store().get_analysis(user.id, analysis.id) is None
    assert not any(p.exists() for p in media)
    assert "deleted" in at.success[0].value and "empty" in at.info[0].value


def test_history_detail_shows_the_analysis_whole(photos_dir, user):
    at = _history(user, photos_dir, ["two_people.jpg"])
    analysis = get_store().list_analyses(user.id)[0]
    at.button(key=f"history_open_{analysis.id}").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["analysis"] == str(analysis.id)
    said = _texts(at)
    assert "2 faces found" in said and "Face 1" in said and "Face 2" in said and f"#{analysis.id}" in said
    assert [b.label for b in at.get("download_button")] == ["PDF report", "JSON report"]
    assert not at.get("plotly_chart")  # the plane is SVG, the bars per face HTML
    assert sum("Valence and arousal:" in m.value for m in at.markdown) == 1  # the plane, an SVG
    at.button(key="history_back").click()
    at.run()
    assert "analysis" not in at.query_params and at.button(key=f"history_open_{analysis.id}")


def test_history_detail_replays_a_video_and_its_csv(photos_dir, user, tmp_path):
    import cv2

    from emotion import load_image
    from emotion.video import process_video, write_video

    photo = cv2.resize(load_image(photos_dir / "obama.jpg"), (192, 240))
    frames = [np.full((240, 320, 3), 80, np.uint8) for _ in range(6)]
    for frame in frames:
        frame[:, 60:252] = photo
    data = write_video(frames, tmp_path / "clip.mp4", fps=6).read_bytes()
    video = process_video(data)
    saved = analyses.save_analysis(
        get_store(), user, source="video", content=data, options={"model": video.model, "detector": video.detector},
        faces=[{**f, "index": f["track_id"]} for f in video.representative_faces], annotated=video.representative,
        original_name="clip.mp4", media=video.mp4, frames=video.frames, labels=video.labels,
    )  # fmt: skip
    at = AppTest.from_file(str(PAGES / "history.py"), default_timeout=TIMEOUT)
    at.session_state["user"] = user
    at.query_params["analysis"] = str(saved.analysis_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("video")) == 1
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["PDF report", "JSON report", "Annotated video", "Per-frame CSV", "Per-frame JSON"]
    assert len(at.get("plotly_chart")) == 1  # the timeline (the plane is SVG; the face's bars HTML)


def test_a_failed_save_keeps_the_result_on_screen_and_analyze_retries(photos_dir, user, monkeypatch):
    import sqlite3

    from studio.store import Store

    original = Store.add_analysis

    def locked(self, *args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(Store, "add_analysis", locked)
    at = _page("classify.py", user)
    _upload(at, "obama.jpg", (photos_dir / "obama.jpg").read_bytes())
    message = html.unescape(at.error[0].value).replace("\u2060", "")
    assert "could not be saved" in message and "still shown here" in message
    assert "1 face found" in _texts(at) and len(at.get("download_button")) == 2 and _counter(at) == 0
    monkeypatch.setattr(Store, "add_analysis", original)
    at.button(key="classify_analyze").click()
    at.run()
    assert not at.error and "Saved to your history" in _texts(at) and _counter(at) == 1
