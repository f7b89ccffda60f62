"""JSON and PDF reports of real photos: schema validity, PDF text and rendering, model accuracy note."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import jsonschema
import numpy as np
import pypdf
import pytest
from PIL import Image

import emotion
from emotion import config
from studio import analyses, reports
from studio.store import get_store

pytestmark = pytest.mark.shared


def _report_of(photos_dir, name: str, **kwargs) -> tuple[dict, np.ndarray]:
    image = emotion.load_image(photos_dir / name)
    faces = emotion.analyze(image, detector="haar")
    report = reports.json_report(
        faces=[f.to_dict() for f in faces],
        image_size=(image.shape[1], image.shape[0]),
        model=emotion.default_model_name(),
        detector="haar",
        source="photo",
        created_at=reports.utc_now(),
        user="alice",
        original_name=name,
        timings={"detect_ms": faces[0].timings["detect_ms"] if faces else 0.0, "total_ms": 12.5},
        **kwargs,
    )
    return report, emotion.annotate(image, faces)


def _pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(reports.REPORT_JSON_SCHEMA)
    assert reports.REPORT_JSON_SCHEMA["properties"]["schema_version"]["const"] == reports.REPORT_SCHEMA_VERSION


@pytest.mark.parametrize(("name", "faces"), [("obama.jpg", 1), ("two_people.jpg", 2)])
def test_json_report_of_real_photo_validates(photos_dir, name, faces):
    report, _ = _report_of(photos_dir, name, title="Team photo")
    jsonschema.validate(report, reports.REPORT_JSON_SCHEMA, cls=jsonschema.Draft202012Validator)
    assert reports.schema_errors(report) == []
    assert report["face_count"] == len(report["faces"]) == faces
    assert report["image"]["original_name"] == name
    assert report["image"]["width"] > report["image"]["height"] or name == "obama.jpg"
    for face in report["faces"]:
        assert face["label"] == max(face["scores"], key=face["scores"].get)
        assert abs(sum(face["scores"].values()) - 1) < 1e-3
        assert face["confidence"] == face["scores"][face["label"]]
    assert sum(report["summary"]["label_counts"].values()) == faces
    # The document survives a JSON round trip unchanged (what the download holds).
    assert json.loads(json.dumps(report)) == report


def test_schema_rejects_broken_reports(photos_dir):
    report, _ = _report_of(photos_dir, "obama.jpg")
    broken = [
        {**report, "source": "fax"},
        {k: v for k, v in report.items() if k != "model"},
        {**report, "faces": [{**report["faces"][0], "confidence": 1.5}]},
        {**report, "faces": [{**report["faces"][0], "box": [1, 2, 3]}]},
        {**report, "schema_version": "0.1"},
    ]
    for document in broken:
        assert reports.schema_errors(document), document


def test_report_without_faces_validates():
    report = reports.json_report(
        faces=[],
        image_size=(640, 480),
        model=emotion.default_model_name(),
        detector="hog",
        source="snapshot",
        created_at=reports.utc_now(),
    )
    assert reports.schema_errors(report) == []
    assert report["summary"]["mean_valence"] is None
    pdf = reports.pdf_report(report, np.full((480, 640, 3), 200, np.uint8))
    assert "No face was found" in _pdf_text(pdf)


@pytest.mark.parametrize(("name", "faces"), [("obama.jpg", 1), ("two_people.jpg", 2)])
def test_pdf_holds_labels_numbers_and_escaped_title(photos_dir, name, faces, tmp_path):
    title = 'Q3 <b>review</b> & "team" <unclosed'
    report, annotated = _report_of(photos_dir, name, title=title)
    pdf = reports.pdf_report(report, annotated)
    assert pdf.startswith(b"%PDF-")
    text = _pdf_text(pdf)
    assert title in text  # markup shown literally, not interpreted (and no crash on "<unclosed")
    for expected in ("alice", report["model"], name, "Top emotion"):
        assert expected in text
    for face in report["faces"]:
        assert face["label"] in text
        assert f"{face['confidence']:.1%}" in text
        for probability in face["scores"].values():
            assert f"{probability * 100:.1f}%" in text  # the bar labels of the per-face chart
    assert text.count("probability per emotion") == faces
    assert "not evaluated" in text or "accuracy" in text
    if shutil.which("pdftoppm"):
        out = tmp_path / "page"
        subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-", str(out)], input=pdf, check=True)
        rendered = emotion.load_image(next(tmp_path.glob("page*.png")))
        assert rendered.shape[0] > rendered.shape[1]  # A4 portrait
        assert rendered.std() > 20  # the photo and chart are drawn, not a blank page


def _temporary_registry(tmp_path, monkeypatch, metrics: dict | None) -> str:
    """A models folder with one manifest (and metrics.json when given) for the accuracy note."""
    folder = tmp_path / "models" / "note_model"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"name": "note_model", "labels": list(emotion.FER2013_LABELS)}))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "models")
    return "note_model"


def _one_face_report(model: str) -> dict:
    scores = dict(zip(emotion.FER2013_LABELS, [0.05, 0.05, 0.05, 0.6, 0.1, 0.1, 0.05], strict=True))
    face = {
        "box": [10, 10, 50, 50],
        "label": "happy",
        "confidence": 0.6,
        "scores": scores,
        "valence": 0.4,
        "arousal": 0.3,
    }
    return reports.json_report(
        faces=[face], image_size=(100, 100), model=model, detector="haar", source="photo", created_at=reports.utc_now()
    )


def test_model_note_quotes_measured_accuracy(tmp_path, monkeypatch):
    metrics = {"accuracy": 0.6789, "macro_f1": 0.6512, "split": "PrivateTest", "dataset": "fer2013", "n": 3589}
    report = _one_face_report(_temporary_registry(tmp_path, monkeypatch, metrics))
    assert reports.schema_errors(report) == []
    assert report["model_info"]["metrics"]["accuracy"] == 0.6789
    text = _pdf_text(reports.pdf_report(report, np.zeros((100, 100, 3), np.uint8)))
    assert "67.9%" in text and "0.651" in text and "PrivateTest" in text and "n=3589" in text
    assert "not evaluated" not in text


def test_model_note_says_not_evaluated_without_metrics(tmp_path, monkeypatch):
    report = _one_face_report(_temporary_registry(tmp_path, monkeypatch, None))
    assert report["model_info"]["metrics"] is None
    text = _pdf_text(reports.pdf_report(report, np.zeros((100, 100, 3), np.uint8)))
    assert "not evaluated" in text
    assert "accuracy" in text and "%" not in text.split("About the model")[1].split("Emotion labels")[0]


def test_report_filename_is_safe():
    report = {"source": "photo", "created_at": "2026-11-21T06:00:00+00:00"}
    assert reports.report_filename(report, "pdf") == "emotion-photo-20261121060000.pdf"
    assert reports.report_filename({**report, "analysis_id": 7}, "json") == "emotion-photo-7.json"


def test_stored_analysis_report_and_pdf(photos_dir, isolated_store):
    """A video-like stored analysis (seconds timings) and a photo one; another user gets nothing."""
    store = get_store()
    alice = store.create_user("alice", "Alice", "alice@example.com", "x")
    bob = store.create_user("bob", "Bob", "bob@example.com", "y")
    report, annotated = _report_of(photos_dir, "two_people.jpg")
    buffer = io.BytesIO()
    Image.fromarray(annotated).save(buffer, format="PNG")
    saved = store.add_analysis(
        alice.id, source="video", model=report["model"], detector="haar",
        faces=[{k: v for k, v in f.items() if k != "index"} for f in report["faces"]],
        image=buffer.getvalue(), image_ext="png",  # kept as older versions did
        original_name="clip.mp4", title="Clip", extra={"image_size": [1126, 661], "timings": {"total_s": 3.25}},
    )  # fmt: skip
    rebuilt = reports.report_for_analysis(saved, "alice")
    assert reports.schema_errors(rebuilt) == []
    assert rebuilt["analysis_id"] == saved.id and rebuilt["source"] == "video" and rebuilt["face_count"] == 2
    assert [f["label"] for f in rebuilt["faces"]] == [f["label"] for f in report["faces"]]
    made = analyses.stored_analysis(store, alice, saved.id)
    assert made is not None and made.report["faces"] == rebuilt["faces"]
    text = _pdf_text(made.pdf())
    assert "total 3.2 s" in text and "clip.mp4" in text and "Clip" in text
    assert analyses.stored_analysis(store, bob, saved.id) is None


def test_cli_source_is_valid():
    report = reports.json_report(
        faces=[], image_size=(10, 10), model=emotion.default_model_name(), detector="none", source="cli",
        created_at=reports.utc_now(),
    )  # fmt: skip
    assert reports.schema_errors(report) == []
