"""emotion.config: which typed dataset paths the explorer may read; the serving threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from emotion import config


@pytest.fixture
def layout(tmp_path: Path, monkeypatch) -> Path:
    """data/ as the dataset root with the store and its media inside it (the default layout)."""
    data = tmp_path / "data"
    for folder in ("media/1", "media/2", "my_dataset/happy", "cache"):
        (data / folder).mkdir(parents=True)
    monkeypatch.setattr(config, "DATA_DIR", data.resolve())
    monkeypatch.setattr(config, "SHARED_DIR", tmp_path / "no-shared")
    monkeypatch.setenv("EMOTION_DB_PATH", str(data / "studio.db"))
    monkeypatch.delenv("EMOTION_MEDIA_DIR", raising=False)
    monkeypatch.delenv("EMOTION_DATASET_ROOTS", raising=False)
    return data.resolve()


def test_a_dataset_inside_data_is_read(layout: Path) -> None:
    assert config.resolve_dataset_path("my_dataset") == layout / "my_dataset"
    assert config.resolve_dataset_path(str(layout / "my_dataset" / "happy")) == layout / "my_dataset" / "happy"


@pytest.mark.parametrize("typed", ["/etc", "..", "../..", "my_dataset/../../.."])
def test_nothing_outside_the_roots(layout: Path, typed: str) -> None:
    assert config.resolve_dataset_path(typed) is None


@pytest.mark.parametrize("typed", ["media", "media/2", "./media/../media/1", ".", "", "my_dataset/.."])
def test_never_the_users_saved_pictures_nor_a_folder_that_holds_them(layout: Path, typed: str) -> None:
    """data/media/<user id>/ holds every user's annotated photos: as a "dataset" it would show one
    user the faces another saved (classes = user ids)."""
    assert config.resolve_dataset_path(typed) is None


def test_a_link_into_the_media_folder_is_refused(layout: Path) -> None:
    (layout / "innocent").symlink_to(layout / "media")
    assert config.resolve_dataset_path("innocent") is None


def test_media_kept_elsewhere_frees_data(layout: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EMOTION_MEDIA_DIR", str(tmp_path / "private-media"))
    assert config.resolve_dataset_path(".") == layout


def test_serve_threads_default_to_two_or_the_cores(monkeypatch) -> None:
    monkeypatch.delenv(config.SERVE_THREADS_ENV, raising=False)
    monkeypatch.setattr(config.os, "cpu_count", lambda: 16)
    assert config.serve_threads() == 2
    monkeypatch.setattr(config.os, "cpu_count", lambda: 1)
    assert config.serve_threads() == 1
    monkeypatch.setattr(config.os, "cpu_count", lambda: None)  # unknown: one
    assert config.serve_threads() == 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", " "])
def test_a_bad_serve_threads_value_falls_back_to_the_default(monkeypatch, caplog, value: str) -> None:
    monkeypatch.setattr(config.os, "cpu_count", lambda: 2)
    monkeypatch.setenv(config.SERVE_THREADS_ENV, value)
    assert config.serve_threads() == 2
    assert value.strip() == "" or "not a positive integer" in caplog.text


def test_serve_threads_reads_the_variable_when_called(monkeypatch) -> None:
    monkeypatch.setenv(config.SERVE_THREADS_ENV, "3")
    assert config.serve_threads() == 3
    monkeypatch.setenv(config.SERVE_THREADS_ENV, " 1 ")
    assert config.serve_threads() == 1
