"""The classify page in a real headless Chromium: log in, upload two_people.jpg with the real file
widget, see two faces, download the PDF. Set EMOTION_SCREENSHOT_DIR to keep a screenshot."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import bcrypt
import pypdf
import pytest

from emotion.store import get_store
from tests.conftest import IN_CI

pytestmark = [pytest.mark.browser, pytest.mark.shared, pytest.mark.slow]
ROOT = Path(__file__).parent.parent  # the checkout these tests belong to
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USERNAME, PASSWORD = "browseruser", "correct-horse-battery"
# Until the app shell exists, a launcher puts the pre-created user in the session and runs the page.
LAUNCHER = """
import runpy
import streamlit as st
from emotion.store import get_store
st.session_state["user"] = get_store().get_user_by_username({username!r})
runpy.run_path({page!r}, run_name="__main__")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@pytest.fixture
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing (install Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is missing")
    return CHROMIUM


@pytest.fixture
def app_url(isolated_store, tmp_path):
    """A streamlit server on a free port over the isolated store, with one user; yields its URL."""
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    get_store().create_user(USERNAME, "Browser User", "browser@example.com", password_hash)
    app = ROOT / "app.py"
    if not app.is_file():
        app = tmp_path / "launcher.py"
        app.write_text(LAUNCHER.format(username=USERNAME, page=str(ROOT / "pages" / "classify.py")))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        yield url, app.name == "app.py"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _log_in(page) -> None:
    """Through the app shell's login form."""
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Login").click()


def test_upload_two_people_and_download_pdf(chromium_path, app_url, photos_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    url, through_app = app_url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 1800})
            page.set_default_timeout(120_000)
            page.goto(url)
            if through_app:
                _log_in(page)
                page.get_by_role("link", name="Classify").first.click()
            page.get_by_role("heading", name="Classify a photo").wait_for()
            page.locator('input[type="file"]').set_input_files(str(photos_dir / "two_people.jpg"))
            page.get_by_text("two_people.jpg").first.wait_for()
            page.get_by_role("button", name="Analyze").click()
            page.get_by_text("2 faces found").wait_for()
            page.get_by_text("Face 2:").wait_for()
            with page.expect_download() as download_info:
                page.get_by_role("button", name="Download PDF report").click()
            download = download_info.value
            pdf = Path(download.path()).read_bytes()
            shots = Path(os.environ.get("EMOTION_SCREENSHOT_DIR") or tmp_path)
            shots.mkdir(parents=True, exist_ok=True)
            page.get_by_text("2 faces found").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "classify_two_people.png"))
        finally:
            browser.close()
    assert download.suggested_filename.startswith("emotion-photo-") and download.suggested_filename.endswith(".pdf")
    assert pdf.startswith(b"%PDF-")
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    saved = get_store().list_analyses(get_store().get_user_by_username(USERNAME).id)
    assert len(saved) == 1 and len(saved[0].faces) == 2 and saved[0].original_name == "two_people.jpg"
    assert "two_people.jpg" in text and USERNAME in text
    for face in saved[0].faces:
        assert face["label"] in text and f"{face['confidence']:.1%}" in text
    if shutil.which("pdftoppm"):
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-", str(tmp_path / "pdf")], input=pdf, check=True
        )
