"""The CLI end to end on real photos with the shipped default model: JSON shape, CSV format,
exit codes, a folder with one bad file among good ones, --no-detect, models listing."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import pytest

from emotion.config import REPO_ROOT
from emotion.registry import list_models


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emotion", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def photo_folder(photos_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in ("two_people.jpg", "obama.jpg", "32bit.png"):
        shutil.copy(photos_dir / name, folder / name)
    nested = folder / "nested"
    nested.mkdir()
    shutil.copy(photos_dir / "obama-240p.jpg", nested / "small.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a full jpeg")
    return folder


def test_json_for_a_folder_with_one_bad_file(photo_folder):
    result = run_cli("predict", str(photo_folder))
    assert result.returncode == 1, "a file failed to read: exit code 1"
    records = json.loads(result.stdout)
    by_name = {r["path"].split("/")[-1]: r for r in records}
    assert set(by_name) == {"two_people.jpg", "obama.jpg", "32bit.png", "small.jpg", "broken.jpg"}
    assert by_name["broken.jpg"]["error"] and by_name["broken.jpg"]["faces"] == []
    assert len(by_name["two_people.jpg"]["faces"]) == 2
    labels = list_models()[0].labels
    for record in records:
        assert set(record) == {"path", "faces", "error"}
        for face in record["faces"]:
            assert set(face) == {"box", "label", "scores"}
            assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
            assert face["label"] in labels and set(face["scores"]) == set(labels)
            assert sum(face["scores"].values()) == pytest.approx(1.0, abs=1e-3)
            assert face["label"] == max(face["scores"], key=face["scores"].get)
    assert "broken.jpg" in result.stderr


def test_all_good_files_exit_zero(photos_dir):
    result = run_cli("predict", str(photos_dir / "obama.jpg"), "--detector", "hog", "--tta")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)[0]["faces"]) == 1


def test_predict_uses_test_time_augmentation_unless_told_not_to(photos_dir):
    """The CLI's default answer is the app's: the model's calibrated TTA probabilities; --no-tta gives one view."""
    from emotion import load_image
    from emotion.registry import load
    from studio.cli import build_parser, predict_file

    photo = photos_dir / "obama.jpg"
    default, plain = (
        build_parser().parse_args(["predict", str(photo), "--no-detect", *flag]) for flag in ([], ["--no-tta"])
    )
    assert default.tta is True and plain.tta is False
    model, image = load(None), load_image(photo)
    for args, tta in ((default, True), (plain, False)):
        scores = predict_file(photo, args)["faces"][0]["scores"]
        expected = model.predict_faces([image], tta=tta)[0]
        assert list(scores.values()) == pytest.approx(expected.tolist(), abs=2e-6)
    assert predict_file(photo, default)["faces"][0]["scores"] != predict_file(photo, plain)["faces"][0]["scores"]


def test_csv_is_a_sorted_kaggle_submission(photo_folder, tmp_path):
    out = tmp_path / "submission.csv"
    result = run_cli("predict", str(photo_folder), "--format", "csv", "--output", str(out))
    assert result.returncode == 1
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["filename", "emotion"]
    names = [r[0] for r in rows[1:]]
    assert names == sorted(names) and len(names) == 5
    by_name = dict(rows[1:])
    assert by_name["broken.jpg"] == ""
    assert by_name["obama.jpg"] in list_models()[0].labels


def test_no_detect_classifies_the_whole_image(photos_dir):
    result = run_cli("predict", str(photos_dir / "obama-240p.jpg"), "--no-detect")
    assert result.returncode == 0
    faces = json.loads(result.stdout)[0]["faces"]
    assert len(faces) == 1 and faces[0]["box"] == [0, 0, 427, 240]


def test_unknown_model_and_no_images(tmp_path):
    result = run_cli("predict", str(tmp_path), "--model", "no_such_model")
    assert result.returncode == 2 and "no_such_model" in result.stderr
    result = run_cli("predict", str(tmp_path))
    assert result.returncode == 2 and "no image" in result.stderr


def test_progress_bar_on_stderr_for_many_files(photos_dir, tmp_path):
    for i in range(12):
        shutil.copy(photos_dir / "obama-240p.jpg", tmp_path / f"face{i:02d}.jpg")
    result = run_cli("predict", str(tmp_path), "--format", "csv")
    assert result.returncode == 0
    assert "12/12" in result.stderr
    assert len(result.stdout.strip().splitlines()) == 13


def test_models_lists_every_registered_model():
    result = run_cli("models")
    assert result.returncode == 0
    for info in list_models():
        assert info.name in result.stdout
    listed = json.loads(run_cli("models", "--format", "json").stdout)
    assert {m["name"] for m in listed} == {m.name for m in list_models()}
