"""Shared fixtures. Tests that need ../shared fail in CI (CI=true) when it is missing and skip
elsewhere with the reason, so a green CI run always means they ran."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emotion.config import REPO_ROOT, SHARED_DIR
from emotion.logs import setup_logging

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PHOTOS_DIR = SHARED_DIR / "photos"
FER2013_CSV = SHARED_DIR / "datasets" / "fer2013" / "fer2013.csv.gz"


def pytest_configure(config) -> None:
    # The servers tests start do not fill the FER2013 cache in the background (seconds of both cores
    # each); tests/test_eda.py runs the warm-up itself. A hook, not module code: scripts that import
    # test helpers (the benchmarks) keep the app's default.
    os.environ.setdefault("EMOTION_WARM_CACHE", "0")


@pytest.fixture(scope="session", autouse=True)
def logging_for_the_test_process(tmp_path_factory) -> None:
    """The app's logging, set up once before any test (later set-ups are no-ops). Otherwise the first
    code to set it up (training.train, app.py) may run inside a test that captures output (capsys),
    and the console handler keeps writing to that test's stream after it is closed: every later line
    the process logs then printed "I/O operation on closed file". The log file goes to a temporary
    folder, not the checkout's logs/."""
    setup_logging("tests", log_file=tmp_path_factory.mktemp("logs") / "tests.log")


def require_shared(path: Path) -> Path:
    """Return path, or fail (CI) / skip (elsewhere) when ../shared does not have it."""
    if path.exists():
        return path
    message = f"{path} is missing: tests of real photos and FER2013 need ../shared beside the checkout"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return require_shared(PHOTOS_DIR)


@pytest.fixture(scope="session")
def fer2013_csv() -> Path:
    return require_shared(FER2013_CSV)


@pytest.fixture
def isolated_store(tmp_path, monkeypatch) -> Path:
    """Point the SQLite store and its media folder at a fresh temporary directory."""
    db = tmp_path / "studio.db"
    monkeypatch.setenv("EMOTION_DB_PATH", str(db))
    monkeypatch.setenv("EMOTION_MEDIA_DIR", str(tmp_path / "media"))
    return db


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def chromium_path() -> str:
    """Debian's Chromium for the browser tests: skips without it, fails in CI (tests/browser_support.py)."""
    from tests.browser_support import require_chromium

    return require_chromium()
