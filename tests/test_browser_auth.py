"""The authentication gate in a real headless Chromium: register, log in, reload and stay logged in
(the signed cookie), log out (the cookie goes). Set EMOTION_SCREENSHOT_DIR to keep screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_support import launch_chromium, screenshot_dir, serve_app, wait_for_cookie

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT_MS = 60_000


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    """`streamlit run app.py` on a free localhost port over a fresh database; yields its URL."""
    env = {
        "EMOTION_DB_PATH": str(tmp_path / "data" / "studio.db"),
        "EMOTION_MEDIA_DIR": str(tmp_path / "data" / "media"),
        "EMOTION_COOKIE_KEY": "browser-test-cookie-key-" + "x" * 32,
    }
    with serve_app(tmp_path, env) as url:
        yield url


def screenshot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(screenshot_dir(tmp_path) / f"{name}.png"), full_page=True)


def test_register_login_reload_logout(chromium_path: str, app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with launch_chromium(chromium_path) as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page.goto(app_url)
        expect(page.get_by_role("tab", name="Log in")).to_be_visible()
        expect(page.get_by_role("heading", name="Emotion Studio")).to_be_visible()
        login = page.get_by_role("tabpanel", name="Log in")
        expect(login.get_by_label("Username", exact=True)).to_be_visible()
        page.wait_for_timeout(1000)  # let the page settle before the screenshot
        screenshot(page, tmp_path, "login_page")

        page.get_by_role("tab", name="Create account").click()
        register = page.get_by_role("tabpanel", name="Create account")
        register.get_by_label("Name", exact=True).fill("Browser Tester")
        register.get_by_label("Email").fill("tester@example.com")
        register.get_by_label("Username", exact=True).fill("tester")
        register.get_by_label("Password", exact=True).fill("browser-pass1")
        register.get_by_label("Repeat password").fill("browser-pass1")
        register.get_by_role("button", name="Create account").click()
        expect(page.get_by_text("Welcome, Browser Tester")).to_be_visible()  # registering logs in
        page.get_by_role("button", name="Log out").click()

        expect(page.get_by_role("tab", name="Log in")).to_be_visible()
        login.get_by_label("Username", exact=True).fill("tester")
        login.get_by_label("Password", exact=True).fill("wrong-pass1")
        login.get_by_role("button", name="Log in").click()
        expect(page.get_by_text("Incorrect username or password.")).to_be_visible()
        login.get_by_label("Password", exact=True).fill("browser-pass1")
        login.get_by_role("button", name="Log in").click()
        expect(page.get_by_text("Welcome, Browser Tester")).to_be_visible()
        expect(page.get_by_role("button", name="Log out")).to_be_visible()
        wait_for_cookie(context, present=True)
        page.wait_for_timeout(1000)  # let the page settle before the screenshot
        screenshot(page, tmp_path, "home_page")

        page.get_by_role("link", name="Account").first.click()
        expect(page.get_by_role("heading", name="Account")).to_be_visible()
        expect(page.get_by_label("Email", exact=True)).to_have_value("tester@example.com")
        page.wait_for_timeout(1000)
        screenshot(page, tmp_path, "account_page")

        page.reload()  # a new Streamlit session: logged in again from the signed cookie, same page
        expect(page.get_by_role("heading", name="Account")).to_be_visible()
        expect(page.get_by_text("Browser Tester").first).to_be_visible()
        expect(page.get_by_role("tab", name="Log in")).to_have_count(0)
        page.goto(app_url)
        expect(page.get_by_text("Welcome, Browser Tester")).to_be_visible()

        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("tab", name="Log in")).to_be_visible()
        wait_for_cookie(context, present=False)
        page.reload()
        expect(page.get_by_role("tab", name="Log in")).to_be_visible()
        expect(page.get_by_text("Welcome, Browser Tester")).to_have_count(0)


def test_deep_link_as_first_request_goes_through_the_gate(chromium_path: str, app_url: str) -> None:
    """The server's first request for a page URL (Streamlit's legacy pages/ mode) still meets the login."""
    from playwright.sync_api import expect

    with launch_chromium(chromium_path) as browser:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url + "/account")
        expect(page.get_by_role("tab", name="Log in")).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.get_by_role("heading", name="Account")).to_have_count(0)


def test_download_my_data_then_delete_the_account(chromium_path: str, app_url: str, tmp_path: Path) -> None:
    """Account page: the ZIP arrives in the browser; deleting asks for the password and the username,
    then ends the session (the cookie goes too) and the login no longer knows the account."""
    import json
    import zipfile

    from playwright.sync_api import expect

    with launch_chromium(chromium_path) as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 1400}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page.goto(app_url)
        page.get_by_role("tab", name="Create account").click()
        register = page.get_by_role("tabpanel", name="Create account")
        for label, value in (("Name", "Leaving Soon"), ("Email", "leaving@example.com"), ("Username", "leaver")):
            register.get_by_label(label, exact=True).fill(value)
        register.get_by_label("Password", exact=True).fill("browser-pass1")
        register.get_by_label("Repeat password").fill("browser-pass1")
        register.get_by_role("button", name="Create account").click()
        expect(page.get_by_text("Welcome, Leaving Soon")).to_be_visible()
        wait_for_cookie(context, present=True)
        page.get_by_role("link", name="Account").first.click()
        expect(page.get_by_role("heading", name="Your data")).to_be_visible()

        with page.expect_download() as download:
            page.get_by_role("button", name="Download all my data (ZIP)").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name.startswith("emotion-studio-leaver-") and saved.suffix == ".zip"
        archive = zipfile.ZipFile(saved)
        assert json.loads(archive.read("account.json"))["email"] == "leaving@example.com"
        assert json.loads(archive.read("analyses.json")) == []

        page.get_by_text("Delete my account", exact=True).first.click()
        danger = page.get_by_test_id("stExpander")
        danger.get_by_label("Password", exact=True).fill("not-my-pass1")
        danger.get_by_label("Type your username").fill("leaver")
        danger.get_by_role("button", name="Delete my account").click()
        expect(danger.get_by_text("The password is not correct.")).to_be_visible()
        screenshot(page, tmp_path, "delete_account_refused")
        danger.get_by_label("Password", exact=True).fill("browser-pass1")
        danger.get_by_label("Type your username").fill("leaver")
        danger.get_by_role("button", name="Delete my account").click()
        expect(page.get_by_text("Your account leaver and its 0 analyses were deleted.")).to_be_visible()
        expect(page.get_by_role("tab", name="Log in")).to_be_visible()
        wait_for_cookie(context, present=False)

        login = page.get_by_role("tabpanel", name="Log in")
        login.get_by_label("Username", exact=True).fill("leaver")
        login.get_by_label("Password", exact=True).fill("browser-pass1")
        login.get_by_role("button", name="Log in").click()
        expect(page.get_by_text("Incorrect username or password.")).to_be_visible()


def test_the_session_cookie_is_secure_over_https_only(chromium_path: str) -> None:
    """pages.common.cookie_script in Chromium: over HTTPS the cookie gets Secure (it never travels in
    clear behind a TLS proxy); over plain HTTP (localhost) it must not, or the browser would drop it.
    The pages are served by Playwright's router, so nothing leaves the machine."""
    from pages.common import cookie_script

    script = cookie_script("emotion_studio_session=abc; expires=Fri, 01 Jan 2100 00:00:00 GMT")
    with launch_chromium(chromium_path) as browser:
        context = browser.new_context()
        context.route("**/*", lambda route: route.fulfill(status=200, content_type="text/html", body=script))
        page = context.new_page()
        for origin, secure in (("https://studio.example", True), ("http://localhost:8599", False)):
            page.goto(origin + "/")
            (cookie,) = [c for c in context.cookies(origin) if c["name"] == "emotion_studio_session"]
            assert cookie["secure"] is secure and cookie["sameSite"] == "Strict" and cookie["value"] == "abc"
