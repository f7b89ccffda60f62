"""Account logic: validation, bcrypt, registration, profile and password changes, login backoff,
the credentials dict and the cookie key."""

from __future__ import annotations

import copy
import stat
import time
import tomllib
from pathlib import Path

import bcrypt
import pytest

from studio import auth
from studio.auth import AuthError, LoginThrottled, RegistrationThrottled
from studio.store import Store

PASSWORD = "s3cret-pass"
NEW_PASSWORD = "new-mauve-kettle7"


@pytest.fixture(autouse=True)
def fast_bcrypt(monkeypatch) -> None:
    """Cheap bcrypt rounds keep the tests quick; test_default_cost checks the real cost."""
    monkeypatch.setattr(auth, "BCRYPT_ROUNDS", 4)


@pytest.fixture
def db(tmp_path: Path) -> Store:
    return Store(tmp_path / "studio.db", tmp_path / "media")


@pytest.fixture
def alice(db: Store):
    return auth.register(
        db, username=" Alice ", name="Alice Liddell", email="alice@example.com", password=PASSWORD, repeat=PASSWORD
    )


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "Enter a password"),
        ("abc1", "at least 8"),
        ("abcdefgh", "letter and one digit"),
        ("12345678", "letter and one digit"),
        (" abcdefg1", "space"),
        ("a1" * 40, "at most 72 bytes"),
        ("password1", "very common password"),
        ("qwerty123", "very common password"),
    ],
)
def test_weak_passwords_are_refused(password: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        auth.validate_password(password)


def test_password_repeat_must_match() -> None:
    assert auth.validate_password(NEW_PASSWORD, NEW_PASSWORD) == NEW_PASSWORD
    with pytest.raises(AuthError, match="do not match"):
        auth.validate_password(NEW_PASSWORD, NEW_PASSWORD + "x")


def test_password_built_from_the_account_is_refused() -> None:
    """zxcvbn counts the account's own name and username as guessable."""
    auth.validate_password("Liddell2024", user_inputs=())
    with pytest.raises(AuthError, match="less common password"):
        auth.validate_password("Liddell2024", user_inputs=("alice", "Alice Liddell", "alice@example.com"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("username", "", "Enter a username"),
        ("username", "ab", "3 to 32"),
        ("username", "bad name", "3 to 32"),
        ("username", "<script>", "3 to 32"),
        ("name", "   ", "Enter your name"),
        ("name", "x\x00y", "control"),
        ("email", "", "Enter an email"),
        ("email", "not-an-email", "valid email"),
    ],
)
def test_bad_fields_are_refused(field: str, value: str, message: str) -> None:
    validator = {"username": auth.validate_username, "name": auth.validate_name, "email": auth.validate_email}[field]
    with pytest.raises(AuthError, match=message):
        validator(value)


def test_register_stores_a_bcrypt_hash(db: Store, alice) -> None:
    assert alice.username == "alice" and alice.name == "Alice Liddell"
    stored = db.password_hash("alice")
    assert stored != PASSWORD and auth.is_bcrypt_hash(stored)
    assert bcrypt.checkpw(PASSWORD.encode(), stored.encode())
    assert auth.verify_password(PASSWORD, stored) and not auth.verify_password("wrong-pass1", stored)
    assert not auth.verify_password(PASSWORD, None)


def test_default_cost(monkeypatch) -> None:
    monkeypatch.undo()
    assert auth.hash_password("abcdefg1").startswith("$2b$12$")


def test_registration_does_not_say_which_field_is_taken(db: Store, alice) -> None:
    """A taken username and a taken email get the same words: nobody learns who has an account."""
    with pytest.raises(AuthError) as by_name:
        auth.register(db, username="ALICE", name="A", email="new@example.com", password=PASSWORD, repeat=PASSWORD)
    with pytest.raises(AuthError) as by_email:
        auth.register(db, username="alice2", name="A", email="Alice@Example.com", password=PASSWORD, repeat=PASSWORD)
    assert str(by_name.value) == str(by_email.value) == auth.REGISTRATION_CONFLICT
    assert "username" not in auth.REGISTRATION_CONFLICT.split(".")[0] and "taken" not in auth.REGISTRATION_CONFLICT


def test_registrations_from_one_address_slow_down(db: Store) -> None:
    """FREE_REGISTRATIONS accounts from one address at once, then each next one waits; other
    addresses, and clients whose address is unknown, are not held up; refused forms do not count."""
    now = 3_000_000.0

    def new(name: str, client: str | None, at: float = now, password: str = PASSWORD):
        fields = {"name": name.title(), "email": f"{name}@example.com", "password": password, "repeat": password}
        return auth.register(db, username=name, client=client, now=at, **fields)

    with pytest.raises(AuthError, match="at least 8"):
        new("weakling", "198.51.100.9", password="abc1")  # refused for its fields: not counted
    for index in range(auth.FREE_REGISTRATIONS):
        new(f"user{index}", "198.51.100.9")
    with pytest.raises(RegistrationThrottled, match="Wait 60 s") as throttled:
        new("one-more", "198.51.100.9")
    assert throttled.value.wait_s == pytest.approx(60.0) and db.get_user_by_username("one-more") is None
    new("elsewhere", "203.0.113.4")
    for index in range(auth.FREE_REGISTRATIONS + 2):
        new(f"local{index}", None)  # this machine, or a proxy without X-Forwarded-For: never held up
        new(f"unknown{index}", "unknown")
    assert new("one-more", "198.51.100.9", at=now + 61).username == "one-more"
    with pytest.raises(RegistrationThrottled, match="Wait 119 s"):  # 120 s from the last one: the wait doubles
        new("two-more", "198.51.100.9", at=now + 62)
    assert auth.registration_delay(50) == 3600.0


def test_update_profile_and_change_password(db: Store, alice) -> None:
    bob = auth.register(db, username="bob", name="Bob", email="bob@example.com", password=PASSWORD, repeat=PASSWORD)
    updated = auth.update_profile(db, alice, name="  Alice L. ", email="al@example.com")
    assert (updated.name, updated.email) == ("Alice L.", "al@example.com")
    with pytest.raises(AuthError, match="email is already taken"):
        auth.update_profile(db, alice, name="Alice", email="BOB@example.com")
    with pytest.raises(AuthError, match="valid email"):
        auth.update_profile(db, alice, name="Alice", email="nope")
    with pytest.raises(AuthError, match="current password is not correct"):
        auth.change_password(db, alice, current="wrong-pass1", new=NEW_PASSWORD, repeat=NEW_PASSWORD)
    with pytest.raises(AuthError, match="at least 8"):
        auth.change_password(db, alice, current=PASSWORD, new="short1", repeat="short1")
    before = db.session_of("alice")[1]
    assert auth.change_password(db, alice, current=PASSWORD, new=NEW_PASSWORD, repeat=NEW_PASSWORD) == before + 1
    assert db.session_of("alice")[1] == before + 1  # every earlier session cookie is revoked
    assert auth.attempt_login(db, "alice", NEW_PASSWORD).id == alice.id
    with pytest.raises(AuthError, match="Incorrect"):
        auth.attempt_login(db, "alice", PASSWORD)
    assert auth.attempt_login(db, "bob", PASSWORD).id == bob.id  # untouched


def test_wrong_password_and_unknown_user_get_the_same_message(db: Store, alice) -> None:
    with pytest.raises(AuthError) as wrong:
        auth.attempt_login(db, "alice", "wrong-pass1")
    with pytest.raises(AuthError) as unknown:
        auth.attempt_login(db, "nobody", "wrong-pass1")
    assert str(wrong.value) == str(unknown.value) == auth.INVALID_CREDENTIALS
    with pytest.raises(AuthError, match="Enter your username and password"):
        auth.attempt_login(db, "alice", "")


def test_backoff_delays() -> None:
    assert [auth.backoff_delay(n) for n in range(1, 7)] == [0, 0, 2, 4, 8, 16]
    assert auth.backoff_delay(50) == auth.MAX_DELAY_S


@pytest.mark.parametrize("username", ["alice", "ghost"])
def test_repeated_failures_back_off_then_recover(db: Store, alice, username: str) -> None:
    """Three failures start an exponential wait (known and unknown users alike); it expires, never locks."""
    now = 1_000_000.0
    for _ in range(2):
        with pytest.raises(AuthError, match="Incorrect"):
            auth.attempt_login(db, username, "wrong-pass1", now=now)
        assert auth.login_wait(db, username, now=now) == 0
    with pytest.raises(AuthError, match="Incorrect"):
        auth.attempt_login(db, username.upper(), "wrong-pass1", now=now)
    assert auth.login_wait(db, username, now=now) == pytest.approx(2.0)
    with pytest.raises(LoginThrottled, match="Wait 1 s") as throttled:  # even the right password waits
        auth.attempt_login(db, username, PASSWORD, now=now + 1)
    assert throttled.value.wait_s == pytest.approx(1.0)
    scoped, overall = auth.throttle_keys(username, None)
    assert db.login_state(scoped)[0] == 3 and db.login_state(overall)[0] == 3  # a refused try is not counted
    with pytest.raises(AuthError, match="Incorrect"):
        auth.attempt_login(db, username, "wrong-pass1", now=now + 2.5)
    assert auth.login_wait(db, username, now=now + 2.5) == pytest.approx(4.0)
    if username == "alice":
        assert auth.attempt_login(db, "alice", PASSWORD, now=now + 7).id == alice.id
        assert db.login_state(scoped) == (0, 0.0) and db.login_state(overall) == (0, 0.0)
    assert auth.login_wait(db, "someone-else", now=now) == 0  # per username


def test_an_open_session_is_no_password_oracle(db: Store, alice) -> None:
    """Changing the password or deleting the account checks the current one under the login backoff,
    with the same counters: guesses there slow down logins from that client too, and the reverse."""
    for _ in range(auth.FREE_ATTEMPTS - 1):
        with pytest.raises(AuthError, match="current password is not correct"):
            auth.change_password(db, alice, current="guess-pass1", new=NEW_PASSWORD, repeat=NEW_PASSWORD, client="c1")
    with pytest.raises(AuthError, match="password is not correct"):
        auth.delete_account(db, alice, password="guess-pass2", confirmation="alice", client="c1")
    with pytest.raises(LoginThrottled):  # even the right password waits now
        auth.delete_account(db, alice, password=PASSWORD, confirmation="alice", client="c1")
    with pytest.raises(LoginThrottled):
        auth.attempt_login(db, "alice", PASSWORD, client="c1")
    assert db.get_user(alice.id) is not None and auth.login_wait(db, "alice", "c2") == 0
    assert auth.check_own_password(db, alice, PASSWORD, client="c1", now=time.time() + auth.BASE_DELAY_S + 1)
    scoped, overall = auth.throttle_keys("alice", "c1")
    assert db.login_state(scoped)[0] == 0 and db.login_state(overall)[0] == 0  # a success clears both


def test_an_attacker_on_one_client_does_not_lock_the_owner_out(db: Store, alice) -> None:
    """Failures from one client slow that client; the owner elsewhere logs in at once. Only a
    per-username total of GLOBAL_FREE_ATTEMPTS failures slows every client down."""
    now = 2_000_000.0
    for _ in range(auth.FREE_ATTEMPTS):
        with pytest.raises(AuthError, match="Incorrect"):
            auth.attempt_login(db, "alice", "wrong-pass1", now=now, client="10.0.0.66")
    with pytest.raises(LoginThrottled):
        auth.attempt_login(db, "alice", "wrong-pass1", now=now, client="10.0.0.66")
    assert auth.login_wait(db, "alice", "10.0.0.66", now=now) > 0
    assert auth.login_wait(db, "alice", "192.168.1.5", now=now) == 0
    assert auth.attempt_login(db, "alice", PASSWORD, now=now, client="192.168.1.5").id == alice.id
    # Many clients together: the per-username cap.
    for index in range(auth.GLOBAL_FREE_ATTEMPTS):
        with pytest.raises(AuthError, match="Incorrect"):
            auth.attempt_login(db, "alice", "wrong-pass1", now=now + 1, client=f"10.1.{index}.1")
    with pytest.raises(LoginThrottled):
        auth.attempt_login(db, "alice", PASSWORD, now=now + 1, client="192.168.1.5")
    assert auth.global_backoff_delay(auth.GLOBAL_FREE_ATTEMPTS) == auth.BASE_DELAY_S


def test_concurrent_attempts_get_at_most_the_allowed_checks(db: Store, alice) -> None:
    """20 simultaneous attempts for one username from one client: the check and the record are one
    transaction, so no more passwords are checked than FREE_ATTEMPTS sequential failures allow."""
    import threading

    checks: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def slow_check(username: str, password: str) -> bool:
        with lock:
            checks.append(password)
        threading.Event().wait(0.05)  # a bcrypt-long check widens any race between check and record
        return False

    outcomes: list[str] = []

    def attempt() -> None:
        start.wait()
        try:
            auth.attempt_login(db, "alice", "wrong-pass1", check=slow_check, client="10.0.0.66")
        except LoginThrottled:
            outcomes.append("throttled")
        except AuthError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 20
    assert len(checks) <= auth.FREE_ATTEMPTS, checks
    assert outcomes.count("refused") == len(checks) and outcomes.count("throttled") == 20 - len(checks)


def test_session_tokens_are_revoked_by_the_session_version(db: Store, alice) -> None:
    key = "k" * 48
    token, expires = auth.issue_session_token("alice", db.session_of("alice"), key, now=100.0)
    assert expires == pytest.approx(100.0 + auth.COOKIE_EXPIRY_DAYS * 86_400)
    assert auth.read_session_token(db, token, key, now=200.0) == ("alice", (alice.id, 0))
    assert auth.read_session_token(db, token, "another-key" * 4, now=200.0) is None  # forged
    assert auth.read_session_token(db, token, key, now=expires + 1) is None  # expired
    assert auth.read_session_token(db, "garbage", key) is None and auth.read_session_token(db, None, key) is None
    db.bump_session_version(alice.id)  # logout
    assert auth.read_session_token(db, token, key, now=200.0) is None
    fresh, _ = auth.issue_session_token("alice", db.session_of("alice"), key, now=300.0)
    assert auth.read_session_token(db, fresh, key, now=400.0) == ("alice", (alice.id, 1))
    auth.change_password(db, alice, current=PASSWORD, new=NEW_PASSWORD, repeat=NEW_PASSWORD)
    assert auth.read_session_token(db, fresh, key, now=400.0) is None
    import jwt

    legacy = jwt.encode({"username": "alice", "exp_date": 10.0**10}, key, algorithm="HS256")  # no version
    assert auth.read_session_token(db, legacy, key) is None
    no_id = jwt.encode({"username": "alice", "exp_date": 10.0**10, "sv": 2}, key, algorithm="HS256")  # before ids
    assert auth.read_session_token(db, no_id, key) is None


def test_a_deleted_accounts_cookie_does_not_open_a_new_account_of_the_same_name(db: Store, alice) -> None:
    """Session versions start at 0 for every account: the id in the cookie tells the two alices apart."""
    key = "k" * 48
    token, _ = auth.issue_session_token("alice", db.session_of("alice"), key)
    assert auth.read_session_token(db, token, key) is not None
    auth.delete_account(db, alice, password=PASSWORD, confirmation="ALICE")
    assert auth.read_session_token(db, token, key) is None
    again = auth.register(
        db, username="alice", name="Another", email="other@example.com", password=NEW_PASSWORD, repeat=NEW_PASSWORD
    )
    assert again.id != alice.id and db.session_of("alice") == (again.id, 0)
    assert auth.read_session_token(db, token, key) is None


def test_delete_account_checks_the_password_and_the_typed_username(db: Store, alice) -> None:
    face = {"box": [0, 0, 9, 9], "label": "happy", "confidence": 0.9, "scores": {"happy": 0.9}}
    db.add_analysis(alice.id, source="photo", model="m", detector="haar", faces=[face], image=b"\xff\xd8 jpeg")
    with pytest.raises(AuthError, match="Type your username, alice"):
        auth.delete_account(db, alice, password=PASSWORD, confirmation="bob")
    with pytest.raises(AuthError, match="password is not correct"):
        auth.delete_account(db, alice, password="wrong-pass-1", confirmation="alice")
    assert db.get_user(alice.id) is not None and db.count_analyses(alice.id)["total"] == 1  # nothing went
    assert auth.delete_account(db, alice, password=PASSWORD, confirmation=" Alice ") == 1
    assert db.get_user(alice.id) is None and db.password_hash("alice") is None
    with pytest.raises(AuthError, match="no longer exists"):
        auth.delete_account(db, alice, password=PASSWORD, confirmation="alice")


def test_check_callable_decides(db: Store, alice) -> None:
    seen: list[tuple[str, str]] = []

    def check(username: str, password: str) -> bool:
        seen.append((username, password))
        return auth.verify_password(password, db.password_hash(username))

    assert auth.attempt_login(db, " ALICE ", PASSWORD, check=check).id == alice.id
    assert seen == [("alice", PASSWORD)]


def test_credentials_round_trip(db: Store, alice) -> None:
    credentials = auth.load_credentials(db)
    entry = credentials["usernames"]["alice"]
    assert entry == {"name": "Alice Liddell", "email": "alice@example.com", "password": db.password_hash("alice")}
    assert auth.save_credentials(db, credentials) == 0
    entry["name"] = "Changed"
    entry["failed_login_attempts"] = 2  # what the library adds is ignored
    credentials["usernames"]["carl"] = {
        "first_name": "Carl",
        "last_name": "C",
        "email": "carl@example.com",
        "password": auth.hash_password("carl-mauve-kettle1"),
    }
    assert auth.save_credentials(db, credentials) == 2
    assert db.get_user_by_username("alice").name == "Changed"
    assert db.get_user_by_username("carl").name == "Carl C"
    assert auth.attempt_login(db, "carl", "carl-mauve-kettle1").username == "carl"
    credentials["usernames"]["dan"] = {"name": "Dan", "email": "dan@example.com", "password": "plain-text1"}
    with pytest.raises(ValueError, match="non-bcrypt"):
        auth.save_credentials(db, credentials)
    assert db.get_user_by_username("dan") is None


def test_save_only_what_changed_since_loading(db: Store, alice) -> None:
    loaded = auth.load_credentials(db)
    snapshot = copy.deepcopy(loaded)
    auth.update_profile(db, alice, name="Changed elsewhere", email="elsewhere@example.com")  # another session
    loaded["usernames"]["alice"]["logged_in"] = True  # what the library changes is not persisted
    assert auth.save_credentials(db, loaded, snapshot) == 0
    assert db.get_user_by_username("alice").name == "Changed elsewhere"
    loaded["usernames"]["alice"]["password"] = auth.hash_password("other-pass1")
    assert auth.save_credentials(db, loaded, snapshot) == 1
    assert auth.attempt_login(db, "alice", "other-pass1").id == alice.id


def test_cookie_key_from_env_then_file_then_generated(tmp_path: Path, monkeypatch) -> None:
    secrets_path = tmp_path / ".streamlit" / "secrets.toml"
    monkeypatch.setenv(auth.COOKIE_KEY_ENV, "from-the-environment")
    assert auth.cookie_key(secrets_path) == "from-the-environment"
    assert not secrets_path.exists()
    monkeypatch.delenv(auth.COOKIE_KEY_ENV)
    key = auth.cookie_key(secrets_path)
    assert len(key) >= 48
    assert stat.S_IMODE(secrets_path.stat().st_mode) == 0o600
    assert tomllib.loads(secrets_path.read_text())["cookie_key"] == key
    assert auth.cookie_key(secrets_path) == key  # stable once written


def test_cookie_key_keeps_other_secrets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(auth.COOKIE_KEY_ENV, raising=False)
    secrets_path = tmp_path / "secrets.toml"
    secrets_path.write_text('other = "value"')
    key = auth.cookie_key(secrets_path)
    assert tomllib.loads(secrets_path.read_text()) == {"other": "value", "cookie_key": key}
