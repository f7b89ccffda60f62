"""Helpers every page uses: the logged-in user, the store, plain-text messages, and the page list
that app.py navigates and the home page links to; and what several pages share: emotion colours,
the installed models, the PDF/JSON download pair and the cached FER2013 arrays.

Two rules of the app live here, so that no page has to remember them:

* The gate. Only app.py's st.navigation runs a page. On a fresh server Streamlit's legacy
  ``pages/`` mode would run a page file requested by URL without app.py (and list app and common in
  the sidebar). Every page imports from this module first, and this module's attributes refuse to be
  read in such a run: the legacy mode is switched off for the process and the run restarts, now
  through app.py, whose login decides (a deep link then lands on its page after login). The sidebar
  list of Streamlit's own navigation is off (.streamlit/config.toml); app.py draws its own.
* One session lifecycle. Logging in, out, or as someone else empties st.session_state of every key
  but the authentication ones (``reset_session``), whichever page put them there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitAPIException
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

import emotion
from studio import auth, reports
from studio.store import Store, User, get_store

if TYPE_CHECKING:
    from emotion.datasets import ImageSet

APP_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)

# session_state keys that survive reset_session: streamlit-authenticator's, and ours below.
LIBRARY_AUTH_KEYS = frozenset({"name", "username", "authentication_status", "email", "roles", "logout"})
# The script that writes the latest change to the session cookie (set at login, deleted at logout);
# app.py renders it on every run until the next change.
COOKIE_SCRIPT_KEY = "_auth_cookie_script"
SESSION_KEY = "_auth_session"  # (account id, session version) this session runs under: Store.session_of
# A message for the login page after the session ended on purpose (the account was deleted).
FAREWELL_KEY = "_auth_farewell"
AUTH_KEYS = LIBRARY_AUTH_KEYS | {COOKIE_SCRIPT_KEY, SESSION_KEY, FAREWELL_KEY}
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


PAGES = (
    PageSpec("pages/home.py", "", "Home", ":material/home:", "Main menu and recent activity"),
    PageSpec("pages/classify.py", "Analyze", "Photo", ":material/photo_camera:", "Emotions in a photo or snapshot"),
    PageSpec("pages/live.py", "Analyze", "Live & video", ":material/videocam:", "Webcam in real time, or a video"),
    PageSpec("pages/dataset_explorer.py", "Explore", "Dataset", ":material/dataset:", "FER2013 explored"),
    PageSpec("pages/model_comparison.py", "Explore", "Models", ":material/leaderboard:", "Compare trained models"),
    PageSpec("pages/history.py", "You", "History", ":material/history:", "Your saved analyses"),
    PageSpec("pages/account.py", "You", "Account", ":material/person:", "Profile, password and your data"),
)


def counted(n: int, word: str, plural: str | None = None) -> str:
    """ "1 face", "2 faces", "1,234 images", "0 analyses" (plural: when not word + "s")."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


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
    """The logged-in user (set by app.py); otherwise a message and st.stop(). The gate (above) already
    keeps a visitor who is not logged in away from every page; this is the pages' second line."""
    user = st.session_state.get("user")
    if user is None or not hasattr(user, "username"):  # duck-typed: survives a module reload
        st.warning("Please log in first: open the studio's start page.")
        st.stop()
    return user


# --- session lifecycle ------------------------------------------------------------------------------


def reset_session(keep: frozenset[str] = AUTH_KEYS) -> int:
    """Delete every session_state key but ``keep`` (results, uploads, Grad-CAM, downloads, filters,
    widget values of any page); returns how many went. Called at login, logout and user switch."""
    doomed = [key for key in list(st.session_state.keys()) if key not in keep]
    for key in doomed:
        with suppress(KeyError, StreamlitAPIException):
            del st.session_state[key]
    return len(doomed)


def cookie_script(assignment: str) -> str:
    """A <script> that assigns document.cookie: site-wide, SameSite=Strict, and Secure when the page
    came over HTTPS (behind the reverse proxy docs/DEPLOY.md describes), so that it never travels in clear."""
    literal = json.dumps(f"{assignment}; path=/; SameSite=Strict").replace("<", "\\u003c")
    return f'<script>document.cookie = {literal} + (location.protocol === "https:" ? "; Secure" : "");</script>'


def issue_session_cookie(username: str, session: tuple[int, int]) -> None:
    """Run this session under ``session`` (the account's id and session version) and have the browser
    store a cookie for it (written by app.py's next run; see studio.auth for the lifetime and the
    revocation rule)."""
    token, expires = auth.issue_session_token(username, session, auth.cookie_key())
    when = format_datetime(datetime.fromtimestamp(expires, UTC), usegmt=True)
    st.session_state[SESSION_KEY] = session
    st.session_state[COOKIE_SCRIPT_KEY] = cookie_script(f"{auth.COOKIE_NAME}={token}; expires={when}")


def delete_session_cookie() -> None:
    """Have the browser drop the session cookie (app.py's next run writes it)."""
    st.session_state.pop(SESSION_KEY, None)
    st.session_state[COOKIE_SCRIPT_KEY] = cookie_script(f"{auth.COOKIE_NAME}=; expires=Thu, 01 Jan 1970 00:00:00 GMT")


def renew_session(user: User) -> None:
    """After this session revoked the account's earlier sessions (a password change): keep it, under
    the new session version, with a fresh cookie."""
    session = get_store().session_of(user.username)
    if session is not None:
        issue_session_cookie(user.username, session)


def client_id() -> str:
    """Who is calling, for the login backoff: the client's IP address as the server sees it."""
    try:
        address = st.context.ip_address
    except (AttributeError, RuntimeError):
        return auth.UNKNOWN_CLIENT
    return address if isinstance(address, str) and address else auth.UNKNOWN_CLIENT  # None for localhost tests


def store() -> Store:
    """The process's store for the configured database path."""
    return get_store()


@contextmanager
def working(text: str) -> Iterator[None]:
    """`text` shown, still, where the block's output goes while it runs, and gone after it: the photo
    page's stand-in for st.spinner.

    Still, not spinning: st.spinner's CSS animation kept a software-rendered Chromium tab busy at about a
    tenth of a core for as long as it was shown (0.48 CPU-s over a 5 s wait, against 0.09 s without it;
    docs/DEPLOY.md), CPU that browsers sharing the server's cores take from it. Streamlit's own
    "running" indicator at the top of the page still moves."""
    slot = st.empty()
    slot.caption(f":material/hourglass_top: {text}")
    try:
        yield
    finally:
        slot.empty()


def show_error(message: str) -> None:
    """st.error with the message as plain text; `code spans` are kept, nothing else is interpreted."""
    parts = _CODE_SPAN.split(str(message))
    st.error("".join(part if i % 2 else md_escape(part) for i, part in enumerate(parts)))


def utc_time(iso: str) -> str:
    """An ISO-8601 time (as the store keeps them) as 'YYYY-MM-DD HH:MM UTC'."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def rgb_css(label: str) -> str:
    """An emotion's colour as CSS, 'rgb(r,g,b)'."""
    r, g, b = emotion.color_for(label)
    return f"rgb({r},{g},{b})"


def label_colors(labels: list[str] | tuple[str, ...]) -> dict[str, str]:
    """{label: CSS colour}, for plotly's color_discrete_map."""
    return {label: rgb_css(label) for label in labels}


# Streamlit dims the elements a rerun has not redrawn yet ("stale") half a second into the run, with a
# one-second fade. In a tab drawn without a GPU (a browser without graphics acceleration, every headless
# one) that fade kept the tab and Chromium's compositor repainting for as long as the run lasted: 0.4
# CPU-s over a 5 s run, against 0.1 with a step instead (docs/DEPLOY.md, session 28), taken from the
# server when browsers share its cores. Stale elements still dim after the same half second, at once.
STALE_WITHOUT_FADE_CSS = ".stElementContainer {transition-duration: 0s !important;}"


def stale_without_fade() -> None:
    """STALE_WITHOUT_FADE_CSS on the page (a style-only st.html: it takes no room), once per run."""
    st.html(f"<style>{STALE_WITHOUT_FADE_CSS}</style>")


PRELOAD_KEY = "result-elements-preload"


def preload_result_elements() -> None:
    """Have the browser fetch and compile the parts of Streamlit's frontend that a result is the first to
    use (pictures, HTML in markdown for the plane, download buttons: each a separate script, loaded the
    first time an element of its kind is shown) while the user is still choosing a photo, so that their
    first result does not wait for them: one element of each kind, in a container kept out of sight."""
    st.html(f"<style>.st-key-{PRELOAD_KEY} {{display: none;}}</style>")
    with st.container(key=PRELOAD_KEY):
        st.image(np.full((1, 1, 3), 255, np.uint8))
        st.markdown("<svg></svg>", unsafe_allow_html=True)
        st.download_button("-", b"", file_name="empty", key=f"{PRELOAD_KEY}-download", disabled=True)


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


@st.cache_resource(show_spinner=False)
def start_cache_warmup() -> list[threading.Thread]:
    """Once per server process, in background threads (no st.* in them): fill the explorer's FER2013
    cache (the parse runs in a child process, see studio.eda.warm_fer2013_cache) and import what the
    chart pages need, so that their first visitors read instead of waiting; none when EMOTION_WARM_CACHE=0."""
    from emotion import config
    from studio import eda

    if not config.warm_cache_enabled():
        return []

    def warm_fer2013() -> None:
        try:
            if eda.warm_fer2013_cache(in_child=True):
                log.info("FER2013 cache filled in the background")
        except (OSError, ValueError):
            log.exception("FER2013 cache warm-up failed: the explorer will parse the file on its first visit")

    def warm_imports() -> None:
        # The pages' heavy imports and plotly's figure machinery (validators load on the first figure):
        # without this, the first visitor of a chart page waited for them.
        import pandas  # noqa: F401
        import plotly.express as px

        from studio import comparison, figures  # noqa: F401

        px.bar(x=["a"], y=[1]).to_plotly_json()

    threads = [threading.Thread(target=target, name=f"warm-up-{target.__name__[5:]}", daemon=True)
               for target in (warm_fer2013, warm_imports)]  # fmt: skip
    for thread in threads:
        thread.start()
    return threads


@st.cache_resource(show_spinner=False, max_entries=2)
def fer2013_arrays(path: str, mtime_ns: int, size: int) -> ImageSet:
    """FER2013 arrays (read-only, shared between sessions and pages); keyed by path, mtime and size."""
    from emotion import datasets

    return datasets.load_fer2013(Path(path))


# --- the gate ---------------------------------------------------------------------------------------


def _legacy_pages_run() -> bool:
    """Whether this script run is Streamlit's legacy pages/ mode: its runner calls ``_mpa_v1`` (which
    builds a navigation of every file in pages/ and runs the one the URL names) instead of app.py."""
    if get_script_run_ctx(suppress_warning=True) is None:  # not in a Streamlit run (tests, scripts)
        return False
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_mpa_v1" and "streamlit" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def _gate() -> None:
    """Refuse a legacy pages/ run: leave that mode for the whole process and restart the run, which
    then goes through app.py (its login, then the page the URL asked for)."""
    if _legacy_pages_run():
        PagesManager.uses_pages_directory = False  # what st.navigation does; app.py calls it every run
        log.info("a page was requested before app.py ran: rerouted through app.py's login")
        st.rerun()


class _GatedModule(types.ModuleType):
    """This module, whose public names can only be read in a run that app.py navigates. Every page
    starts with ``from pages.common import ...`` (tests/test_app_auth.py checks), so a page run by
    anything else stops there, before it renders anything."""

    def __getattribute__(self, name: str) -> object:
        if not name.startswith("_"):
            _gate()
        return super().__getattribute__(name)


sys.modules[__name__].__class__ = _GatedModule
