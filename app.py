"""Facial Emotion Recognition Studio: the entry point (`streamlit run app.py`).

An authentication gate comes first: a login page with a registration form. Logged in, the user gets
the studio's pages through st.navigation. streamlit-authenticator checks passwords against the
credentials dict (loaded from SQLite) and keeps the session in a signed cookie; the forms are our
own so that login backoff applies to every typed username, known or not.
"""

from __future__ import annotations

import copy
import logging
import secrets
from collections.abc import Callable

import streamlit as st
import streamlit_authenticator as stauth
from streamlit_authenticator.utilities import LoginError

from emotion import auth
from emotion.logs import setup_logging
from emotion.store import Store, User, get_store
from pages.common import APP_ROOT, PAGES, md_escape, show_error

COOKIE_NAME = "emotion_studio_session"
COOKIE_EXPIRY_DAYS = 7.0
# session_state flags: the cookie still has to be set (after logging in) or deleted (after logging out).
# extra_streamlit_components renders the cookie components under the keys "init", "set" and "delete".
SET_COOKIE_FLAG = "_auth_set_cookie"
DELETE_COOKIE_FLAG = "_auth_delete_cookie"

log = logging.getLogger("app")


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
    st.session_state.pop(DELETE_COOKIE_FLAG, None)
    st.session_state[SET_COOKIE_FLAG] = True
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


def keep_rendering(flag: str, component_key: str, render: Callable[[], None]) -> None:
    """Render a cookie component (set or delete) on every run while ``flag`` is set, until the browser
    has run it (the component's value, under its key, turns True): a component rendered only once can
    be unmounted by a quick rerun before its iframe runs."""
    if not st.session_state.get(flag):
        return
    if st.session_state.get(component_key) is True:
        del st.session_state[flag]
    else:
        render()


def run_studio(user: User) -> None:
    """Navigation over the pages that exist; a failing page shows a message, never a traceback."""
    sections: dict[str, list[st.Page]] = {}
    for spec in PAGES:
        if spec.exists():
            page = st.Page(APP_ROOT / spec.path, title=spec.title, icon=spec.icon, default=spec.title == "Home")
            sections.setdefault(spec.section, []).append(page)
    page = st.navigation(sections)
    try:
        page.run()
    except Exception:
        incident = secrets.token_hex(4)
        log.exception("page %s failed for user %s (incident %s)", page.title, user.username, incident)
        show_error(f"Sorry, something went wrong on this page (incident {incident}). It has been logged; try again.")


def main() -> None:
    """Gate, then the studio."""
    st.set_page_config(page_title="Emotion Studio", page_icon=":material/mood:", layout="wide")
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
        keep_rendering(SET_COOKIE_FLAG, "set", authenticator.cookie_controller.set_cookie)
        with st.sidebar:
            st.caption(f"Signed in as **{md_escape(user.name)}** ({md_escape(user.username)})")
            logging_out = st.button("Log out", key="logout_button")
        if not logging_out:
            run_studio(user)
            return
        log.info("user %s logged out", user.username)
        st.session_state[DELETE_COOKIE_FLAG] = True
        authenticator.authentication_controller.logout()  # the library clears its session keys
    keep_rendering(DELETE_COOKIE_FLAG, "delete", authenticator.cookie_controller.delete_cookie)
    st.session_state.pop("user", None)
    st.navigation(
        [st.Page(lambda: login_page(authenticator, store), title="Log in", default=True)], position="hidden"
    ).run()


main()
