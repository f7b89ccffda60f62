"""Walk every page and every tab of the studio in headless Chromium (`streamlit run app.py`, logged
in), in both data states: no dataset anywhere (a new user's first visit) and FER2013 in ../shared.
Each page and tab fails the test on a traceback or an exception box, on Streamlit's help output (a
magic-rendered DeltaGenerator), on a bare "None" element (a magic-rendered return value), on the
app's "something went wrong" message, or on a request to another host. A screenshot of each page
and tab is saved (EMOTION_SCREENSHOT_DIR keeps them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pages.common import PAGES
from tests.browser_support import screenshot_dir
from tests.conftest import FER2013_CSV, require_shared
from tests.test_browser_offline import TIMEOUT_MS, log_in, recorded_page, settle, studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]
FORBIDDEN_TEXT = ("Traceback", "DeltaGenerator", "Creator of Delta protobuf messages",
                  "Sorry, something went wrong on this page")  # fmt: skip
# Elements whose whole visible text is "None": what st.write / magic make of a function's None.
BARE_NONE_JS = """() => [...document.querySelectorAll('[data-testid="stMain"] *')]
  .filter(el => el.children.length === 0 && el.innerText && el.innerText.trim() === 'None')
  .map(el => el.outerHTML.slice(0, 200))"""


def check_page(page, where: str) -> None:
    """Fail on anything a user must never see (see the module docstring)."""
    text = page.locator('[data-testid="stMain"]').inner_text()
    for needle in FORBIDDEN_TEXT:
        assert needle not in text, f"{where}: {needle!r} on the page"
    assert page.locator('[data-testid="stException"]').count() == 0, f"{where}: an exception box"
    bare = page.evaluate(BARE_NONE_JS)
    assert not bare, f"{where}: a bare None element: {bare}"


def walk(context, page, url: str, log, shots: Path, state: str) -> list[str]:
    """Log in, then every page of the navigation and every tab on it; returns what was visited."""
    visited = []
    page.goto(url)  # the login page and its tabs first
    page.get_by_role("tab", name="Log in").wait_for()
    settle(page)
    for k, name in enumerate(("Log in", "Create account")):
        page.get_by_role("tab", name=name).click()
        page.wait_for_timeout(400)
        check_page(page, f"{state}/login/{name}")
        log.check_dom(page)
        page.screenshot(path=str(shots / f"{state}_login_tab{k}.png"), full_page=True)
    log_in(context, page, url)
    nav = page.locator('[data-testid="stSidebar"]')
    for spec in PAGES:
        nav.get_by_role("link", name=spec.title, exact=True).click()
        page.get_by_role("heading").first.wait_for()
        settle(page)
        where = f"{state}/{spec.title}"
        check_page(page, where)
        log.check_dom(page)
        slug = Path(spec.path).stem
        page.screenshot(path=str(shots / f"{state}_{slug}.png"), full_page=True)
        visited.append(where)
        tabs = page.locator('[data-testid="stMain"]').get_by_role("tab")
        for k in range(tabs.count()):
            tab = tabs.nth(k)
            name = tab.inner_text().strip()
            tab.click()
            page.wait_for_timeout(600)
            settle(page)
            check_page(page, f"{where}/{name}")
            page.screenshot(path=str(shots / f"{state}_{slug}_tab{k}.png"), full_page=True)
            visited.append(f"{where}/{name}")
    log.check()
    return visited


@pytest.mark.parametrize("state", ["no_data", "with_data"])
def test_walk_every_page_and_tab(state, chromium_path, tmp_path, capsys):
    pytest.importorskip("playwright.sync_api")
    empty = str(tmp_path / "empty")
    env = {"EMOTION_DATA_DIR": empty, "EMOTION_CACHE_DIR": str(tmp_path / "cache")}
    if state == "no_data":
        env["EMOTION_SHARED_DIR"] = empty  # no ../shared either: nothing of FER2013 anywhere
    else:
        env["EMOTION_SHARED_DIR"] = str(require_shared(FER2013_CSV).parents[2])
    shots = screenshot_dir(tmp_path / "shots")
    with studio(tmp_path, env) as url, recorded_page(chromium_path, url, height=2400) as (context, page, log):
        page.set_default_timeout(TIMEOUT_MS)
        visited = walk(context, page, url, log, shots, state)
    with capsys.disabled():
        print(f"\n{state}: {len(visited)} pages and tabs walked, screenshots in {shots}")
    titles = {spec.title for spec in PAGES}
    assert {v.split("/")[1] for v in visited} == titles
    assert any("/Dataset/" in v for v in visited) and any("/Models/" in v for v in visited)


def test_the_walk_catches_help_text_and_bare_none(chromium_path):
    """The checks can fail: a page with Streamlit's help text, or a lone None, is caught."""
    pytest.importorskip("playwright.sync_api")
    with recorded_page(chromium_path, "http://127.0.0.1:9") as (_context, page, _log):
        page.set_content('<div data-testid="stMain"><p>DeltaGenerator</p><p>fine</p></div>')
        with pytest.raises(AssertionError, match="DeltaGenerator"):
            check_page(page, "fake")
        page.set_content('<div data-testid="stMain"><div><p>None</p></div><p>None found is fine</p></div>')
        with pytest.raises(AssertionError, match="bare None"):
            check_page(page, "fake")
        page.set_content('<div data-testid="stMain"><p>No None here</p></div>')
        check_page(page, "fake")
