"""studio.analyses: the one save service (content keys, one error policy), reading order, the stored
analysis History shows, and two models compared on the same faces."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import cv2
import numpy as np
import pypdf
import pytest

import emotion
from emotion.detectors import Box
from emotion.pipeline import FaceResult, annotate, reading_order
from studio import analyses, reports
from studio.store import Store

OPTIONS = {"detector": "haar", "tta": False, "min_face": 24, "title": ""}


@pytest.fixture
def store_and_user(tmp_path):
    store = Store(tmp_path / "studio.db", tmp_path / "media")
    return store, store.create_user("ana", "Ana", "ana@example.com", "hash")


def test_reading_order_is_rows_then_left_to_right():
    # Detector order (largest first) is scrambled on purpose; two rows of faces, slightly uneven heights.
    boxes = [Box(400, 210, 90, 90), Box(10, 20, 100, 100), Box(250, 35, 80, 80), Box(30, 220, 70, 70)]
    assert reading_order(boxes) == [1, 2, 3, 0]
    assert reading_order([]) == []


def test_annotate_numbers_faces_and_stays_pure():
    image = np.full((300, 400, 3), 255, np.uint8)  # white: the tag must still stand out
    faces = [FaceResult(Box(20, 60, 100, 100), "happy", {"happy": 0.9, "sad": 0.1})]
    before = image.copy()
    numbered = annotate(image, faces)
    plain = annotate(image, faces, numbers=False)
    np.testing.assert_array_equal(image, before)
    assert numbered.shape == image.shape and not np.array_equal(numbered, plain)  # "1 " drawn
    tag = numbered[:60, 20:200]  # the tag above the box: dark outline on a white photo
    assert (tag.max(axis=2) < 40).any()
    dark = annotate(np.zeros_like(image), faces)  # on black, the tag's white outline shows
    assert (dark[:60, 20:200].min(axis=2) > 215).any()
    with pytest.raises(ValueError):
        annotate(image, faces, numbers=[1, 2])  # one number per face


def test_same_input_and_options_are_saved_once(store_and_user, photos_dir):
    store, user = store_and_user
    data = (photos_dir / "two_people.jpg").read_bytes()
    options = {**OPTIONS, "model": emotion.default_model_name()}
    first = analyses.analyze_photo(store, user, data, name="two_people.jpg", source="photo", options=options)
    again = analyses.analyze_photo(store, user, data, name="two_people.jpg", source="photo", options=options)
    assert first.saved and not first.duplicate and again.duplicate and again.analysis_id == first.analysis_id
    assert len(store.list_analyses(user.id)) == 1 and not again.retitled
    titled = analyses.analyze_photo(
        store, user, data, name="two_people.jpg", source="photo", options={**options, "title": "At the office"}
    )  # a title is a note, not an option: the same entry, now with this title
    assert titled.duplicate and titled.retitled and titled.analysis_id == first.analysis_id
    assert titled.report["title"] == "At the office" == store.get_analysis(user.id, first.analysis_id).title
    untitled = analyses.analyze_photo(store, user, data, name="two_people.jpg", source="photo", options=options)
    assert untitled.duplicate and not untitled.retitled and untitled.report["title"] == "At the office"
    assert len(store.list_analyses(user.id)) == 1
    other = analyses.analyze_photo(
        store, user, data, name="two_people.jpg", source="photo", options={**options, "tta": True}
    )
    assert other.analysis_id != first.analysis_id and len(store.list_analyses(user.id)) == 2
    # Faces in reading order, numbered 1..n, the same numbers in the report and on the saved image.
    xs = [f["box"][0] for f in first.faces]
    assert [f["index"] for f in first.faces] == [1, 2] and xs == sorted(xs)
    assert reports.schema_errors(first.report) == []


def test_a_failed_save_keeps_the_result_and_says_so(store_and_user, photos_dir, monkeypatch):
    store, user = store_and_user

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "add_analysis", broken)
    data = (photos_dir / "obama.jpg").read_bytes()
    options = {**OPTIONS, "model": emotion.default_model_name()}
    result = analyses.analyze_photo(store, user, data, name="obama.jpg", source="photo", options=options)
    assert not result.saved and "could not be saved" in result.save_error and "database is locked" in result.save_error
    assert len(result.faces) == 1 and result.kept_jpeg.startswith(b"\xff\xd8")
    assert [d.label for d in result.downloads()] == ["PDF report", "JSON report"]
    assert result.downloads()[0].data().startswith(b"%PDF-")


def test_a_save_after_the_account_was_deleted_elsewhere_says_so(store_and_user, photos_dir):
    store, user = store_and_user
    store.delete_user(user.id)  # from another tab, while this one analysed
    data = (photos_dir / "obama.jpg").read_bytes()
    options = {**OPTIONS, "model": emotion.default_model_name()}
    result = analyses.analyze_photo(store, user, data, name="obama.jpg", source="photo", options=options)
    assert not result.saved and "this account no longer exists" in result.save_error
    assert len(result.faces) == 1 and not (store.media_root / str(user.id)).exists()


def test_no_face_is_not_saved(store_and_user):
    store, user = store_and_user
    image = np.full((120, 160, 3), 128, np.uint8)
    result = analyses.save_analysis(
        store, user, source="photo", content=image.tobytes(), options={"model": "m", "detector": "haar"}, faces=[],
        image=image,
    )  # fmt: skip
    assert not result.saved and result.save_error is None and store.list_analyses(user.id) == []


def test_video_is_saved_with_its_mp4_and_frames_and_replayed(store_and_user, photos_dir, tmp_path):
    from emotion.video import process_video, write_video

    store, user = store_and_user
    photo = cv2.resize(emotion.load_image(photos_dir / "obama.jpg"), (192, 240))
    frames = []
    for i in range(8):
        frame = np.full((240, 320, 3), 80, np.uint8)
        frame[:, 40 + 2 * i : 232 + 2 * i] = photo
        frames.append(frame)
    data = write_video(frames, tmp_path / "clip.mp4", fps=8).read_bytes()
    video = process_video(data)
    faces = [{**f, "index": f["track_id"]} for f in video.representative_faces]
    saved = analyses.save_analysis(
        store, user, source="video", content=data, options={"model": video.model, "detector": video.detector},
        faces=faces, annotated=video.representative, original_name="clip.mp4", media=video.mp4, frames=video.frames,
        labels=video.labels,
    )  # fmt: skip
    assert saved.saved and [f["index"] for f in saved.faces] == [1]
    shown = analyses.stored_analysis(store, user, saved.analysis_id)
    assert shown.media == video.mp4 and len(shown.frames) == 8
    labels = [d.label for d in shown.downloads()]
    assert labels == ["PDF report", "JSON report", "Annotated video", "Per-frame CSV", "Per-frame JSON"]
    rows = list(csv.DictReader(io.StringIO(shown.frames_csv())))
    assert len(rows) >= 6 and set(video.labels) <= set(rows[0])
    assert analyses.stored_analysis(store, store.create_user("bo", "Bo", "bo@x.org", "h"), saved.analysis_id) is None


def test_compare_models_on_the_same_faces(store_and_user, photos_dir):
    store, user = store_and_user
    names = [m.name for m in emotion.list_models() if m.kind != "committee"]
    data = (photos_dir / "two_people.jpg").read_bytes()
    result = analyses.analyze_photo(
        store, user, data, name="p.jpg", source="photo", options={**OPTIONS, "model": names[0]}
    )
    comparison = analyses.compare_models(result, names[1])
    assert comparison.models == (names[0], names[1]) and [r["index"] for r in comparison.rows] == [1, 2]
    direct = emotion.analyze(result.image, names[1], "haar", min_face=24)
    by_x = {f.box.x: f.label for f in direct}
    assert [r["label_b"] for r in comparison.rows] == [by_x[f["box"][0]] for f in result.faces]
    assert comparison.disagreements == [r for r in comparison.rows if r["label_a"] != r["label_b"]]


def test_pdf_has_human_dates_plane_gradcam_and_page_numbers(store_and_user, photos_dir):
    store, user = store_and_user
    data = (photos_dir / "two_people.jpg").read_bytes()
    options = {**OPTIONS, "model": emotion.default_model_name()}
    result = analyses.analyze_photo(store, user, data, name="two_people.jpg", source="photo", options=options)
    overlay = np.zeros((64, 64, 3), np.uint8)
    pdf = result.pdf(gradcam={2: overlay}, timezone="Europe/Paris")
    pages = pypdf.PdfReader(io.BytesIO(pdf)).pages
    text = "\n".join(p.extract_text() for p in pages)
    assert "Valence and arousal" in text and "Face 2: Grad-CAM" in text and "Face 1: Grad-CAM" not in text
    assert all(f"Page {i}" in p.extract_text() for i, p in enumerate(pages, 1))
    assert reports.human_time(result.report["created_at"], "Europe/Paris") in text
    assert "T" not in reports.human_time("2026-11-28T20:18:01.213270+00:00").split(",")[0]
    assert reports.human_time("2026-11-28T20:18:01.213270+00:00") == "28 Nov 2026, 20:18 UTC"
    assert reports.human_time("2026-11-28T20:18:01+00:00", "Europe/Paris") == "28 Nov 2026, 21:18 CET"
    assert reports.human_time("2026-11-28T20:18:01+00:00", "Not/AZone") == "28 Nov 2026, 20:18 UTC"


def test_batch_table_csv_and_json(store_and_user, photos_dir):
    store, user = store_and_user
    options = {**OPTIONS, "model": emotion.default_model_name()}
    items = [
        (n, analyses.analyze_photo(store, user, (photos_dir / n).read_bytes(), name=n, source="photo", options=options))
        for n in ("two_people.jpg", "obama.jpg")
    ]
    items.append(("notes.jpg", "This file cannot be analysed: not an image"))
    rows = analyses.batch_rows(items)
    assert [(r["file"], r["face"]) for r in rows] == [("two_people.jpg", 1), ("two_people.jpg", 2),
                                                      ("obama.jpg", 1), ("notes.jpg", None)]  # fmt: skip
    table = list(csv.DictReader(io.StringIO(analyses.batch_csv(rows))))
    assert table[-1]["error"].startswith("This file") and table[-1]["label"] == "" and "happy" in table[0]
    document = json.loads(analyses.batch_json(items))
    assert [p["file"] for p in document["photos"]] == ["two_people.jpg", "obama.jpg", "notes.jpg"]
    assert document["photos"][0]["report"]["face_count"] == 2 and "error" in document["photos"][2]
    assert len(store.list_analyses(user.id)) == 2


def test_a_grad_cam_is_kept_with_the_analysis_for_history_and_its_pdf(store_and_user, photos_dir):
    store, user = store_and_user
    options = {**OPTIONS, "model": emotion.default_model_name()}
    data = (photos_dir / "two_people.jpg").read_bytes()
    result = analyses.analyze_photo(store, user, data, name="p.jpg", source="photo", options=options)
    overlay = np.zeros((40, 40, 3), np.uint8)
    overlay[:, :, 0] = 200
    analyses.keep_gradcam(store, user, result, 2, overlay)
    shown = analyses.stored_analysis(store, user, result.analysis_id)
    assert list(shown.gradcam) == [2]
    np.testing.assert_array_equal(shown.gradcam[2], overlay)
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(shown.pdf())).pages)
    assert "Face 2: Grad-CAM" in text and "Face 1: Grad-CAM" not in text
    stranger = store.create_user("eve", "Eve", "eve@example.com", "hash")
    assert not store.update_extra(stranger.id, result.analysis_id, {"gradcam_png": {}})
    assert list(analyses.stored_analysis(store, user, result.analysis_id).gradcam) == [2]


def test_a_photo_is_shown_first_then_saved_once(store_and_user, photos_dir, monkeypatch):
    store, user = store_and_user
    data = (photos_dir / "obama_and_biden.jpg").read_bytes()
    options = {**OPTIONS, "model": emotion.default_model_name()}
    shown = analyses.analyze_photo(store, user, data, name="ob.jpg", source="photo", options=options, keep=False)
    assert shown.pending and not shown.saved and store.list_analyses(user.id) == []
    timings = shown.report["timings"]
    assert {"decode_ms", "detect_ms", "classify_ms", "encode_ms", "total_ms"} <= set(timings)
    picture = cv2.imdecode(np.frombuffer(shown.display_jpeg(), np.uint8), cv2.IMREAD_COLOR)
    assert shown.display_jpeg().startswith(b"\xff\xd8") and picture.shape[1] == analyses.DISPLAY_MAX_WIDTH
    assert picture.shape[0] == round(shown.annotated.shape[0] * analyses.DISPLAY_MAX_WIDTH / shown.annotated.shape[1])
    built = []
    original = reports.pdf_report
    monkeypatch.setattr(reports, "pdf_report", lambda *a, **k: built.append(1) or original(*a, **k))
    pdf, document = shown.downloads()[:2]
    assert callable(pdf.data) and callable(document.data) and built == []  # nothing built before a click
    analyses.save(store, user, shown)
    assert shown.saved and not shown.pending and shown.save_ms is not None
    assert analyses.save(store, user, shown).analysis_id == shown.analysis_id  # a second call does nothing
    assert len(store.list_analyses(user.id)) == 1
    assert json.loads(document.data())["analysis_id"] == shown.analysis_id
    assert store.get_analysis(user.id, shown.analysis_id).extra["timings"]["encode_ms"] >= 0
    first = pdf.data()
    assert first.startswith(b"%PDF-") and pdf.data() == first and built == [1]  # built once, kept
    store.update_extra(user.id, shown.analysis_id, {"timings": {"total_ms": 987654.0}})  # told apart below
    again = analyses.analyze_photo(store, user, data, name="ob.jpg", source="photo", options=options, keep=False)
    analyses.save(store, user, again)  # the same input and options: found, not saved twice
    assert again.duplicate and again.analysis_id == shown.analysis_id and len(store.list_analyses(user.id)) == 1
    assert again.report["timings"]["total_ms"] == 987654.0  # the history's report
    assert 0 < again.timings["total_ms"] < 987654.0 and "encode_ms" in again.timings  # this click's own wait


def test_a_failed_deferred_save_keeps_the_result(store_and_user, monkeypatch):
    store, user = store_and_user
    image = np.full((120, 160, 3), 128, np.uint8)
    face = {"box": [20, 20, 60, 60], "label": "happy", "confidence": 0.9, "scores": {"happy": 0.9, "sad": 0.1},
            "valence": 0.8, "arousal": 0.5}  # fmt: skip
    result = analyses.prepare_analysis(
        user, source="photo", content=b"x", options={"model": "m", "detector": "haar"}, faces=[face], image=image
    )

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "add_analysis", locked)
    analyses.save(store, user, result)
    assert not result.saved and "database is locked" in result.save_error and result.display_jpeg()
    assert json.loads(result.json_bytes())["faces"][0]["label"] == "happy"
