"""The dataset explorer and model comparison pages in headless Chromium, each served on its own by
`streamlit run pages/<page>.py` (the login shell is tested elsewhere). Measures the explorer's
cold (fresh server) and warm (reload) time to interactive on FER2013 and takes screenshots; set
EMOTION_SCREENSHOT_DIR to keep them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.test_comparison import write_models

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
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


def _serve(page: str, env: dict[str, str], log: Path) -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "pages" / page), "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true",
               "--browser.gatherUsageStats", "false"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing (install Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is missing")
    return CHROMIUM


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("EMOTION_SCREENSHOT_DIR", tmp_path / "shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(chromium_path):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _overloaded() -> bool:
    """More than two runnable processes per core: timings then measure the neighbours, not the page."""
    return os.getloadavg()[0] > 2 * (os.cpu_count() or 1)


def _new_page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)  # the CPU may be shared with training and other test runs
    return page


def _ready(page, text: str, timeout_s: float = 60) -> float:
    """Seconds until `text` is visible and Streamlit has stopped running the script."""
    started = time.perf_counter()
    page.get_by_text(text).first.wait_for(state="visible", timeout=timeout_s * 1000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_s * 1000
    )
    return time.perf_counter() - started


@pytest.mark.shared
def test_explorer_on_fer2013_in_browser(browser, fer2013_csv, shots, tmp_path, capsys):
    # A fresh server and an empty data/cache: the first visit parses the CSV (the coldest case).
    env = {"EMOTION_DATA_DIR": str(fer2013_csv.parent), "EMOTION_LOG_DIR": str(tmp_path / "logs"),
           "EMOTION_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    for url in _serve("dataset_explorer.py", env, tmp_path / "server.log"):
        page = _new_page(browser)
        started = time.perf_counter()
        page.goto(url)
        _ready(page, "FER2013: 35,887 images")
        cold = time.perf_counter() - started
        page.wait_for_selector(".js-plotly-plot")
        page.screenshot(path=str(shots / "explorer_classes.png"), full_page=True)
        started = time.perf_counter()
        page.reload()
        _ready(page, "FER2013: 35,887 images")
        warm = time.perf_counter() - started
        with capsys.disabled():
            print(f"\ndataset explorer on FER2013 (Chromium): cold {cold:.2f} s, warm {warm:.2f} s")
        for tab, name in (("Samples", "samples"), ("Mean faces", "faces"), ("Brightness & contrast", "light"),
                          ("Duplicates & blanks", "duplicates")):  # fmt: skip
            page.get_by_role("tab", name=tab).click()
            page.wait_for_timeout(800)
            if name == "duplicates":
                page.locator("summary", has_text="The same image under two labels").click(timeout=60_000)
                page.wait_for_timeout(800)
            page.screenshot(path=str(shots / f"explorer_{name}.png"), full_page=True)
        page.get_by_role("tab", name="Samples").click()
        page.get_by_role("button", name="Reshuffle").click()
        _ready(page, "FER2013: 35,887 images")
        assert page.get_by_text("(4,953 images)").is_visible()
        assert "Traceback" not in page.content()
        if _overloaded():
            print(f"timings not asserted: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        else:
            assert cold < 15 and warm < 3


def test_explorer_without_dataset_in_browser(browser, shots, tmp_path):
    env = {"EMOTION_DATA_DIR": str(tmp_path / "none"), "EMOTION_SHARED_DIR": str(tmp_path / "none"),
           "EMOTION_LOG_DIR": str(tmp_path / "logs")}  # fmt: skip
    for url in _serve("dataset_explorer.py", env, tmp_path / "server.log"):
        page = _new_page(browser)
        page.goto(url)
        _ready(page, "FER2013 was not found")
        page.wait_for_selector(".js-plotly-plot")
        page.get_by_text("FER2013 statistics computed by the project").wait_for()
        page.screenshot(path=str(shots / "explorer_absent.png"), full_page=True)
        assert "Traceback" not in page.content()


def test_model_comparison_in_browser(browser, shots, tmp_path):
    env = {"EMOTION_MODELS_DIR": str(write_models(tmp_path / "models")), "EMOTION_DATA_DIR": str(tmp_path / "none"),
           "EMOTION_SHARED_DIR": str(tmp_path / "none"), "EMOTION_LOG_DIR": str(tmp_path / "logs")}  # fmt: skip
    for url in _serve("model_comparison.py", env, tmp_path / "server.log"):
        page = _new_page(browser)
        page.goto(url)
        _ready(page, "Not evaluated yet")
        page.wait_for_selector(".js-plotly-plot")
        page.screenshot(path=str(shots / "comparison_table.png"), full_page=True)
        for tab, name in (("Confusion matrices", "confusion"), ("Accuracy vs latency", "pareto"),
                          ("Training curves", "curves"), ("Published results", "published")):  # fmt: skip
            page.get_by_role("tab", name=tab).click()
            page.wait_for_timeout(800)
            page.screenshot(path=str(shots / f"comparison_{name}.png"), full_page=True)
        assert "Traceback" not in page.content()


def _nine_class_zip(path: Path) -> Path:
    """A zip of dataset/<class>/*.jpg|png in the 9-class layout: synthetic colour and grey images of mixed sizes."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    classes = ("anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise", "uncertain")
    with zipfile.ZipFile(path, "w") as archive:
        for k, label in enumerate(classes):
            for i in range(3 + k % 3):
                shape = (80 + 40 * i, 100 + 30 * k, 3) if i % 2 == 0 else (96, 96)
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
                    buffer, format="JPEG" if i % 2 == 0 else "PNG"
                )
                archive.writestr(f"dataset/{label}/{i}.{'jpg' if i % 2 == 0 else 'png'}", buffer.getvalue())
    return path


def test_explorer_zip_upload_in_browser(browser, shots, tmp_path):
    env = {"EMOTION_DATA_DIR": str(tmp_path / "none"), "EMOTION_SHARED_DIR": str(tmp_path / "none"),
           "EMOTION_LOG_DIR": str(tmp_path / "logs"), "TMPDIR": str(tmp_path / "tmp")}  # fmt: skip
    (tmp_path / "tmp").mkdir()
    archive = _nine_class_zip(tmp_path / "nine.zip")
    for url in _serve("dataset_explorer.py", env, tmp_path / "server.log"):
        page = _new_page(browser)
        page.goto(url)
        _ready(page, "FER2013 was not found")
        page.get_by_text("Upload a zip").click()
        page.locator("input[type=file]").set_input_files(str(archive))
        _ready(page, "dataset: 36 images, 9 classes")
        page.get_by_role("tab", name="Sizes & colour modes").click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "explorer_zip_sizes.png"), full_page=True)
        page.get_by_text("Distinct sizes").wait_for()
        assert "Traceback" not in page.content()
        assert len(list((tmp_path / "tmp").glob("emotion-eda-*/dataset/*/*"))) == 36
