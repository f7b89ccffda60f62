"""Regression: the first action right after the page loads, and right after logging in, takes effect.

It used to be lost now and then: streamlit-authenticator's CookieManager (extra_streamlit_components)
rendered components that reported a value back when they mounted and when the cookies changed, i.e.
after every load and login, and each report was a full rerun that preempted the run a click had just
started or sent the app back to the page it showed. And in the server's first run (legacy pages/ mode
until st.navigation) the sidebar's Log out button had an ID that the next run did not know. These
tests act the moment the page shows, with no pause anywhere, on a fresh server each time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from studio import auth
from studio.store import get_store
from tests.browser_support import COOKIE_NAME, launch_chromium, serve_app, session_cookie, wait_for_cookie

pytestmark = [pytest.mark.browser, pytest.mark.slow]
USERNAME, PASSWORD, NAME = "quickuser", "quick-pass-123", "Quick User"
COOKIE_KEY = "first-click-browser-test-cookie-key-" + "x" * 32
TIMEOUT_MS = 60_000  # generous: the machine may be busy; nothing here waits a fixed time


@pytest.fixture
def app_url(isolated_store: Path, tmp_path: Path) -> Iterator[str]:
    """A fresh `streamlit run app.py` (its first session is its first run) over a store with one user."""
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    get_store().create_user(USERNAME, NAME, "quick@example.com", password_hash)
    with serve_app(tmp_path, {"EMOTION_COOKIE_KEY": COOKIE_KEY}) as url:
        yield url


def session_token(username: str) -> str:
    """A session cookie as the studio signs it, for the account and its current session version."""
    return auth.issue_session_token(username, get_store().session_of(username), COOKIE_KEY)[0]


def test_login_at_once_then_navigate_and_submit_at_once(chromium_path: str, app_url: str) -> None:
    """Two sessions (the server's first run, then an ordinary one): log in the moment the form shows,
    open Account the moment the studio shows, and save the profile the moment the page shows."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    with launch_chromium(chromium_path) as browser:
        for round_number in (1, 2):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app_url)
            login = page.get_by_role("tabpanel", name="Log in")
            login.get_by_label("Username", exact=True).fill(USERNAME)
            login.get_by_label("Password", exact=True).fill(PASSWORD)
            login.get_by_role("button", name="Log in").click()
            expect(page.get_by_text("Signed in as")).to_be_visible()

            page.get_by_role("link", name="Account").first.click()
            expect(page.get_by_role("heading", name="Account")).to_be_visible()
            new_name = f"Renamed {round_number}"
            page.get_by_label("Name", exact=True).fill(new_name)
            page.get_by_role("button", name="Save profile").click()
            expect(page.get_by_text("Profile saved.")).to_be_visible()
            expect(page.get_by_text(f"Signed in as {new_name}")).to_be_visible()
            expect(page).to_have_url(re.compile(r"/account$"))
            assert get_store().get_user_by_username(USERNAME).name == new_name
            wait_for_cookie(context, present=True)
            context.close()


def test_log_out_at_once_on_a_fresh_server(chromium_path: str, app_url: str) -> None:
    """A browser that still holds a valid session cookie opens a freshly started server (logged in from
    the cookie in the server's first run) and clicks Log out the moment it shows."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    with launch_chromium(chromium_path) as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": COOKIE_NAME, "value": session_token(USERNAME), "url": app_url}])
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("tab", name="Log in")).to_be_visible()
        wait_for_cookie(context, present=False)
        page.reload()  # the cookie is gone for good: the gate again, not the studio
        expect(page.get_by_role("tab", name="Log in")).to_be_visible()
        assert session_cookie(context) is None
