"""Trust in a real server and headless Chromium: no page renders before login whatever URL a fresh
browser asks a fresh server for first (and the sidebar never lists app or common), a logged-out deep
link lands on its page after login, the next user in the same tab sees nothing of the previous one,
and a cookie copied before a logout or a password change no longer logs in. Set
EMOTION_SCREENSHOT_DIR to keep screenshots."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bcrypt
import pytest
from PIL import Image

from pages.common import PAGES
from tests.browser_support import (
    COOKIE_NAME,
    launch_chromium,
    screenshot_dir,
    serve_app,
    session_cookie,
    wait_for_cookie,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT_MS = 90_000
COOKIE_KEY = "trust-browser-test-cookie-key-" + "x" * 32
ALICE = ("alice", "Alice Secret-Name", "alice-mauve-kettle7")
BOB = ("bob", "Bob Other", "bob-teal-lantern4")
# Each page's URL and the heading that only the page itself shows.
PAGE_HEADINGS = {
    "": "Welcome",
    "classify": "Classify a photo",
    "live": "Live webcam and video",
    "dataset_explorer": "Dataset explorer",
    "model_comparison": "Model comparison",
    "history": "History",
    "account": "Account",
}


@contextmanager
def fresh_server(workdir: Path, users: tuple[tuple[str, str, str], ...] = ()) -> Iterator[str]:
    """A new `streamlit run app.py` process over a new database with these users; yields its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        "EMOTION_DB_PATH": str(workdir / "data" / "studio.db"),
        "EMOTION_MEDIA_DIR": str(workdir / "data" / "media"),
        "EMOTION_COOKIE_KEY": COOKIE_KEY,
    }
    if users:
        from studio.store import Store

        store = Store(Path(env["EMOTION_DB_PATH"]), Path(env["EMOTION_MEDIA_DIR"]))
        for username, name, password in users:
            password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            store.create_user(username, name, f"{username}@example.com", password_hash)
        store.close()
    with serve_app(workdir, env) as url:
        yield url


def new_page(browser, cookies: list[dict] | None = None):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)  # a fresh server's first run imports the whole studio
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    if cookies:
        context.add_cookies(cookies)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return context, page


def log_in(page, user: tuple[str, str, str]) -> None:
    login = page.get_by_role("tabpanel", name="Log in")
    login.get_by_label("Username", exact=True).fill(user[0])
    login.get_by_label("Password", exact=True).fill(user[2])
    login.get_by_role("button", name="Log in").click()
    page.get_by_text("Signed in as").wait_for()


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("tab", name="Log in").wait_for()


def shows_login_only(page, heading: str) -> None:
    """The login form, none of the page, and no sidebar entry for app or common."""
    from playwright.sync_api import expect

    expect(page.get_by_role("tab", name="Log in")).to_be_visible()
    page.wait_for_timeout(1500)  # give a page that would render after the login time to show up
    if heading == "Welcome":  # the home page; its title is also the login page's
        expect(page.get_by_text("Welcome,")).to_have_count(0)
    else:
        expect(page.get_by_role("heading", name=heading, exact=True)).to_have_count(0)
    expect(page.get_by_text("Page not found")).to_have_count(0)
    for name in ("app", "common"):
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)


def test_every_page_url_first_on_a_fresh_server_shows_only_the_login(chromium_path: str, tmp_path: Path) -> None:
    """For each page: a new server process, a new browser, and that page's URL as the very first request."""
    assert {spec.path.rsplit("/", 1)[-1].removesuffix(".py") for spec in PAGES} == set(PAGE_HEADINGS) - {""} | {"home"}
    for index, (path, heading) in enumerate(PAGE_HEADINGS.items()):
        with fresh_server(tmp_path / f"server{index}") as url, launch_chromium(chromium_path) as browser:
            _, page = new_page(browser)
            page.goto(f"{url}/{path}")
            shows_login_only(page, heading)
            page.screenshot(path=str(screenshot_dir(tmp_path) / f"first_request_{path or 'root'}.png"))


def test_logged_out_deep_link_lands_on_its_page_after_login(chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with fresh_server(tmp_path / "server", (ALICE,)) as url, launch_chromium(chromium_path) as browser:
        _, warm = new_page(browser)  # the server has run app.py once already: the ordinary case
        warm.goto(url)
        warm.get_by_role("tab", name="Log in").wait_for()
        _, page = new_page(browser)
        page.goto(f"{url}/history")
        shows_login_only(page, "History")
        log_in(page, ALICE)
        expect(page.get_by_role("heading", name="History", exact=True)).to_be_visible()
        assert page.url.rstrip("/").endswith("/history")
        for name in ("app", "common"):
            expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
        expect(page.get_by_role("link", name="Account")).to_have_count(1)  # the studio's own menu


def _faceless_png() -> bytes:
    """A smooth gradient: no detector finds a face in it, so the page offers a whole-image analysis."""
    image = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_next_user_in_the_same_tab_sees_nothing_of_the_previous_one(chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    upload = tmp_path / "alice1.png"
    upload.write_bytes(_faceless_png())
    secret_title = "Alice confidential title"
    with fresh_server(tmp_path / "server", (ALICE, BOB)) as url, launch_chromium(chromium_path) as browser:
        _, page = new_page(browser)
        page.goto(url)
        log_in(page, ALICE)
        page.get_by_role("link", name="Photo").first.click()
        page.get_by_role("heading", name="Classify a photo").wait_for()
        page.get_by_label("Title or note (optional, kept with the analysis)").fill(secret_title)
        page.get_by_label("Title or note (optional, kept with the analysis)").press("Enter")
        page.locator('input[type="file"]').set_input_files(str(upload))
        page.get_by_text(upload.name).first.wait_for()
        page.get_by_role("button", name="Analyze").click()
        page.get_by_role("button", name="Classify the whole image as one face").click()
        expect(page.get_by_role("button", name="PDF report", exact=True)).to_be_visible()
        expect(page.get_by_text(secret_title).first).to_be_visible()
        log_out(page)
        log_in(page, BOB)  # same tab, same Streamlit session
        page.get_by_role("link", name="Photo").first.click()
        page.get_by_role("heading", name="Classify a photo").wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(screenshot_dir(tmp_path) / "bob_photo_page.png"), full_page=True)
        for leftover in (secret_title, upload.name, "Alice", "No face was found"):
            expect(page.get_by_text(leftover)).to_have_count(0)
        expect(page.get_by_role("button", name="PDF report", exact=True)).to_have_count(0)
        expect(page.get_by_label("Title or note (optional, kept with the analysis)")).to_have_value("")
        page.get_by_role("link", name="History").first.click()
        page.get_by_role("heading", name="History", exact=True).wait_for()
        page.wait_for_timeout(1000)
        expect(page.get_by_text(secret_title)).to_have_count(0)


def _replayed(browser, url: str, cookie: str) -> bool:
    """Whether a fresh browser holding only this session cookie gets in."""
    context, page = new_page(browser, [{"name": COOKIE_NAME, "value": cookie, "url": url}])
    page.goto(url)
    page.get_by_text("Signed in as").or_(page.get_by_role("tab", name="Log in")).first.wait_for()
    inside = page.get_by_text("Signed in as").count() > 0
    context.close()
    return inside


def test_cookie_saved_before_logout_or_password_change_no_longer_logs_in(chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    new_password = "alice-copper-violin9"
    with fresh_server(tmp_path / "server", (ALICE,)) as url, launch_chromium(chromium_path) as browser:
        context, page = new_page(browser)
        page.goto(url)
        log_in(page, ALICE)
        wait_for_cookie(context, present=True)
        before_logout = session_cookie(context)
        assert _replayed(browser, url, before_logout)  # a live cookie works from another browser
        log_out(page)
        assert not _replayed(browser, url, before_logout)

        log_in(page, ALICE)
        wait_for_cookie(context, present=True)
        before_change = session_cookie(context)
        assert before_change != before_logout and _replayed(browser, url, before_change)
        page.get_by_role("link", name="Account").first.click()
        page.get_by_role("heading", name="Account").wait_for()
        page.get_by_label("Current password").fill(ALICE[2])
        page.get_by_label("New password", exact=True).fill(new_password)
        page.get_by_label("Repeat new password").fill(new_password)
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_text("Password changed.")).to_be_visible()
        assert not _replayed(browser, url, before_change)
        # This session goes on, under a renewed cookie that works.
        page.wait_for_function(f"!document.cookie.includes({before_change!r})")
        renewed = session_cookie(context)
        assert renewed and renewed != before_change and _replayed(browser, url, renewed)
        page.reload()
        expect(page.get_by_text("Signed in as")).to_be_visible()
