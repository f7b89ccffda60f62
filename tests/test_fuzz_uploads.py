"""The nastiest upload cases, made by code, through the Photo and Live & video page paths of
scripts/fuzz_uploads.py: every one ends as a success or a typed, user-readable error."""

from __future__ import annotations

import random

import pytest

from tests.script_support import load_script

fuzz = load_script("fuzz_uploads")


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    store = fuzz.Store(tmp_path_factory.mktemp("fuzz") / "studio.db", tmp_path_factory.mktemp("media"))
    user = store.create_user("fuzz", "Fuzz", "fuzz@example.com", "$2b$12$" + "x" * 53)
    return store, user, fuzz.emotion.default_model_name()


@pytest.mark.slow
def test_hostile_images_end_typed_or_well(target) -> None:
    store, user, model = target
    tally = fuzz.Tally(show=5)
    cases = fuzz.hostile_images(random.Random(0))
    names = {name for name, _, _ in cases}
    assert {"strip20000x20.png", "strip1x1.png", "rgba_bomb.png", "declared_bomb.png", "broken_exif0.jpg"} <= names
    for name, data, overrides in cases:
        options = {"model": model, "detector": "blazeface", "tta": False, "min_face": 24, "title": "**t**"}
        tally.run("image", fuzz.photo_path, name, data, {**options, **overrides}, store, user)
    assert tally.counts["image other exception"] == 0, "\n".join(tally.unexpected)
    assert tally.counts["image typed error"] >= 6 and tally.counts["image success"] >= 50
    for detector in fuzz.DETECTORS:  # strips and 1x1 with every detector were among them
        assert any(o.get("detector") == detector and name.startswith("strip") for name, _, o in cases)


@pytest.mark.slow
def test_hostile_videos_end_typed_or_well(target) -> None:
    store, user, model = target
    tally = fuzz.Tally(show=5)
    cases = list(fuzz.video_inputs(7, random.Random(0)))
    assert [name for name, _, _ in cases][:2] == ["latin1.mp4", "fast240.mp4"]
    for name, data, _ in cases:
        options = {"model": model, "detector": "blazeface", "tta": False, "min_face": 24, "title": None}
        tally.run("video", fuzz.video_path, name, data, options, store, user)
    assert tally.counts["video other exception"] == 0, "\n".join(tally.unexpected)
    assert tally.counts["video success"] == 3 and tally.counts["video typed error"] == 4


def test_mutations_change_the_input_and_are_reproducible() -> None:
    data = bytes(range(256)) * 4
    first = [fuzz.mutate(random.Random(7), data) for _ in range(3)]
    assert first == [fuzz.mutate(random.Random(7), data) for _ in range(3)]
    assert all(m != data for m in first)
