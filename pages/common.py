"""Helpers every page uses: the logged-in user, the store, plain-text messages, and the page list
that app.py navigates and the home page links to; and what several pages share: emotion colours,
the installed models, the PDF/JSON download pair and the cached FER2013 arrays."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.errors import StreamlitAPIException

import emotion
from studio import reports
from studio.store import Store, User, get_store

if TYPE_CHECKING:
    from studio.eda import ImageSet

APP_ROOT = Path(__file__).resolve().parent.parent
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=\"'^&%@/])")
_CODE_SPAN = re.compile(r"(`[^`\n]+`)")


@dataclass(frozen=True)
class PageSpec:
    """One page of the studio: its file, where it sits in the navigation, and how it is described."""

    path: str
    section: str
    title: str
    icon: str
    description: str

    def exists(self) -> bool:
        """Other people write most pages; a page not written yet is left out of the app."""
        return (APP_ROOT / self.path).is_file()


PAGES = (
    PageSpec("pages/home.py", "", "Home", ":material/home:", "Main menu and recent activity"),
    PageSpec("pages/classify.py", "Analyze", "Photo", ":material/photo_camera:", "Emotions in a photo or snapshot"),
    PageSpec("pages/live.py", "Analyze", "Live & video", ":material/videocam:", "Webcam in real time, or a video"),
    PageSpec("pages/dataset_explorer.py", "Explore", "Dataset", ":material/dataset:", "FER2013 explored"),
    PageSpec("pages/model_comparison.py", "Explore", "Models", ":material/leaderboard:", "Compare trained models"),
    PageSpec("pages/history.py", "You", "History", ":material/history:", "Your saved analyses"),
    PageSpec("pages/account.py", "You", "Account", ":material/person:", "Profile and password"),
)


def md_escape(text: object) -> str:
    """Text shown literally by Markdown elements (no links, images, HTML, directives or maths)."""
    return _MARKDOWN_SPECIAL.sub(_reference, str(text)).replace("\n", "  \n")


def _reference(match: re.Match[str]) -> str:
    """A character reference, with an invisible word joiner (U+2060) before '@', ':' and the dot of
    'www.', because the frontend turns a@b.c, http://x and www.x into links even when escaped."""
    char, before = match.group(), match.string[max(0, match.start() - 3) : match.start()]
    joiner = char in "@:" or (char == "." and before.lower() == "www")
    return ("&#8288;" if joiner else "") + f"&#{ord(char)};"


def require_user() -> User:
    """The logged-in user (set by app.py); otherwise a message and st.stop()."""
    user = st.session_state.get("user")
    if user is None or not hasattr(user, "username"):  # duck-typed: survives a module reload
        # A page URL opened as the server's very first request runs without app.py (Streamlit's legacy
        # pages/ mode, left as soon as app.py calls st.navigation): send the visitor through the gate.
        with suppress(StreamlitAPIException):
            st.switch_page(APP_ROOT / "app.py")
        st.warning("Please log in first: open the studio's start page.")
        st.stop()
    return user


def store() -> Store:
    """The process's store for the configured database path."""
    return get_store()


def show_error(message: str) -> None:
    """st.error with the message as plain text; `code spans` are kept, nothing else is interpreted."""
    parts = _CODE_SPAN.split(str(message))
    st.error("".join(part if i % 2 else md_escape(part) for i, part in enumerate(parts)))


def rgb_css(label: str) -> str:
    """An emotion's colour as CSS, 'rgb(r,g,b)'."""
    r, g, b = emotion.color_for(label)
    return f"rgb({r},{g},{b})"


def label_colors(labels: list[str] | tuple[str, ...]) -> dict[str, str]:
    """{label: CSS colour}, for plotly's color_discrete_map."""
    return {label: rgb_css(label) for label in labels}


def installed_models() -> list[emotion.ModelInfo]:
    """The registered models; when there is none, a message on how to train one and st.stop()."""
    models = emotion.list_models()
    if not models:
        show_error("No model is installed yet: train one with `python -m training.train --model vgg`.")
        st.stop()
    return models


def report_downloads(
    report: Mapping,
    pdf: bytes | Callable[[], bytes],
    document: bytes | str | Callable[[], bytes],
    *,
    labels: tuple[str, str],
    keys: tuple[str, str],
    on_click: str = "ignore",
) -> None:
    """PDF and JSON download buttons side by side, named after the report (reports.report_filename).

    pdf and document are the files' contents, or functions that make them when clicked (deferred)."""
    files = (("pdf", "application/pdf", pdf), ("json", "application/json", document))
    for column, label, key, (extension, mime, data) in zip(st.columns(2), labels, keys, files, strict=True):
        file_name = reports.report_filename(report, extension)
        column.download_button(label, data, file_name=file_name, mime=mime, key=key, on_click=on_click)


@st.cache_resource(show_spinner=False)
def worker_pool() -> ThreadPoolExecutor:
    """The process's pool for the heavy steps of a click (decode, analysis, encodes), shared by sessions:
    at most one a core runs at once, so many users clicking together queue instead of thrashing."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="heavy")


@st.cache_resource(show_spinner=False, max_entries=2)
def fer2013_arrays(path: str, mtime_ns: int, size: int) -> ImageSet:
    """FER2013 arrays (read-only, shared between sessions and pages); keyed by path, mtime and size."""
    from studio import eda  # pandas and friends only for the pages that show the dataset

    return eda.load_fer2013_arrays(Path(path))
