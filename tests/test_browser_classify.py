"""The classify page in a real headless Chromium through the app shell: log in, open the Photo page,
upload two_people.jpg with the real file widget, see two faces, download the PDF, then find the
analysis in History. Set EMOTION_SCREENSHOT_DIR to keep screenshots."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import bcrypt
import pypdf
import pytest

from studio.store import get_store
from tests.browser_support import launch_chromium, screenshot_dir, serve_app

pytestmark = [pytest.mark.browser, pytest.mark.shared, pytest.mark.slow]
USERNAME, PASSWORD = "browseruser", "correct-horse-battery"
# pages.common.STALE_WITHOUT_FADE_CSS is among the page's style rules: stale elements step, not fade.
STALE_STEP_JS = """() => [...document.styleSheets].some(sheet => {
    try { return [...sheet.cssRules].some(r => r.selectorText === '.stElementContainer'
                                             && r.style.transitionDuration === '0s'); }
    catch (e) { return false; } })"""


@pytest.fixture
def app_url(isolated_store, tmp_path):
    """`streamlit run app.py` on a free port over the isolated store, with one user; yields its URL."""
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    get_store().create_user(USERNAME, "Browser User", "browser@example.com", password_hash)
    with serve_app(tmp_path, {"EMOTION_COOKIE_KEY": "classify-browser-test-cookie-key-" + "x" * 32}) as url:
        yield url


def _log_in(page) -> None:
    """Through the app shell's login form."""
    login = page.get_by_role("tabpanel", name="Log in")
    login.get_by_label("Username", exact=True).fill(USERNAME)
    login.get_by_label("Password", exact=True).fill(PASSWORD)
    login.get_by_role("button", name="Log in").click()


def test_upload_two_people_and_download_pdf(chromium_path, app_url, photos_dir, tmp_path):
    url = app_url
    with launch_chromium(chromium_path) as browser:
        page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 1800})
        page.set_default_timeout(120_000)
        page.goto(url)
        _log_in(page)  # at once: nothing reruns the app behind the user's back (test_browser_first_click)
        page.get_by_text("Signed in as").wait_for()
        page.get_by_role("link", name="Photo").first.click()
        page.get_by_role("heading", name="Classify a photo").wait_for()
        assert page.evaluate(STALE_STEP_JS)
        page.locator('input[type="file"]').set_input_files(str(photos_dir / "two_people.jpg"))
        page.get_by_text("two_people.jpg").first.wait_for()
        page.get_by_role("button", name="Analyze").click()
        page.get_by_text("2 faces found").wait_for()
        page.get_by_role("heading", name="Face 2").wait_for()
        with page.expect_download() as download_info:
            page.get_by_role("button", name="PDF report").click()
        download = download_info.value
        pdf = Path(download.path()).read_bytes()
        shots = screenshot_dir(tmp_path)
        page.get_by_text("2 faces found").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "classify_two_people.png"))
        page.get_by_text("Explain (Grad-CAM)").first.click()
        page.get_by_text("Grad-CAM for").first.wait_for()
        page.get_by_text("Grad-CAM for").first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "classify_gradcam.png"))
        # The analysis is in History, and its PDF is built again on demand (a deferred download).
        page.get_by_role("link", name="History").first.click()
        page.get_by_role("heading", name="History").wait_for()
        page.get_by_text("2 faces:").wait_for()
        with page.expect_download() as history_info:
            page.get_by_role("button", name="PDF", exact=True).first.click()
        history_pdf = Path(history_info.value.path()).read_bytes()
        page.screenshot(path=str(shots / "history.png"))
    assert download.suggested_filename.startswith("emotion-photo-") and download.suggested_filename.endswith(".pdf")
    assert pdf.startswith(b"%PDF-")
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    saved = get_store().list_analyses(get_store().get_user_by_username(USERNAME).id)
    assert len(saved) == 1 and len(saved[0].faces) == 2 and saved[0].original_name == "two_people.jpg"
    assert "two_people.jpg" in text and USERNAME in text
    for face in saved[0].faces:
        assert face["label"] in text and f"{face['confidence']:.1%}" in text
    assert history_pdf.startswith(b"%PDF-")
    history_text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(history_pdf)).pages)
    assert all(face["label"] in history_text for face in saved[0].faces) and "two_people.jpg" in history_text
    if shutil.which("pdftoppm"):
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-", str(tmp_path / "pdf")], input=pdf, check=True
        )
