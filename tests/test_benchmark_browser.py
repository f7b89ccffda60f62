"""The browser benchmark's own helpers, not its timings: where it reads CPU time, and how it waits in a
page (on changes, not by polling)."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.script_support import load_script

bench = load_script("benchmark_browser")
BUSY_CHILD = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\ntime.sleep(60)"


def test_cpu_by_process_kind_counts_a_server_with_its_children() -> None:
    """A "server" whose child burns 0.4 CPU-s: counted as the server's, and the machine was busy as long."""
    busy_before = bench.machine_busy_seconds()
    server = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY_CHILD!r}])"],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while (spent := bench.cpu_by_process_kind(server.pid).get("server", 0.0)) < 0.35:
            assert time.monotonic() < deadline, f"the server's child spent {spent} CPU-s"
            time.sleep(0.1)
        assert bench.machine_busy_seconds() - busy_before >= 0.35
        assert "benchmark script" in bench.cpu_by_process_kind(server.pid)  # this process, apart
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.mark.browser
def test_wait_in_page_returns_on_a_change_or_a_picture_loaded_and_times_out(chromium_path, monkeypatch) -> None:
    png = base64.b64encode(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()).decode()
    seen = {}

    async def run() -> None:
        from playwright.async_api import async_playwright

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path, args=bench.CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.set_content("<p id='note'>waiting</p>")
            await page.evaluate(
                "(png) => setTimeout(() => { document.getElementById('note').textContent = 'done';"
                " const img = new Image(); img.src = 'data:image/png;base64,' + png;"
                " document.body.append(img); }, 300)",
                png,
            )
            seen["before"] = await page.inner_text("#note")
            await bench.wait_in_page(page, "(want) => document.getElementById('note').textContent === want", "done")
            seen["after"] = await page.inner_text("#note")
            await bench.wait_in_page(page, "() => [...document.images].some(i => i.complete && i.naturalWidth === 4)")
            monkeypatch.setattr(bench, "TIMEOUT_MS", 500)
            with pytest.raises(TimeoutError, match="waited"):
                await bench.wait_in_page(page, "() => false")
            await browser.close()

    asyncio.run(run())
    assert seen == {"before": "waiting", "after": "done"}


@pytest.mark.browser
def test_the_checks_after_a_click_read_only_the_live_elements(chromium_path) -> None:
    """CAPTION_JS and PDF_BUTTON_JS (the CSS checks click_analyze waits on) skip what a rerun left stale."""
    page_html = """
      <div data-stale="true"><div data-testid="stCaptionContainer">Answered in 900 ms (old)</div>
        <div data-testid="stDownloadButton"><button>PDF report</button></div></div>
      <div data-testid="stCaptionContainer">Model vgg</div>
      <div id="live"></div>"""
    found = {}

    async def run() -> None:
        from playwright.async_api import async_playwright

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path, args=bench.CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.set_content(page_html)
            found["stale only"] = (await page.evaluate(bench.CAPTION_JS), await page.evaluate(bench.PDF_BUTTON_JS))
            await page.evaluate(
                "() => { document.getElementById('live').innerHTML = '<div data-testid=\"stCaptionContainer\">"
                'Answered in 312 ms (decode 5 ms)</div><div data-testid="stDownloadButton">'
                "<button> PDF report </button></div>'; }"
            )
            found["live"] = (await page.evaluate(bench.CAPTION_JS), await page.evaluate(bench.PDF_BUTTON_JS))
            await browser.close()

    asyncio.run(run())
    assert found == {"stale only": (None, False), "live": ("Answered in 312 ms (decode 5 ms)", True)}


def test_no_user_prepares_the_second_burst_while_the_first_is_still_measured(monkeypatch) -> None:
    """A user whose first answer came early types the second burst's title (a rerun of the whole page) only
    once everyone's first answer is in: else that rerun takes the machine from users still waiting."""
    users = ["fast", "slow"]
    events: list[tuple[str, str]] = []

    class Page:
        def set_default_timeout(self, ms: float) -> None: ...

    class Context:
        async def new_page(self) -> Page:
            return Page()

        async def close(self) -> None: ...

    class Browser:
        async def new_context(self, **_) -> Context:
            return Context()

    async def nothing(*_) -> float:
        return 0.0

    clicks: dict[Page, int] = {}

    async def click_analyze(page: Page) -> dict:
        clicks.setdefault(page, len(clicks))  # the order of the first clicks names the pages
        user = users[clicks[page]]
        await asyncio.sleep(0.05 if user == "fast" else 0.4)
        events.append(("answer", user))
        return {"visible_s": 0.1}

    async def retitle(page: Page, title: str) -> None:
        events.append(("retitle", users[clicks[page]]))

    for name in ("log_in", "open_photo_page", "upload"):
        monkeypatch.setattr(bench, name, nothing)
    monkeypatch.setattr(bench, "click_analyze", click_analyze)
    monkeypatch.setattr(bench, "retitle", retitle)
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        row = asyncio.run(bench.users_row(Browser(), "http://unused", users, None, server))
    finally:
        server.kill()
        server.wait()
    assert row["failures"] == 0 and row["click_to_result_s"]["n"] == 2 and row["again_click_to_result_s"]["n"] == 2
    first_answers = [i for i, event in enumerate(events) if event[0] == "answer"][:2]
    retitles = [i for i, event in enumerate(events) if event[0] == "retitle"]
    assert len(retitles) == 2 and min(retitles) > max(first_answers), events
