"""The authentication gate and account pages, driven through Streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import pages.common
from pages.common import PageSpec, md_escape
from studio import auth
from studio.store import get_store

# Page flows under AppTest (a second or more each): the full suite runs them, the fast loop does not.
pytestmark = pytest.mark.slow

PASSWORD = "passw0rd-one"
NEW_PASSWORD = "passw0rd-two"


@pytest.fixture
def app(isolated_store: Path, monkeypatch, repo_root: Path) -> AppTest:
    monkeypatch.setenv(auth.COOKIE_KEY_ENV, "k" * 48)  # never touch the checkout's secrets.toml
    monkeypatch.setattr(auth, "BCRYPT_ROUNDS", 4)  # test_auth checks the real cost
    # app.py's own source, run from a temporary folder: beside a pages/ folder AppTest re-enables
    # Streamlit's legacy pages-directory mode on every run (the real server leaves it once app.py calls
    # st.navigation), and would then run a page file without app.py around it.
    return AppTest.from_string((repo_root / "app.py").read_text(), default_timeout=60).run()


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def submit(at: AppTest, button: str, **fields: str) -> AppTest:
    for key, value in fields.items():
        at.text_input(key=key).input(value)
    next(b for b in at.button if b.label == button).click()
    return at.run()


def register(at: AppTest, username: str = "alice", email: str = "alice@example.com", **overrides: str) -> AppTest:
    fields = {
        "register_name": "Alice Liddell",
        "register_email": email,
        "register_username": username,
        "register_password": PASSWORD,
        "register_repeat": PASSWORD,
    }
    return submit(at, "Create account", **{**fields, **overrides})


def login(at: AppTest, username: str = "alice", password: str = PASSWORD) -> AppTest:
    return submit(at, "Log in", login_username=username, login_password=password)


def logged_in(at: AppTest) -> bool:
    return bool(at.session_state["authentication_status"]) and "user" in at.session_state


def log_out(at: AppTest) -> AppTest:
    next(b for b in at.sidebar.button if b.label == "Log out").click()
    return at.run()


def test_login_page_comes_first(app: AppTest) -> None:
    assert not app.exception
    assert app.title[0].value == "Emotion Studio"
    assert [t.label for t in app.tabs] == ["Log in", "Create account"]
    assert not logged_in(app)
    assert not [b for b in app.sidebar.button if b.label == "Log out"]


def test_register_then_login_then_logout(app: AppTest) -> None:
    register(app)
    assert not errors(app) and logged_in(app)  # registering logs the new user in
    user = get_store().get_user_by_username("alice")
    assert user is not None and auth.is_bcrypt_hash(get_store().password_hash("alice"))
    assert app.session_state["user"].id == user.id
    log_out(app)
    assert not logged_in(app)
    login(app, username="  Alice ")
    assert not app.exception and not errors(app)
    assert logged_in(app) and app.session_state["user"].id == user.id
    assert any("Welcome" in m.value and "Alice Liddell" in m.value for m in app.markdown)  # the home page
    logout = next(b for b in app.sidebar.button if b.label == "Log out")
    logout.click()
    app.run()
    assert not logged_in(app)
    assert [t.label for t in app.tabs] == ["Log in", "Create account"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"register_username": "alice"}, auth.REGISTRATION_CONFLICT),
        ({"register_username": "alice2", "register_email": "ALICE@example.com"}, auth.REGISTRATION_CONFLICT),
        (
            {
                "register_username": "bob",
                "register_email": "b@example.com",
                "register_password": "password1",
                "register_repeat": "password1",
            },
            "very common password",
        ),
        ({"register_username": "bob", "register_email": "b@example.com", "register_password": "short1"}, "at least 8"),
        # The rest in the full suite only (each is a fresh app run; test_auth checks the rules themselves).
        pytest.param(
            {"register_username": "bob", "register_email": "b@example.com", "register_password": "nodigitshere"},
            "letter and one digit",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            {"register_username": "bob", "register_email": "b@example.com", "register_repeat": "x"},
            "do not match",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            {"register_username": "bob", "register_email": "b@example.com", "register_name": ""},
            "Enter your name",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            {"register_username": "", "register_email": "b@example.com"}, "Enter a username", marks=pytest.mark.slow
        ),
        pytest.param({"register_username": "bob", "register_email": ""}, "Enter an email", marks=pytest.mark.slow),
    ],
)
def test_registration_errors(app: AppTest, overrides: dict[str, str], message: str) -> None:
    register(app)
    log_out(app)
    register(app, **overrides)
    assert not app.exception
    assert any(md_escape(message) in e or message in e for e in errors(app)), errors(app)
    assert len(get_store().credential_rows()) == 1


def test_registering_too_often_from_one_address_says_wait(app: AppTest, monkeypatch) -> None:
    monkeypatch.setattr(pages.common, "client_id", lambda: "198.51.100.7")  # app.py reads it on each run
    for index in range(auth.FREE_REGISTRATIONS):
        fields = {"name": "Bulk", "email": f"bulk{index}@example.com", "password": PASSWORD, "repeat": PASSWORD}
        auth.register(get_store(), username=f"bulk{index}", client="198.51.100.7", **fields)
    register(app)
    assert not logged_in(app) and any("Too many accounts were created from your address" in e for e in errors(app))
    assert get_store().get_user_by_username("alice") is None
    monkeypatch.setattr(pages.common, "client_id", lambda: "203.0.113.8")
    register(app)
    assert logged_in(app)


def test_wrong_password_and_unknown_user_look_the_same(app: AppTest) -> None:
    register(app)
    log_out(app)
    login(app, password="wrong-passw0rd")
    wrong = errors(app)
    login(app, username="nobody")
    assert errors(app) == wrong and len(wrong) == 1 and "Incorrect username or password" in wrong[0]
    assert not logged_in(app)
    login(app, password="")
    assert any("Enter your username and password" in e for e in errors(app))


def test_repeated_failures_are_slowed_down(app: AppTest) -> None:
    register(app)
    log_out(app)
    for _ in range(3):
        login(app, password="wrong-passw0rd")
    login(app)  # the right password, but inside the backoff window
    assert any("Too many failed attempts" in e for e in errors(app))
    assert not logged_in(app)
    failures, locked_until = get_store().login_state(auth.throttle_keys("alice", "unknown")[0])
    assert failures == 3 and locked_until > 0


@pytest.mark.slow
def test_edit_profile_and_change_password(app: AppTest) -> None:
    register(app)
    app.switch_page(str(Path(pages.common.APP_ROOT, "pages/account.py"))).run()
    assert not app.exception and app.title[0].value == "Account"
    assert any(md_escape("alice@example.com") in m.value for m in app.markdown)
    assert [m.label for m in app.metric] == ["Photos", "Webcam snapshots", "Videos", "Total"]
    submit(app, "Save profile", profile_name="Alice L.", profile_email="bad-email")
    assert any("valid email" in e for e in errors(app))
    submit(app, "Save profile", profile_name="Alice L.", profile_email="al@example.com")
    assert not errors(app) and app.success[0].value == "Profile saved."
    user = get_store().get_user_by_username("alice")
    assert (user.name, user.email) == ("Alice L.", "al@example.com")
    assert app.session_state["user"].name == "Alice L."
    fields = {"password_current": "not-it-1", "password_new": NEW_PASSWORD, "password_repeat": NEW_PASSWORD}
    submit(app, "Change password", **fields)
    assert any("current password is not correct" in e for e in errors(app))
    submit(app, "Change password", **{**fields, "password_current": PASSWORD})
    assert not errors(app) and app.success[0].value.startswith("Password changed.")
    assert logged_in(app)  # this session goes on under the new session version
    assert app.session_state[pages.common.SESSION_KEY] == get_store().session_of("alice") == (1, 1)
    log_out(app)
    login(app)
    assert not logged_in(app) and any("Incorrect" in e for e in errors(app))
    login(app, password=NEW_PASSWORD)
    assert logged_in(app)


def test_delete_account_asks_twice_then_ends_every_session(app: AppTest, repo_root: Path) -> None:
    register(app)
    user = app.session_state["user"]
    face = {"box": [0, 0, 9, 9], "label": "happy", "confidence": 0.9, "scores": {"happy": 0.9}}
    get_store().add_analysis(user.id, source="photo", model="m", detector="haar", faces=[face], image=b"\xff\xd8x")
    other = AppTest.from_string((repo_root / "app.py").read_text(), default_timeout=60).run()
    login(other)  # the same account in another browser
    assert logged_in(other)
    app.switch_page(str(Path(pages.common.APP_ROOT, "pages/account.py"))).run()
    assert not app.exception
    assert [d.proto.label for d in app.get("download_button")] == ["Download all my data (ZIP)"]
    assert "everything saved with it (1 analysis, their" in app.expander[0].warning[0].value
    submit(app, "Delete my account", delete_password=PASSWORD, delete_confirm="bob")
    assert [e.value for e in app.expander[0].error] == [md_escape("Type your username, alice, to confirm.")]
    submit(app, "Delete my account", delete_password="wrong-pass-9", delete_confirm="alice")
    assert errors(app) == [md_escape("The password is not correct.")]
    assert get_store().get_user(user.id) is not None and logged_in(app)
    submit(app, "Delete my account", delete_password=PASSWORD, delete_confirm="alice")
    assert not app.exception and not logged_in(app)
    assert [t.label for t in app.tabs] == ["Log in", "Create account"]
    assert [s.value for s in app.success] == ["Your account alice and its 1 analysis were deleted."]
    assert "1970" in app.session_state[pages.common.COOKIE_SCRIPT_KEY]  # the browser drops its cookie
    assert get_store().get_user_by_username("alice") is None and get_store().list_analyses(user.id) == []
    other.run()
    assert not logged_in(other) and [t.label for t in other.tabs] == ["Log in", "Create account"]
    login(app)
    assert not logged_in(app) and any("Incorrect" in e for e in errors(app))


def test_user_text_is_never_markup(app: AppTest) -> None:
    name = "<img src=x onerror=alert(1)> [click](http://evil.example) :red[x] $x$"
    register(app, register_name=name)
    shown = [m.value for m in app.markdown] + [c.value for c in app.sidebar.caption]
    with_name = [text for text in shown if "img" in text]
    assert len(with_name) == 2  # the home greeting and the sidebar
    for text in with_name:
        assert md_escape(name) in text and name not in text
    assert "&#60;img" in md_escape(name) and "&#91;click&#93;&#40;http&#8288;&#58;&#47;&#47;" in md_escape(name)


def test_home_shows_recent_activity(app: AppTest) -> None:
    register(app)
    user = app.session_state["user"]
    face = {"box": [0, 0, 9, 9], "label": "happy", "confidence": 0.9, "scores": {"happy": 0.9}}
    get_store().add_analysis(
        user.id, source="snapshot", model="m", detector="haar", faces=[face], image=None, title="**bold**"
    )
    app.run()
    assert [m.value for m in app.metric][:2] == ["1", "0"]
    table = app.dataframe[0].value
    assert list(table["Kind"]) == ["Webcam snapshot"] and list(table["Title"]) == ["**bold**"]


def test_a_failing_page_shows_a_friendly_error(app: AppTest, tmp_path: Path, monkeypatch) -> None:
    boom = tmp_path / "boom.py"
    boom.write_text("raise RuntimeError('secret internals')\n")
    monkeypatch.setattr(pages.common, "PAGES", (PageSpec(str(boom), "", "Home", ":material/home:", "boom"),))
    register(app)
    assert not app.exception
    assert any("something went wrong" in e for e in errors(app))
    assert not any("secret internals" in e for e in errors(app))


@pytest.mark.parametrize("page", ["pages/home.py", "pages/account.py"])
def test_pages_alone_need_a_user(isolated_store: Path, repo_root: Path, page: str) -> None:
    at = AppTest.from_file(str(repo_root / page), default_timeout=60).run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["Please log in first: open the studio's start page."]
    assert not at.title


@pytest.mark.parametrize(("page", "title"), [("pages/home.py", "Emotion Studio"), ("pages/account.py", "Account")])
def test_pages_alone_with_a_user(isolated_store: Path, repo_root: Path, page: str, title: str) -> None:
    user = get_store().create_user("solo", "Solo", "solo@example.com", auth.hash_password("solo-pass1"))
    at = AppTest.from_file(str(repo_root / page), default_timeout=60)
    at.session_state["user"] = user
    at.run()
    assert not at.exception and at.title[0].value == title


def test_switching_user_on_one_session_leaves_nothing_of_the_first(app: AppTest) -> None:
    """Results, uploads and filters any page kept in session_state go at logout and at the next login."""
    register(app)
    app.session_state["classify_result"] = {"report": {"user": "alice"}}
    app.session_state["history_filters"] = ("alice's filter",)
    log_out(app)
    assert "classify_result" not in app.session_state and "history_filters" not in app.session_state
    app.session_state["left_behind"] = "by a page that ran after logout"
    register(app, username="bob", email="bob@example.com", register_name="Bob")
    assert logged_in(app) and app.session_state["user"].username == "bob"
    assert "left_behind" not in app.session_state


def test_a_session_revoked_elsewhere_meets_the_login(app: AppTest) -> None:
    """Logging out (or changing the password) in another browser ends this session too."""
    register(app)
    get_store().bump_session_version(app.session_state["user"].id)
    app.run()
    assert not logged_in(app) and [t.label for t in app.tabs] == ["Log in", "Create account"]


def test_every_page_reads_pages_common_before_anything_else() -> None:
    """The gate (pages/common.py) acts when a page reads its first name from pages.common: that must be
    the first thing every page file does, before any statement that could render."""
    import ast

    files = sorted(pages.common.APP_ROOT.joinpath("pages").glob("*.py"))
    assert {spec.path.rsplit("/", 1)[-1] for spec in pages.common.PAGES} <= {f.name for f in files}
    for path in files:
        if path.name in ("__init__.py", "common.py"):
            continue
        body = ast.parse(path.read_text()).body
        for node in body:
            if isinstance(node, ast.ImportFrom) and node.module == "pages.common":
                break
            is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            assert is_docstring or isinstance(node, (ast.Import, ast.ImportFrom)), (path.name, ast.dump(node)[:80])
        else:
            raise AssertionError(f"{path.name} never imports from pages.common")


def test_legacy_pages_run_is_rerouted_through_app(monkeypatch) -> None:
    """In a run of Streamlit's legacy pages/ mode (its runner's _mpa_v1 on the stack), reading a name of
    pages.common switches the mode off and restarts the run (through app.py); in any other run, or
    outside a Streamlit run, nothing is guarded."""
    from types import SimpleNamespace

    import streamlit
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner_utils import script_run_context
    from streamlit.runtime.scriptrunner_utils.exceptions import RerunException

    common = pages.common
    assert common.md_escape("*") == "&#42;"  # no script run: no gate
    reruns: list[bool] = []

    def rerun() -> None:
        reruns.append(True)
        raise RerunException(None)

    monkeypatch.setattr(streamlit, "rerun", rerun)
    monkeypatch.setitem(vars(common), "get_script_run_ctx", lambda suppress_warning=False: SimpleNamespace())
    monkeypatch.setattr(PagesManager, "uses_pages_directory", True)
    assert common.md_escape("*") == "&#42;" and not reruns  # a run of app.py

    namespace: dict = {"common": common}
    # A function of that name in a file under a streamlit folder, as the runner's is.
    exec(
        compile("def _mpa_v1():\n    return common.md_escape('x')\n", "/x/streamlit/script_runner.py", "exec"),
        namespace,
    )
    with pytest.raises(RerunException):
        namespace["_mpa_v1"]()
    assert reruns == [True] and PagesManager.uses_pages_directory is False
    assert script_run_context.get_script_run_ctx is not None
