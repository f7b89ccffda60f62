"""Offline for real: the studio in headless Chromium asks nothing of any host but its own. Every
request the browser makes is recorded (and any to another host is aborted, so the test never
depends on the network), and the page's icon and every URL in the DOM must be the app's own or
inline (data:, blob:). Helpers here are shared with tests/test_browser_pages.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser_support import launch_chromium, screenshot_dir, serve_app, wait_for_cookie

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT_MS = 90_000
USERNAME, PASSWORD, NAME = "walker", "walker-pass1", "Page Walker"
LOCAL_SCHEMES = ("data", "blob", "about", "chrome-extension", "chrome")
# Every URL-bearing attribute of the DOM; a link to another site would be fine, a load from one is not.
DOM_URLS_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('[src], link[href], [srcset], object[data], [poster]')) {
    for (const attr of ['src', 'href', 'srcset', 'data', 'poster']) {
      const value = el.getAttribute(attr);
      if (value) out.push(el.tagName.toLowerCase() + '@' + attr + '=' + new URL(value, document.baseURI).href);
    }
  }
  for (const frame of document.querySelectorAll('iframe')) {
    try {  // same-origin component iframes (streamlit-webrtc): look inside too
      for (const el of frame.contentDocument.querySelectorAll('[src], link[href]')) {
        const value = el.getAttribute('src') || el.getAttribute('href');
        out.push('iframe>' + el.tagName.toLowerCase() + '=' + new URL(value, frame.contentDocument.baseURI).href);
      }
    } catch (e) { out.push('iframe=cross-origin:' + frame.src); }
  }
  return out;
}"""


class RequestLog:
    """Every URL the browser context asked for, and those that went to another host than `origin`."""

    def __init__(self, origin: str) -> None:
        self.origin = urlsplit(origin).netloc
        self.seen: list[str] = []
        self.foreign: list[str] = []

    def is_local(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in LOCAL_SCHEMES or parts.netloc == self.origin

    def route(self, route) -> None:
        """playwright route handler: record, and abort anything bound for another host."""
        url = route.request.url
        self.seen.append(url)
        if self.is_local(url):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def on_websocket(self, socket) -> None:
        self.seen.append(socket.url)
        if not self.is_local(socket.url):
            self.foreign.append(socket.url)

    def check_dom(self, page) -> None:
        """Fail when the page (and its same-origin iframes) points a load at another host."""
        urls = page.evaluate(DOM_URLS_JS)
        bad = [u for u in urls if not self.is_local(u.split("=", 1)[1]) or u.startswith("iframe=cross-origin")]
        assert not bad, f"loads from another host in the DOM of {page.url}: {bad}"

    def check(self) -> None:
        assert self.seen, "no request recorded: the recorder is not wired"
        assert not self.foreign, f"requests to another host than {self.origin}: {sorted(set(self.foreign))}"


@contextmanager
def studio(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """The whole app over a fresh database holding one account (USERNAME), with `env` on top; yields its URL."""
    from studio import auth
    from studio.store import Store

    db, media = tmp_path / "db" / "studio.db", tmp_path / "db" / "media"
    db.parent.mkdir(parents=True, exist_ok=True)
    auth.register(Store(db, media), username=USERNAME, name=NAME, email="walker@example.com", password=PASSWORD,
                  repeat=PASSWORD)  # fmt: skip
    base = {"EMOTION_DB_PATH": str(db), "EMOTION_MEDIA_DIR": str(media),
            "EMOTION_COOKIE_KEY": "browser-test-cookie-key-" + "w" * 32}  # fmt: skip
    with serve_app(tmp_path, {**base, **env}) as url:
        yield url


@contextmanager
def recorded_page(chromium_path: str, url: str, height: int = 1000) -> Iterator[tuple[object, object, RequestLog]]:
    """A playwright (context, page, RequestLog) whose every request is recorded and kept local. A tall
    `height` gives whole-page screenshots (Streamlit scrolls inside its main block, not the page)."""
    with launch_chromium(chromium_path) as browser:
        context = browser.new_context(viewport={"width": 1400, "height": height})
        log = RequestLog(url)
        context.route("**/*", log.route)
        page = context.new_page()
        page.on("websocket", log.on_websocket)
        page.set_default_timeout(TIMEOUT_MS)
        yield context, page, log


# Streamlit 1.67 marks its root with the script's state ("running" while the page is computed); the
# status widget has no data-testid any more.
IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const state = app && app.getAttribute('data-test-script-state');
  return state && state !== 'running' && state !== 'initial'
    && !document.querySelector('[data-testid="stSpinner"], [data-testid="stSkeleton"]');
}"""


def settle(page, timeout_ms: int = TIMEOUT_MS) -> None:
    """Until Streamlit has finished running the script (no spinner or skeleton left either), twice in
    a row 0.5 s apart (a rerun may follow the first run)."""
    for _ in range(2):
        page.wait_for_timeout(500)
        page.wait_for_function(IDLE_JS, timeout=timeout_ms)
    page.wait_for_timeout(300)


def log_in(context, page, url: str) -> None:
    """Open the studio and log in as USERNAME; returns on the home page."""
    from playwright.sync_api import expect

    page.goto(url)
    login = page.get_by_role("tabpanel", name="Log in")
    login.get_by_label("Username", exact=True).fill(USERNAME)
    login.get_by_label("Password", exact=True).fill(PASSWORD)
    login.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"Welcome, {NAME}")).to_be_visible(timeout=TIMEOUT_MS)
    wait_for_cookie(context, present=True)
    settle(page)


def favicon(page) -> str:
    """The page icon's URL as the browser holds it."""
    return page.evaluate("() => { const l = document.querySelector(\"link[rel*='icon']\"); return l ? l.href : ''; }")


def test_no_request_leaves_the_app_host(chromium_path, tmp_path):
    pytest.importorskip("playwright.sync_api")
    none = str(tmp_path / "none")
    with (
        studio(tmp_path, {"EMOTION_DATA_DIR": none, "EMOTION_SHARED_DIR": none}) as url,
        recorded_page(chromium_path, url) as (context, page, log),
    ):
        page.goto(url)
        page.get_by_role("tab", name="Log in").wait_for()
        settle(page)
        log.check_dom(page)
        log_in(context, page, url)
        icon = favicon(page)
        assert icon and log.is_local(icon), f"page icon from another host: {icon}"
        log.check_dom(page)
        page.screenshot(path=str(screenshot_dir(tmp_path / "shots") / "offline_home.png"), full_page=True)
        log.check()
        assert any(u.startswith(url) for u in log.seen)


def test_the_recorder_catches_a_foreign_request(chromium_path, tmp_path):
    """The check can fail: a page that loads an image from another host is caught (and aborted)."""
    pytest.importorskip("playwright.sync_api")
    with recorded_page(chromium_path, "http://127.0.0.1:9") as (_context, page, log):
        page.set_content(
            '<img src="https://fonts.gstatic.com/s/i/x.svg"><link rel="icon" href="https://example.org/i.png">'
        )
        page.wait_for_timeout(500)
        with pytest.raises(AssertionError, match="another host"):
            log.check_dom(page)
        assert "https://fonts.gstatic.com/s/i/x.svg" in log.foreign
