"""The dataset explorer and model comparison pages in headless Chromium, each served on its own by
`streamlit run pages/<page>.py` (the login shell is tested elsewhere). Measures the explorer's
cold (fresh server) and warm (reload) time to interactive on FER2013 and takes screenshots; set
EMOTION_SCREENSHOT_DIR to keep them."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.browser_support import ROOT, launch_chromium, screenshot_dir, serve_streamlit
from tests.test_browser_offline import IDLE_JS
from tests.test_comparison import write_models

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _serve(page: str, env: dict[str, str], log: Path) -> AbstractContextManager[str]:
    """`streamlit run pages/<page>` on its own (no login shell); yields its URL."""
    return serve_streamlit(ROOT / "pages" / page, log, {"PYTHONPATH": str(ROOT), **env})


@pytest.fixture
def shots(tmp_path) -> Path:
    return screenshot_dir(tmp_path / "shots")


@pytest.fixture
def browser(chromium_path):
    pytest.importorskip("playwright.sync_api")
    with launch_chromium(chromium_path) as chromium:
        yield chromium


def _new_page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)  # the CPU may be shared with training and other test runs
    return page


def _ready(page, text: str, timeout_s: float = 60) -> float:
    """Seconds until `text` is visible and Streamlit has stopped running the script."""
    started = time.perf_counter()
    page.get_by_text(text).first.wait_for(state="visible", timeout=timeout_s * 1000)
    page.wait_for_timeout(300)
    page.wait_for_function(IDLE_JS, timeout=timeout_s * 1000)
    return time.perf_counter() - started


@pytest.mark.shared
def test_explorer_on_fer2013_in_browser(browser, fer2013_csv, shots, tmp_path, capsys):
    # A fresh server and an empty data/cache: the first visit parses the CSV (the coldest case).
    env = {"EMOTION_DATA_DIR": str(fer2013_csv.parent), "EMOTION_LOG_DIR": str(tmp_path / "logs"),
           "EMOTION_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    with _serve("dataset_explorer.py", env, tmp_path / "server.log") as url:
        page = _new_page(browser)
        started = time.perf_counter()
        page.goto(url)
        _ready(page, "FER2013: 35,887 images")
        cold = time.perf_counter() - started
        page.wait_for_selector("svg[role=img]")  # the class bars
        page.screenshot(path=str(shots / "explorer_classes.png"), full_page=True)
        started = time.perf_counter()
        page.reload()
        _ready(page, "FER2013: 35,887 images")
        warm = time.perf_counter() - started
        with capsys.disabled():
            print(f"\ndataset explorer on FER2013 (Chromium): cold {cold:.2f} s, warm {warm:.2f} s")
        # Only the open tab runs: each click reruns the page from the cached statistics.
        for tab, name, shown in (("Samples", "samples", "Samples per class"), ("Mean faces", "faces", "Std face"),
                                 ("Brightness & contrast", "light", "Median brightness"),
                                 ("Duplicates & blanks", "duplicates", "Exact duplicate groups")):  # fmt: skip
            page.get_by_role("tab", name=tab).click()
            _ready(page, shown)
            if name == "duplicates":
                page.locator("summary", has_text="The same image under two labels").click(timeout=60_000)
                page.wait_for_timeout(800)
            page.screenshot(path=str(shots / f"explorer_{name}.png"), full_page=True)
        page.get_by_role("tab", name="Samples").click()
        page.get_by_role("button", name="Reshuffle").click()
        _ready(page, "FER2013: 35,887 images")
        assert page.get_by_text("(4,953 images)").is_visible()
        assert "Traceback" not in page.content()
        # Printed, not asserted: speed is measured by scripts/benchmark_explorer.py on a quiet machine.


def test_explorer_without_dataset_in_browser(browser, shots, tmp_path):
    env = {"EMOTION_DATA_DIR": str(tmp_path / "none"), "EMOTION_SHARED_DIR": str(tmp_path / "none"),
           "EMOTION_LOG_DIR": str(tmp_path / "logs")}  # fmt: skip
    with _serve("dataset_explorer.py", env, tmp_path / "server.log") as url:
        page = _new_page(browser)
        page.goto(url)
        _ready(page, "FER2013 was not found")
        page.wait_for_selector("svg[role=img]")  # the shipped class bars
        page.get_by_text("FER2013 statistics computed by the project").wait_for()
        page.screenshot(path=str(shots / "explorer_absent.png"), full_page=True)
        assert "Traceback" not in page.content()


def test_model_comparison_in_browser(browser, shots, tmp_path):
    env = {"EMOTION_MODELS_DIR": str(write_models(tmp_path / "models")), "EMOTION_DATA_DIR": str(tmp_path / "none"),
           "EMOTION_SHARED_DIR": str(tmp_path / "none"), "EMOTION_LOG_DIR": str(tmp_path / "logs")}  # fmt: skip
    with _serve("model_comparison.py", env, tmp_path / "server.log") as url:
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
            chart = page.get_by_role("tabpanel", name=tab).locator(".js-plotly-plot").first
            if name == "pareto":  # a log axis that reads 0.5 1 2 5, not "5 6 7 8 9 1 2"
                ticks = chart.locator(".xaxislayer-above .xtick text").all_text_contents()
                assert ticks == ["0.5", "1", "2", "5"], ticks
            if name == "published":  # plain labels, no Markdown backticks
                labels = chart.locator(".yaxislayer-above .ytick text").all_text_contents()
                assert "mini-Xception (fer package)" in labels and not any("`" in t for t in labels), labels
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
    with _serve("dataset_explorer.py", env, tmp_path / "server.log") as url:
        page = _new_page(browser)
        page.goto(url)
        _ready(page, "FER2013 was not found")
        page.get_by_text("Upload a zip", exact=True).click()
        page.locator("input[type=file]").set_input_files(str(archive))
        _ready(page, "dataset: 36 images, 9 classes")
        page.get_by_role("tab", name="Sizes & colour modes").click()
        _ready(page, "Distinct sizes")
        page.screenshot(path=str(shots / "explorer_zip_sizes.png"), full_page=True)
        assert "Traceback" not in page.content()
        assert len(list((tmp_path / "tmp").glob("emotion-eda-*/dataset/*/*"))) == 36
