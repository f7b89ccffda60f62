"""The server defaults in .streamlit/config.toml that keep an idle server quiet."""

from __future__ import annotations

import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml"


def test_file_watcher_is_off():
    server = tomllib.loads(CONFIG.read_text())["server"]
    assert server["fileWatcherType"] == "none"  # watching .venv/ burnt a core with one idle tab
    assert server["runOnSave"] is False


def test_the_setting_is_a_streamlit_option():
    from streamlit import config

    option = config._config_options_template["server.fileWatcherType"]  # a renamed option would be ignored
    assert "none" in option.description


def test_no_full_garbage_collection_after_each_script_run():
    from streamlit import config

    runner = tomllib.loads(CONFIG.read_text())["runner"]
    assert runner["postScriptGC"] is False  # a collection per panel rerun stalled the webcam's threads
    assert "runner.postScriptGC" in config._config_options_template  # still an option Streamlit reads
