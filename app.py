"""Facial Emotion Recognition Studio: the entry point (`streamlit run app.py`).

An authentication gate comes first: a login page with a registration form. Logged in, the user gets
the studio's pages through st.navigation. streamlit-authenticator checks passwords against the
credentials dict (loaded from SQLite) and keeps the session in a signed cookie; the forms are our
own so that login backoff applies to every typed username, known or not.
"""

from __future__ import annotations

import copy
import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace

import streamlit as st
import streamlit_authenticator as stauth
from streamlit.runtime.pages_manager import PagesManager
from streamlit_authenticator.models import cookie_model
from streamlit_authenticator.utilities import LoginError

from emotion.logs import setup_logging
from pages.common import APP_ROOT, PAGES, md_escape, show_error
from studio import auth
from studio.store import Store, User, get_store

COOKIE_NAME = "emotion_studio_session"
COOKIE_EXPIRY_DAYS = 7.0
# session_state: the script that writes the latest change to the session cookie (set at login, deleted
# at logout); rendered on every run until the next change.
COOKIE_SCRIPT_KEY = "_auth_cookie_script"

log = logging.getLogger("app")


class BrowserCookies:
    """Stands in for extra_streamlit_components.CookieManager inside streamlit-authenticator 0.4.2.

    That CookieManager renders a bidirectional component ("init") on every run, and "set"/"delete" ones
    on login and logout; each iframe reports its value back when it mounts and whenever the browser's
    cookies change, and every report is a full rerun. Such a rerun preempts the run that a click has
    just started (Streamlit drops its trigger: the click is lost) or, sent with the page the browser
    still shows, overrides a navigation. The library reads the cookie from st.context.cookies, so only
    writing is needed here, and that goes through a plain script (write_session_cookie) that never
    reports back."""

    def __init__(self, key: str = "init") -> None:  # renders nothing, unlike the original
        self.cookies: dict[str, str] = {}

    def set(self, cookie: str, val: str, key: str = "set", expires_at: datetime | None = None, **_: object) -> None:
        expires = (expires_at or datetime.now() + timedelta(days=1)).astimezone(UTC)
        st.session_state[COOKIE_SCRIPT_KEY] = cookie_script(f"{cookie}={val}; expires={format_datetime(expires, True)}")

    def delete(self, cookie: str, key: str = "delete") -> None:
        st.session_state[COOKIE_SCRIPT_KEY] = cookie_script(f"{cookie}=; expires=Thu, 01 Jan 1970 00:00:00 GMT")


if not hasattr(cookie_model, "stx"):  # the pinned version's internals; fail loudly if they move
    raise RuntimeError("streamlit-authenticator no longer builds its CookieManager through cookie_model.stx")
cookie_model.stx = SimpleNamespace(CookieManager=BrowserCookies)


def cookie_script(assignment: str) -> str:
    """A <script> that assigns document.cookie (site-wide, SameSite=Strict, as the library did)."""
    literal = json.dumps(f"{assignment}; path=/; SameSite=Strict").replace("<", "\\u003c")
    return f"<script>document.cookie = {literal};</script>"


def write_session_cookie(in_sidebar: bool) -> None:
    """The latest cookie change, run by the browser; it sends nothing back, so it never causes a rerun.
    Rendered on every run until the next change, since a run cut short may not have delivered it (running
    it again is harmless)."""
    script = st.session_state.get(COOKIE_SCRIPT_KEY)
    if script:
        (st.sidebar.html if in_sidebar else st.html)(script, unsafe_allow_javascript=True)


def build_authenticator(credentials: dict) -> stauth.Authenticate:
    """The one Authenticate object of this run, on a credentials dict fresh from SQLite."""
    return stauth.Authenticate(
        credentials,
        COOKIE_NAME,
        auth.cookie_key(),
        COOKIE_EXPIRY_DAYS,
        auto_hash=False,  # the store only holds bcrypt hashes
        login_sleep_time=0,  # 0.4.2 reads the cookie from st.context: nothing to wait for
    )


def login_form(authenticator: stauth.Authenticate, store: Store) -> None:
    """Username and password; the library verifies them, our backoff wraps the attempt."""
    with st.form("login_form"):
        username = st.text_input("Username", key="login_username", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return

    def library_check(name: str, secret: str) -> bool:
        return bool(authenticator.authentication_controller.login(name, secret))

    try:
        user = auth.attempt_login(store, username, password, check=library_check)
    except auth.AuthError as error:
        show_error(str(error))
        return
    log.info("user %s logged in", user.username)
    st.session_state["logout"] = None  # re-enable cookie sessions after an earlier logout
    authenticator.cookie_controller.set_cookie()  # via BrowserCookies: written by the next runs
    st.rerun()


def register_form(store: Store) -> None:
    """A new account; validation errors are shown as plain text."""
    with st.form("register_form"):
        name = st.text_input("Name", key="register_name", autocomplete="name")
        email = st.text_input("Email", key="register_email", autocomplete="email")
        username = st.text_input("Username", key="register_username", autocomplete="username")
        password = st.text_input(
            "Password",
            type="password",
            key="register_password",
            autocomplete="new-password",
            help=f"At least {auth.MIN_PASSWORD_LENGTH} characters, with a letter and a digit.",
        )
        repeat = st.text_input("Repeat password", type="password", key="register_repeat", autocomplete="new-password")
        submitted = st.form_submit_button("Create account")
    if not submitted:
        return
    try:
        user = auth.register(store, username=username, name=name, email=email, password=password, repeat=repeat)
    except auth.AuthError as error:
        show_error(str(error))
        return
    log.info("user %s registered", user.username)
    st.success(f"Account **{md_escape(user.username)}** created. Log in with it in the *Log in* tab.")


def login_page(authenticator: stauth.Authenticate, store: Store) -> None:
    """What a visitor who is not logged in sees."""
    st.title("Emotion Studio")
    st.write("Recognise facial emotions in photos, webcam snapshots and videos. Log in or create an account.")
    login_tab, register_tab = st.tabs(["Log in", "Create account"])
    with login_tab:
        login_form(authenticator, store)
    with register_tab:
        register_form(store)


def current_user(authenticator: stauth.Authenticate, store: Store) -> User | None:
    """The logged-in user, restoring the session from the cookie when there is one."""
    try:
        authenticator.login(location="unrendered")
    except LoginError as error:  # a cookie for an account that no longer exists
        log.warning("cookie login refused: %s", error)
    if not st.session_state.get("authentication_status"):
        return None
    user = store.get_user_by_username(st.session_state.get("username") or "")
    if user is None:
        authenticator.logout(location="unrendered")
    return user


def log_out(authenticator: stauth.Authenticate, user: User) -> None:
    """The Log out button's callback: it runs before the next run's script, which then shows the login."""
    log.info("user %s logged out", user.username)
    authenticator.authentication_controller.logout()  # the library clears its session keys
    authenticator.cookie_controller.delete_cookie()


def run_studio(authenticator: stauth.Authenticate, user: User) -> None:
    """Navigation over the pages that exist, the user's sidebar, and the page; a failing page shows a
    message, never a traceback."""
    sections: dict[str, list[st.Page]] = {}
    for spec in PAGES:
        if spec.exists():
            page = st.Page(APP_ROOT / spec.path, title=spec.title, icon=spec.icon, default=spec.title == "Home")
            sections.setdefault(spec.section, []).append(page)
    # The server process's first run (there is a pages/ folder beside app.py) executes this script as a
    # page of Streamlit's legacy pages/ mode until st.navigation is called, so widgets made outside
    # page.run() get IDs under that page's hash instead of the one every later run uses: a click on the
    # Log out button would then match no widget and be lost. Rerun once, server-side, before showing any.
    legacy_first_run = bool(PagesManager.uses_pages_directory)
    page = st.navigation(sections)
    if legacy_first_run:
        st.rerun()
    with st.sidebar:
        st.caption(f"Signed in as **{md_escape(user.name)}** ({md_escape(user.username)})")
        st.button("Log out", key="logout_button", on_click=log_out, args=(authenticator, user))
        write_session_cookie(in_sidebar=True)  # last in the sidebar: it shifts nothing the user sees
    try:
        page.run()
    except Exception:
        incident = secrets.token_hex(4)
        log.exception("page %s failed for user %s (incident %s)", page.title, user.username, incident)
        show_error(f"Sorry, something went wrong on this page (incident {incident}). It has been logged; try again.")


def main() -> None:
    """Gate, then the studio."""
    st.set_page_config(page_title="Emotion Studio", page_icon="🙂", layout="wide")
    setup_logging("app")
    try:
        store = get_store()
        credentials = auth.load_credentials(store)
        loaded = copy.deepcopy(credentials)
        authenticator = build_authenticator(credentials)
        user = current_user(authenticator, store)
        auth.save_credentials(store, credentials, loaded)  # whatever the library changed, back to SQLite
    except Exception:
        log.exception("authentication set-up failed")
        show_error("The studio cannot open its account database right now. The error has been logged.")
        return
    if user is not None:
        st.session_state["user"] = user
        run_studio(authenticator, user)
        return
    st.session_state.pop("user", None)
    st.navigation(
        [st.Page(lambda: login_page(authenticator, store), title="Log in", default=True)], position="hidden"
    ).run()
    write_session_cookie(in_sidebar=False)  # after the login page, so that nothing on it moves


main()
