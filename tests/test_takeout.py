"""studio.takeout: one user's data as a ZIP, and nothing of anyone else's."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from studio import reports, takeout
from studio.store import Store

HASH = "$2b$12$" + "x" * 53
FACE = {
    "box": [1, 2, 30, 30],
    "label": "happy",
    "confidence": 0.9,
    "scores": {"happy": 0.9},
    "valence": 0.8,
    "arousal": 0.3,
}


@pytest.fixture
def db(tmp_path: Path) -> Store:
    return Store(tmp_path / "studio.db", tmp_path / "media")


def test_the_archive_holds_every_analysis_of_the_user_and_only_theirs(db: Store) -> None:
    alice = db.create_user("alice", "Alice <b>", "alice@example.com", HASH)
    bob = db.create_user("bob", "Bob", "bob@example.com", HASH)
    common = {"model": "m1", "detector": "haar", "faces": [FACE]}
    photo = db.add_analysis(alice.id, source="photo", image=b"\xff\xd8alice-jpeg", title="Beach", **common)
    frame = {"frame": 0, "time": 0.0, "faces": [{**FACE, "track_id": 1}]}
    overlay = base64.b64encode(b"\x89PNG gradcam").decode()
    video = db.add_analysis(
        alice.id, source="video", image=b"\xff\xd8frame", media_bytes=b"alice-video", media_ext="mp4",
        extra={"frames": [frame], "labels": ["happy"], "gradcam_png": {"1": overlay, "2": "%%not base64%%"}},
        **common,
    )  # fmt: skip
    bare = db.add_analysis(alice.id, source="snapshot", image=None, **common)
    db.add_analysis(bob.id, source="photo", image=b"\xff\xd8bob-jpeg", title="Bob's", **common)
    when = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    archive = zipfile.ZipFile(io.BytesIO(takeout.export_zip(db, alice, now=when)))

    names = set(archive.namelist())
    assert names == {
        "README.txt",
        "account.json",
        "analyses.json",
        f"analyses/{photo.id}/report.json",
        f"analyses/{photo.id}/annotated.jpg",
        f"analyses/{video.id}/report.json",
        f"analyses/{video.id}/annotated.jpg",
        f"analyses/{video.id}/video.mp4",
        f"analyses/{video.id}/frames.csv",
        f"analyses/{video.id}/frames.json",
        f"analyses/{video.id}/gradcam-1.png",
        f"analyses/{bare.id}/report.json",
    }
    assert archive.testzip() is None
    account = json.loads(archive.read("account.json"))
    assert account["username"] == "alice" and account["name"] == "Alice <b>"
    assert account["analyses"] == {"photo": 1, "snapshot": 1, "video": 1, "total": 3}
    assert "password" not in json.dumps(account) and HASH not in str(archive.read("account.json"))
    assert archive.read(f"analyses/{photo.id}/annotated.jpg") == b"\xff\xd8alice-jpeg"
    assert archive.read(f"analyses/{video.id}/video.mp4") == b"alice-video"
    assert archive.read(f"analyses/{video.id}/gradcam-1.png") == b"\x89PNG gradcam"  # the damaged one left out
    assert json.loads(archive.read(f"analyses/{video.id}/frames.json")) == {"labels": ["happy"], "frames": [frame]}
    rows = archive.read(f"analyses/{video.id}/frames.csv").decode().splitlines()
    assert rows[0].startswith("frame,time,track_id,label") and rows[1].startswith("0,0.0,1,happy,0.9")
    report = json.loads(archive.read(f"analyses/{photo.id}/report.json"))
    assert report == reports.report_for_analysis(db.get_analysis(alice.id, photo.id), "alice")
    assert reports.schema_errors(report) == []
    index = json.loads(archive.read("analyses.json"))
    assert [entry["id"] for entry in index] == [bare.id, video.id, photo.id]  # newest first
    assert index[2]["title"] == "Beach" and index[0]["files"] == [f"analyses/{bare.id}/report.json"]
    everything = b"".join(archive.read(name) for name in names)
    assert b"bob" not in everything.lower()
    assert "2026-11-29" in archive.read("README.txt").decode()
    assert takeout.export_filename(alice, now=when) == "emotion-studio-alice-20261129.zip"


def test_a_file_missing_on_disk_is_left_out(db: Store) -> None:
    alice = db.create_user("alice", "Alice", "alice@example.com", HASH)
    saved = db.add_analysis(alice.id, source="photo", model="m", detector="haar", faces=[FACE], image=b"\xff\xd8x")
    for path in (db.media_root / str(alice.id)).iterdir():
        path.unlink()
    archive = zipfile.ZipFile(io.BytesIO(takeout.export_zip(db, alice)))
    assert f"analyses/{saved.id}/annotated.jpg" not in archive.namelist()
    assert json.loads(archive.read("analyses.json"))[0]["files"] == [f"analyses/{saved.id}/report.json"]


def test_an_account_without_analyses(db: Store) -> None:
    alice = db.create_user("alice", "Alice", "alice@example.com", HASH)
    archive = zipfile.ZipFile(io.BytesIO(takeout.export_zip(db, alice)))
    assert sorted(archive.namelist()) == ["README.txt", "account.json", "analyses.json"]
    assert json.loads(archive.read("analyses.json")) == []
