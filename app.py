"""Facial Emotion Recognition Studio: the entry point (`streamlit run app.py`).

An authentication gate comes first: a login page with a registration form, shown at whatever page
URL was asked for (a deep link opens its page once logged in). Logged in, the user gets the studio's
pages through st.navigation, the only way a page runs (pages/common.py's gate). streamlit-authenticator
checks passwords against the credentials dict (loaded from SQLite); the forms are our own so that login
backoff applies to every typed username, known or not. The session cookie, its lifetime and its
revocation (logout and password change end every earlier session) are studio.auth's; logging in, out
or as someone else empties the session state (pages.common.reset_session).
"""

from __future__ import annotations

import copy
import logging
import secrets
from datetime import datetime
from types import SimpleNamespace

import streamlit as st
import streamlit_authenticator as stauth
from streamlit_authenticator.models import cookie_model

from emotion.logs import setup_logging
from pages.common import (
    APP_ROOT,
    COOKIE_SCRIPT_KEY,
    FAREWELL_KEY,
    PAGES,
    SESSION_KEY,
    client_id,
    delete_session_cookie,
    issue_session_cookie,
    md_escape,
    reset_session,
    show_error,
    stale_without_fade,
    start_cache_warmup,
)
from studio import auth
from studio.store import Store, User, get_store

log = logging.getLogger("app")


class BrowserCookies:
    """Stands in for extra_streamlit_components.CookieManager inside streamlit-authenticator 0.4.2.

    That CookieManager renders a bidirectional component on every run, and each report back is a full
    rerun that preempts the run a click has just started. The studio writes and checks its session
    cookie itself (pages.common.issue_session_cookie, studio.auth.read_session_token), so the library's
    cookie manager only has to exist: it renders nothing and writes nothing."""

    def __init__(self, key: str = "init") -> None:
        self.cookies: dict[str, str] = {}

    def set(self, cookie: str, val: str, key: str = "set", expires_at: datetime | None = None, **_: object) -> None:
        """Unused: the library's own cookie (without a session version) is never written."""

    def delete(self, cookie: str, key: str = "delete") -> None:
        """Unused: logout deletes the cookie through pages.common.delete_session_cookie."""


if not hasattr(cookie_model, "stx"):  # the pinned version's internals; fail loudly if they move
    raise RuntimeError("streamlit-authenticator no longer builds its CookieManager through cookie_model.stx")
cookie_model.stx = SimpleNamespace(CookieManager=BrowserCookies)


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
        auth.COOKIE_NAME,
        auth.cookie_key(),
        auth.COOKIE_EXPIRY_DAYS,
        auto_hash=False,  # the store only holds bcrypt hashes
        login_sleep_time=0,
    )


def start_session(authenticator: stauth.Authenticate, store: Store, username: str) -> None:
    """Log ``username`` in on this session: nothing of an earlier user stays, the library's session keys
    are set, and a cookie for the account's current session version is issued."""
    reset_session()
    authenticator.authentication_controller.login(token={"username": username})
    session = store.session_of(username)
    if session is not None:  # None: the account was deleted meanwhile; the next run shows the login
        issue_session_cookie(username, session)


def end_session(authenticator: stauth.Authenticate) -> None:
    """Forget the user on this session: the library's keys, every other key, and the cookie."""
    authenticator.authentication_controller.logout()  # sets the library's keys to None
    reset_session()
    delete_session_cookie()


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
        user = auth.attempt_login(store, username, password, check=library_check, client=client_id())
    except auth.AuthError as error:
        show_error(str(error))
        return
    log.info("user %s logged in", user.username)
    start_session(authenticator, store, user.username)
    st.rerun()  # the same URL: a deep link now opens its page


def register_form(authenticator: stauth.Authenticate, store: Store) -> None:
    """A new account, logged in at once; validation errors are shown as plain text."""
    with st.form("register_form"):
        name = st.text_input("Name", key="register_name", autocomplete="name")
        email = st.text_input("Email", key="register_email", autocomplete="email")
        username = st.text_input("Username", key="register_username", autocomplete="username")
        password = st.text_input(
            "Password",
            type="password",
            key="register_password",
            autocomplete="new-password",
            help=f"At least {auth.MIN_PASSWORD_LENGTH} characters, with a letter and a digit; common or "
            "easily guessed passwords are refused.",
        )
        repeat = st.text_input("Repeat password", type="password", key="register_repeat", autocomplete="new-password")
        submitted = st.form_submit_button("Create account")
    if not submitted:
        return
    try:
        user = auth.register(
            store, username=username, name=name, email=email, password=password, repeat=repeat, client=client_id()
        )
    except auth.AuthError as error:
        show_error(str(error))
        return
    log.info("user %s registered", user.username)
    # The library's credentials dict of this run predates the account: add it before logging in.
    authenticator.authentication_controller.authentication_model.credentials["usernames"][user.username] = {
        "name": user.name,
        "email": user.email,
        "password": store.password_hash(user.username),
    }
    start_session(authenticator, store, user.username)
    st.rerun()


def about_sidebar() -> None:
    """The login page's sidebar: what the studio has, and what it keeps. It also fills the sidebar that
    Streamlit's frontend keeps open after a logout when nothing is put in it."""
    with st.sidebar:
        st.subheader("In the studio")
        for spec in PAGES:
            if spec.title != "Home":
                st.markdown(f"{spec.icon} **{spec.title}** · {spec.description}")
        st.caption(
            "Photos and video are analysed on this server and sent nowhere else. What you analyse is saved to "
            "your history, which only you can see; from Account you can download all of it or delete it."
        )


def login_page(authenticator: stauth.Authenticate, store: Store) -> None:
    """What a visitor who is not logged in sees."""
    about_sidebar()
    st.title("Emotion Studio")
    st.write("Recognise facial emotions in photos, webcam snapshots and videos. Log in or create an account.")
    farewell = st.session_state.pop(FAREWELL_KEY, None)
    if farewell:
        st.success(farewell)
    login_tab, register_tab = st.tabs(["Log in", "Create account"])
    with login_tab:
        login_form(authenticator, store)
    with register_tab:
        register_form(authenticator, store)


def current_user(authenticator: stauth.Authenticate, store: Store) -> User | None:
    """The logged-in user: this session's, while the account and its session version are still the
    ones it runs under (a logout, password change or account deletion elsewhere ends it), else one
    restored from a valid cookie."""
    username = st.session_state.get("username")
    if st.session_state.get("authentication_status") and username:
        session = st.session_state.get(SESSION_KEY)
        if store.session_of(username) == session:
            user = store.get_user(session[0])  # by id: None if deleted since, even if its name was taken again
            if user is not None:
                return user
        log.info("session of %s revoked: logged out", username)
        end_session(authenticator)
        return None
    restored = auth.read_session_token(store, st.context.cookies.get(auth.COOKIE_NAME), auth.cookie_key())
    if restored is None:
        return None
    username, session = restored
    user = store.get_user(session[0])  # read_session_token matched the id to the username
    if (
        user is None
        or username not in authenticator.authentication_controller.authentication_model.credentials["usernames"]
    ):
        return None
    reset_session()
    authenticator.authentication_controller.login(token={"username": username})
    st.session_state[SESSION_KEY] = session  # the cookie stays as it is: no new one is written
    return user


def log_out(authenticator: stauth.Authenticate, store: Store, user: User) -> None:
    """The Log out button's callback (it runs before the next run's script, which then shows the login):
    every session of this account, and every cookie issued for it so far, ends here."""
    store.bump_session_version(user.id)
    log.info("user %s logged out", user.username)
    end_session(authenticator)


def studio_pages() -> dict[str, list[st.Page]]:
    """The studio's pages, by section."""
    sections: dict[str, list[st.Page]] = {}
    for spec in PAGES:
        page = st.Page(APP_ROOT / spec.path, title=spec.title, icon=spec.icon, default=spec.title == "Home")
        sections.setdefault(spec.section, []).append(page)
    return sections


def sidebar_menu(sections: dict[str, list[st.Page]]) -> None:
    """Links to every page, by section. Streamlit's own sidebar list is off (.streamlit/config.toml:
    it would list app and common while the legacy pages/ mode is on), so the studio draws this one."""
    for section, section_pages in sections.items():
        if section:
            st.sidebar.caption(section)
        for page in section_pages:
            st.sidebar.page_link(page, label=page.title, icon=page.icon)


def run_studio(authenticator: stauth.Authenticate, store: Store, user: User) -> None:
    """Navigation over the pages that exist, the user's sidebar, and the page; a failing page shows a
    message, never a traceback."""
    sections = studio_pages()
    page = st.navigation(sections, position="hidden")
    sidebar_menu(sections)
    with st.sidebar:
        st.divider()
        st.caption(f"Signed in as **{md_escape(user.name)}** ({md_escape(user.username)})")
        st.button("Log out", key="logout_button", on_click=log_out, args=(authenticator, store, user))
        write_session_cookie(in_sidebar=True)  # last in the sidebar: it shifts nothing the user sees
    try:
        page.run()
    except Exception:
        incident = secrets.token_hex(4)
        log.exception("page %s failed for user %s (incident %s)", page.title, user.username, incident)
        show_error(f"Sorry, something went wrong on this page (incident {incident}). It has been logged; try again.")


def run_login(authenticator: stauth.Authenticate, store: Store) -> None:
    """The login page, at the root and at every page's URL (hidden navigation), so that a deep link
    shows the login instead of "page not found" and, once logged in, the rerun opens that page (a
    page's identity is its URL path)."""
    stubs = [st.Page(lambda: login_page(authenticator, store), title="Log in", default=True)]
    for spec in PAGES:
        stem = spec.path.rsplit("/", 1)[-1].removesuffix(".py")
        if spec.title != "Home":
            stubs.append(st.Page(lambda: login_page(authenticator, store), title="Log in", url_path=stem))
    st.navigation(stubs, position="hidden").run()
    write_session_cookie(in_sidebar=False)  # after the login page, so that nothing on it moves


def main() -> None:
    """Gate, then the studio."""
    st.set_page_config(page_title="Emotion Studio", page_icon="🙂", layout="wide")
    setup_logging("app")
    stale_without_fade()
    start_cache_warmup()  # once per process: the explorer's first visitor reads FER2013 from the cache
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
    previous = st.session_state.get("user")
    if user is not None and previous is not None and getattr(previous, "id", None) != user.id:
        reset_session()  # another user on this session by any route: nothing of the previous one stays
    if user is not None:
        st.session_state["user"] = user
        run_studio(authenticator, store, user)
        return
    st.session_state.pop("user", None)
    run_login(authenticator, store)


main()
