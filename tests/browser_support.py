"""What the browser tests share: `streamlit run` on a free localhost port, Debian's Chromium
(/usr/bin/chromium) driven by playwright, and the session cookie. Missing Chromium skips a test, or
fails it under CI=true."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent  # the checkout these tests belong to
CHROMIUM = "/usr/bin/chromium"
COOKIE_NAME = "emotion_studio_session"  # app.COOKIE_NAME (app.py runs the app when imported)
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
FAKE_CAMERA_ARGS = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")


def require_chromium() -> str:
    """CHROMIUM's path; a missing browser skips the test (fails it in CI)."""
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing (install Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is missing")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    """Until Streamlit's health endpoint answers; raises if the server exits or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@contextmanager
def streamlit_server(
    script: Path, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run script` on a free localhost port, with `env` over this process's environment and
    its output in `log`; yields (its URL once it answers, the server process), and stops it afterwards.
    The benchmarks in scripts/ start their servers here too."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    command += ["--server.fileWatcherType", "none"]  # no watching of the checkout (and its .venv) in a test
    with open(log, "wb") as out:
        server = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def serve_streamlit(script: Path, log: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """streamlit_server's URL alone."""
    with streamlit_server(script, log, env) as (url, _server):
        yield url


@contextmanager
def serve_app(workdir: Path, env: Mapping[str, str]) -> Iterator[str]:
    """The whole studio (`streamlit run app.py`, login shell included) with its logs under `workdir`;
    yields its URL, and afterwards fails the test if the server's output has a traceback."""
    log = workdir / "streamlit.log"
    with serve_streamlit(ROOT / "app.py", log, {"EMOTION_LOG_DIR": str(workdir / "logs"), **env}) as url:
        yield url
    text = log.read_text()
    assert "Traceback" not in text, text


@contextmanager
def launch_chromium(executable_path: str = CHROMIUM, extra_args: Sequence[str] = ()) -> Iterator:
    """A headless playwright Browser on Debian's Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable_path, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir(default: Path) -> Path:
    """EMOTION_SCREENSHOT_DIR (to keep the screenshots) or `default`, created."""
    folder = Path(os.environ.get("EMOTION_SCREENSHOT_DIR") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def session_cookie(context) -> str | None:
    """The studio's session cookie in a playwright BrowserContext, if any."""
    return next((c["value"] for c in context.cookies() if c["name"] == COOKIE_NAME), None)


def wait_for_cookie(context, present: bool, timeout: float = 30) -> None:
    """Until the session cookie is there (or gone); the browser writes it a moment after the page shows."""
    deadline = time.monotonic() + timeout
    while (session_cookie(context) is not None) != present:
        if time.monotonic() > deadline:
            raise AssertionError(f"cookie {COOKIE_NAME} {'never set' if present else 'still there'}")
        time.sleep(0.2)
