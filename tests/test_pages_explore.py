"""AppTests of the dataset explorer and model comparison pages, with the dataset present and absent."""

from __future__ import annotations

import ast
import html
import json
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from emotion import config, default_model_name, list_models
from studio import comparison
from tests.test_comparison import write_models, write_tiny_tflite

# Page flows under AppTest (a second or more each): the full suite runs them, the fast loop does not.
pytestmark = pytest.mark.slow

EXPLORER = str(config.REPO_ROOT / "pages" / "dataset_explorer.py")
COMPARISON = str(config.REPO_ROOT / "pages" / "model_comparison.py")


@pytest.fixture
def no_dataset(tmp_path, monkeypatch):
    """Point every dataset location at an empty folder."""
    monkeypatch.setattr(config, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(config, "SHARED_DIR", tmp_path / "shared")
    assert config.find_fer2013_csv() is None


@pytest.fixture
def fer_present(fer2013_csv, monkeypatch):
    monkeypatch.setattr(config, "DATA_DIR", fer2013_csv.parent)
    assert config.find_fer2013_csv() is not None
    return fer2013_csv


def _texts(at: AppTest) -> str:
    parts = [e.value for group in (at.info, at.warning, at.caption, at.markdown, at.error) for e in group]
    return "\n".join(str(p) for p in parts)


def _urls(at: AppTest) -> list[str]:
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _open_tab(at: AppTest, label: str) -> AppTest:
    """Click a tab of the explorer: only the open tab's content runs (a user's click sets the same key)."""
    at.session_state["eda_tab"] = label  # pages/dataset_explorer.py's TAB_KEY (importing a page runs it)
    return at.run()


def test_explorer_without_dataset_shows_help_and_derived_stats(no_dataset):
    at = AppTest.from_file(EXPLORER, default_timeout=60).run()
    assert not at.exception
    assert config.FER2013_MISSING_HELP in [w.value for w in at.warning]
    assert [t.label for t in at.tabs] == [
        "Classes",
        "Samples",
        "Mean faces",
        "Brightness & contrast",
        "Duplicates & blanks",
    ]
    assert _metrics(at)["Imbalance, Training"] == "16.5 : 1"
    assert not at.get("plotly_chart")  # the open tab's class bars are SVG; the other tabs run when opened
    assert sum("Images per class: Training: angry 3,995" in m.value for m in at.markdown) == 1
    assert "<td>3,995</td>" in "".join(h.proto.body for h in at.get("html"))  # the table, angry in Training
    assert "Exact duplicate groups" not in _metrics(at)
    assert _metrics(_open_tab(at, "Duplicates & blanks"))["Exact duplicate groups"] == "1,516"
    assert "Sample images need the dataset itself" in _texts(_open_tab(at, "Samples"))
    assert len(_open_tab(at, "Brightness & contrast").get("plotly_chart")) == 2  # brightness, contrast
    # No image of the dataset is shipped, not even mean faces: they need the data.
    _open_tab(at, "Mean faces")
    assert not at.exception
    assert not at.get("image") and any("need the dataset on this machine" in i.value for i in at.info)


def test_explorer_folder_dataset(no_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_DATASET_ROOTS", str(tmp_path))
    rng = np.random.default_rng(0)
    for label in ("anger", "contempt", "happy"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (50 + 20 * i, 70, 3), dtype=np.uint8)).save(
                tmp_path / "photos" / label / f"{i}.jpg"
            )
    at = AppTest.from_file(EXPLORER, default_timeout=60).run()
    at.radio[0].set_value("Folder on this machine").run()
    assert not at.exception and "Type the path" in _texts(at)
    at.text_input[0].input("/etc").run()
    assert "only reads datasets inside" in _texts(at)
    at.text_input[0].input(str(tmp_path / "nowhere")).run()
    assert "does not exist" in _texts(at)
    at.text_input[0].input(str(tmp_path / "photos")).run()
    assert not at.exception
    assert "Sizes & colour modes" in [t.label for t in at.tabs]
    assert "photos: 12 images, 3 classes" in _texts(at)
    assert _metrics(_open_tab(at, "Sizes & colour modes"))["Colour modes"] == "RGB"
    _open_tab(at, "Samples").button[0].click().run()  # reshuffle
    assert not at.exception
    markdown = [m.value for m in at.markdown]
    assert "**angry** (4 images)" in markdown and not any("1 images" in m for m in markdown)


def test_explorer_never_reads_the_users_saved_pictures(no_dataset, tmp_path, monkeypatch):
    """The store's media folder (one folder of annotated faces per user) lies under a dataset root by
    default; typed as a dataset, or through a folder holding it, it is refused like any outside path."""
    monkeypatch.setenv("EMOTION_DATASET_ROOTS", str(tmp_path))
    monkeypatch.setenv("EMOTION_MEDIA_DIR", str(tmp_path / "store" / "media"))
    for user in ("1", "2"):
        (tmp_path / "store" / "media" / user).mkdir(parents=True)
        Image.new("RGB", (60, 60), 90).save(tmp_path / "store" / "media" / user / "face.jpg")
    at = AppTest.from_file(EXPLORER, default_timeout=60).run()
    at.radio[0].set_value("Folder on this machine").run()
    for typed in (tmp_path / "store" / "media", tmp_path / "store" / "media" / "2", tmp_path / "store"):
        at.text_input[0].input(str(typed)).run()
        assert not at.exception and "never the folder of the studio's saved analyses" in _texts(at)
        assert "Samples" not in [t.label for t in at.tabs]


def test_explorer_counts_one_image_in_the_singular(no_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_DATASET_ROOTS", str(tmp_path))
    for label, count in (("happy", 1), ("sad", 2)):
        (tmp_path / "tiny" / label).mkdir(parents=True)
        for i in range(count):
            Image.new("L", (48, 48), 40 + 80 * i).save(tmp_path / "tiny" / label / f"{i}.png")
    at = AppTest.from_file(EXPLORER, default_timeout=60).run()
    at.radio[0].set_value("Folder on this machine").run()
    at.text_input[0].input(str(tmp_path / "tiny")).run()
    assert not at.exception
    markdown = [m.value for m in _open_tab(at, "Samples").markdown]
    assert "**happy** (1 image)" in markdown and "**sad** (2 images)" in markdown
    assert "tiny: 3 images, 2 classes" in _texts(at)


def _magic_expressions(path: Path) -> list[str]:
    """Expression statements Streamlit's magic would render (st.write) in a page: anything but a
    call, a yield/await or a docstring, e.g. `f(x) if c else st.info(...)`, whose value (None, or a
    DeltaGenerator's help text) ends up on the page."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            for i, stmt in enumerate(body if isinstance(body, list) else []):  # a lambda's body is no list
                if not isinstance(stmt, ast.Expr) or isinstance(
                    stmt.value, ast.Call | ast.Yield | ast.YieldFrom | ast.Await
                ):
                    continue
                if i == 0 and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                    continue  # a docstring
                found.append(f"{path.name}:{stmt.lineno}: {ast.unparse(stmt)[:80]}")
    return found


def test_no_page_has_an_expression_that_magic_would_render(tmp_path):
    files = [config.REPO_ROOT / "app.py", *sorted((config.REPO_ROOT / "pages").glob("*.py"))]
    assert len(files) > 5
    assert [hit for f in files for hit in _magic_expressions(f)] == []
    # The scan finds the explorer's old bug (and a docstring or a plain call is not flagged).
    old = tmp_path / "old.py"
    old.write_text(
        '"""doc"""\nimport streamlit as st\nst.info("x")\nwith st.container():\n    f(1) if ds else st.info("y")\n'
    )
    assert _magic_expressions(old) == ["old.py:5: f(1) if ds else st.info('y')"]


@pytest.mark.shared
@pytest.mark.slow
def test_explorer_on_fer2013_cold_and_warm(fer_present, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")  # cold: an empty cache
    st.cache_resource.clear()
    st.cache_data.clear()
    started = time.perf_counter()
    at = AppTest.from_file(EXPLORER, default_timeout=120).run()
    cold = time.perf_counter() - started
    assert not at.exception and not at.warning
    assert "FER2013: 35,887 images, 7 classes" in _texts(at)
    started = time.perf_counter()
    at.run()
    warm = time.perf_counter() - started
    with capsys.disabled():
        print(f"\ndataset explorer on FER2013 (AppTest): cold {cold:.2f} s, warm {warm:.2f} s")
    # Printed, not asserted: speed is measured by scripts/benchmark_explorer.py on a quiet machine.
    metrics = _metrics(_open_tab(at, "Duplicates & blanks"))
    assert metrics["Blank images"] == "12" and metrics["Same image, two labels"] == "57"
    at.slider[0].set_value(5).run()  # near-duplicate threshold
    assert "Near-duplicate pairs (≤5 bits)" in _metrics(at)
    before = _urls(_open_tab(at, "Samples"))
    at.button[0].click().run()  # reshuffle the samples
    assert _urls(at) != before


@pytest.mark.shared
def test_explorer_first_view_of_fer2013_reads_the_shipped_numbers(fer_present, tmp_path, monkeypatch):
    """The shipped summary matches the real file: the Classes tab parses nothing; Samples does."""
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(EXPLORER, default_timeout=120).run()
    assert not at.exception
    assert "FER2013: 35,887 images, 7 classes" in _texts(at)
    assert _metrics(at)["Imbalance, Training"] == "16.5 : 1"
    assert not (tmp_path / "cache").exists()  # neither parsed nor cached
    _open_tab(at, "Samples")
    assert not at.exception and len(at.get("image")) == 7 and any((tmp_path / "cache").iterdir())


def test_explorer_parses_a_fer2013_file_the_shipped_numbers_do_not_describe(no_dataset, tmp_path, monkeypatch):
    from tests.support import csv_bytes_for_tests

    rng = np.random.default_rng(0)
    rows = [(k % 7, rng.integers(0, 256, 2304), ("Training", "PublicTest", "PrivateTest")[k % 3]) for k in range(42)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fer2013.csv").write_bytes(csv_bytes_for_tests(rows))
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")
    at = AppTest.from_file(EXPLORER, default_timeout=60).run()
    assert not at.exception
    assert "FER2013: 42 images, 7 classes" in _texts(at)  # its own numbers, not the shipped 35,887
    assert _metrics(_open_tab(at, "Duplicates & blanks"))["Exact duplicate groups"] == "0"


def test_comparison_with_no_model(no_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "empty")
    at = AppTest.from_file(COMPARISON, default_timeout=60).run()
    assert not at.exception
    assert "No model is registered yet" in _texts(at)
    assert len(at.dataframe) == 1  # published results, all quoted


@pytest.mark.slow
def test_comparison_with_models(no_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MODELS_DIR", write_models(tmp_path / "models"))
    at = AppTest.from_file(COMPARISON, default_timeout=60).run()
    assert not at.exception
    assert "Not evaluated yet (no metrics.json): gamma" in _texts(at)
    table = at.dataframe[0].value
    assert sorted(table.index) == ["alpha", "beta", "committee", "gamma"]
    assert [t.label for t in at.tabs][:5] == ["Per-class F1", "Confusion matrices", "Accuracy vs latency",
                                             "Training curves", "Published results"]  # fmt: skip
    assert "Show lineage checkpoints" not in [t.label for t in at.toggle]  # nothing to fold
    at.selectbox[1].set_value("committee").run()
    at.radio[0].set_value("Row-normalised %").run()
    at.toggle(key="f1_tta").set_value(True).run()
    shown = at.dataframe[0].proto
    assert list(shown.column_order) == list(comparison.KEY_COLUMNS) and "Latency ms/face" in shown.column_order
    assert json.loads(shown.columns)["_index"]["pinned"] is True  # the model name stays in view
    at.toggle(key="all_columns").set_value(True).run()
    every = list(at.dataframe[0].proto.column_order)
    assert every[: len(comparison.KEY_COLUMNS)] == list(comparison.KEY_COLUMNS) and "Parameters" in every
    at.radio[1].set_value("loss").run()
    assert not at.exception
    assert "The most confident mistakes need FER2013" in _texts(at)


def test_comparison_folds_lineage_checkpoints(no_dataset, tmp_path, monkeypatch):
    from tests.test_comparison import _write_lineage_models

    root = tmp_path / "models"
    _write_lineage_models(root)
    monkeypatch.setattr(config, "MODELS_DIR", root)
    at = AppTest.from_file(COMPARISON, default_timeout=60).run()
    assert not at.exception
    # Family order, checkpoints folded, except the app's default (the checkpoint s here: best on PublicTest).
    assert default_model_name() == "s"
    assert list(at.dataframe[0].value.index) == ["wide", "s", "small", "board"]
    assert "from scratch, the app's default (s) and the committees. Folded: r, q, p, t." in _texts(at)
    at.toggle(key="show_checkpoints").set_value(True).run()
    assert not at.exception
    assert list(at.dataframe[0].value.index) == ["wide", "s", "r", "q", "p", "small", "t", "board"]


def test_comparison_on_the_shipped_models(no_dataset):
    """The real models/ folder: every model has a family, the table and every chart draw."""
    at = AppTest.from_file(COMPARISON, default_timeout=60).run()
    assert not at.exception
    folded = at.dataframe[0].value
    at.toggle(key="show_checkpoints").set_value(True).run()
    full = at.dataframe[0].value
    assert len(folded) < len(full) == len(list_models())
    assert not folded["Family"].isna().any() and len(at.get("plotly_chart")) >= 3
    axes = [json.loads(chart.proto.spec)["layout"].get("xaxis", {}) for chart in at.get("plotly_chart")]
    latency_axis = next(axis for axis in axes if axis.get("type") == "log")
    ticks = [float(t) for t in latency_axis["ticktext"]]
    assert ticks == [t for t in (0.2, 0.5, 1, 2, 5, 10, 20, 50) if ticks[0] <= t <= ticks[-1]] and len(ticks) >= 3


@pytest.mark.shared
@pytest.mark.slow
def test_comparison_confident_mistakes(fer_present, tmp_path, monkeypatch):
    root = write_models(tmp_path / "models")
    write_tiny_tflite(root / "tiny")
    monkeypatch.setattr(config, "MODELS_DIR", root)
    at = AppTest.from_file(COMPARISON, default_timeout=180).run()
    assert not at.exception
    at.selectbox(key="mistakes_model").set_value("tiny").run()
    next(b for b in at.button if b.label == "Find mistakes").click().run()
    assert not at.exception
    assert "of 3,589 PrivateTest faces right" in _texts(at)
    assert sum(m.value.startswith("**true:") for m in at.markdown) == 7  # one gallery per true class
    assert len(at.get("image")) >= 5  # an untrained model is right about the class it always predicts


def test_a_damaged_fer2013_file_is_reported_not_raised(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "fer2013"
    folder.mkdir(parents=True)
    (folder / "fer2013.csv.gz").write_bytes(b"\x1f\x8b\x08\x00 this is not gzip data " * 50)
    monkeypatch.setattr(config, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(config, "SHARED_DIR", tmp_path / "none")
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")
    st.cache_resource.clear()
    at = AppTest.from_file(EXPLORER, default_timeout=60).run()
    assert not at.exception
    shown = [html.unescape(e.value).replace("\u2060", "") for e in at.error]  # show_error escapes markdown
    assert any("fer2013.csv.gz cannot be read: " in text and "cannot be decompressed" in text for text in shown)
