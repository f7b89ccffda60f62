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
