"""Account logic that is not tied to the UI: validation, bcrypt hashing, login backoff, session
tokens and the cookie key, and the credentials dict that streamlit-authenticator works on (loaded
from and saved to the SQLite store, never to YAML).

Sessions, in one place:

* A successful login writes a cookie ``COOKIE_NAME`` holding a JWT (HS256, signed with
  ``cookie_key()``): the username, its expiry (``COOKIE_EXPIRY_DAYS`` after the login; the browser
  drops the cookie then too), the account's id and its ``session_version`` at issue time. The id
  matters once an account is deleted: its username may be taken again, by another account.
* Revocation: the store keeps one session version per account. Logging out and changing the
  password bump it, so every cookie issued before (in any browser) stops working, and every open
  session of that account meets the login page on its next interaction. A cookie is accepted only
  when its signature, expiry, username, account id and version all check out (``read_session_token``).
  Deleting the account ends its sessions the same way.
* Login backoff: every attempt is reserved in the store in one transaction before the password is
  checked, keyed by username and client (IP address); a much higher per-username cap bounds a
  distributed guess. So an attacker hammering a name from one client slows down only that client.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import bcrypt
import jwt
from zxcvbn import zxcvbn

from emotion.config import COOKIE_KEY_ENV, SECRETS_PATH
from studio.store import DuplicateUserError, Store, User

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 72  # bcrypt's limit
# zxcvbn's score (0-4, an estimate of guesses needed from common-password lists, dictionaries,
# names, dates and keyboard patterns); 2 means over about 10^6 guesses: below it a password falls to
# an online guessing run despite the backoff, so it is refused with zxcvbn's own explanation.
MIN_PASSWORD_SCORE = 2
FREE_ATTEMPTS = 3  # failures per username and client before the backoff starts
GLOBAL_FREE_ATTEMPTS = 50  # failures per username from all clients together before it starts
BASE_DELAY_S = 2.0
MAX_DELAY_S = 300.0
BCRYPT_ROUNDS = 12
# Registrations per client address (its IP) before each next one waits (doubling from 60 s, at most an
# hour; the count fades a day after the last one): bulk sign-ups, and guessing which usernames exist
# by trying to register them, slow down. A client whose address is unknown (the app reached from this
# machine, or behind a proxy that does not send X-Forwarded-For: docs/DEPLOY.md) is not counted, so a
# misconfigured proxy never blocks every sign-up.
FREE_REGISTRATIONS = 5
UNKNOWN_CLIENT = "unknown"  # pages.common.client_id when the server does not know the address
COOKIE_NAME = "emotion_studio_session"
COOKIE_EXPIRY_DAYS = 7.0  # how long a session cookie keeps a browser logged in (unless revoked first)

INVALID_CREDENTIALS = "Incorrect username or password."
# Registration never says which of username or email is taken: that would tell anyone whether a
# person has an account.
REGISTRATION_CONFLICT = "This account cannot be created with these details. Choose another username or email."
_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,31}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class AuthError(ValueError):
    """A problem with what the user entered; the message is meant for the user."""


class RegistrationThrottled(AuthError):
    """Too many accounts created lately from this client address: ``wait_s`` seconds before the next."""

    def __init__(self, wait_s: float) -> None:
        seconds = max(1, round(wait_s))
        super().__init__(f"Too many accounts were created from your address lately. Wait {seconds} s and try again.")
        self.wait_s = wait_s


class LoginThrottled(AuthError):
    """Too many recent failures for this username: ``wait_s`` seconds before the next try."""

    def __init__(self, wait_s: float) -> None:
        seconds = max(1, round(wait_s))
        super().__init__(f"Too many failed attempts. Wait {seconds} s before trying again.")
        self.wait_s = wait_s


# --- validation -------------------------------------------------------------------------------------


def normalize_username(username: str) -> str:
    """Usernames are case-insensitive and stored lower-case, as streamlit-authenticator expects."""
    return (username or "").strip().lower()


def validate_username(username: str) -> str:
    """The normalised username, or AuthError."""
    value = normalize_username(username)
    if not value:
        raise AuthError("Enter a username.")
    if not _USERNAME_RE.match(value):
        raise AuthError(
            "Username: 3 to 32 characters: letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    return value


def validate_name(name: str) -> str:
    """The trimmed display name, or AuthError."""
    value = (name or "").strip()
    if not value:
        raise AuthError("Enter your name.")
    if len(value) > 100 or _CONTROL_RE.search(value):
        raise AuthError("Name: at most 100 characters, no control characters.")
    return value


def validate_email(email: str) -> str:
    """The trimmed email, or AuthError."""
    value = (email or "").strip()
    if not value:
        raise AuthError("Enter an email address.")
    if len(value) > 254 or not _EMAIL_RE.match(value):
        raise AuthError("Enter a valid email address, like name@example.com.")
    return value


def validate_password(password: str, repeat: str | None = None, user_inputs: tuple[str, ...] = ()) -> str:
    """The password itself (never trimmed), or AuthError: 8+ characters with a letter and a digit, and
    not easily guessed (zxcvbn score MIN_PASSWORD_SCORE or more; user_inputs are the account's own
    name, username and email, which zxcvbn counts as guessable too)."""
    if not password:
        raise AuthError("Enter a password.")
    if password != password.strip():
        raise AuthError("Password must not start or end with a space.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"Password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise AuthError(f"Password must be at most {MAX_PASSWORD_BYTES} bytes long.")
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        raise AuthError("Password must contain at least one letter and one digit.")
    if repeat is not None and password != repeat:
        raise AuthError("The two passwords do not match.")
    # Whole fields and their words ("Alice Liddell" -> alice, liddell): zxcvbn matches whole tokens.
    words = {part.lower() for value in user_inputs for part in (value, *re.split(r"[\W_]+", value or "")) if part}
    strength = zxcvbn(password, user_inputs=sorted(words))
    if strength["score"] < MIN_PASSWORD_SCORE:
        warning = strength["feedback"].get("warning") or "This password is too easy to guess."
        hint = " ".join(strength["feedback"].get("suggestions") or [])
        raise AuthError(f"{warning} Choose a less common password. {hint}".strip())
    return password


# --- hashing ----------------------------------------------------------------------------------------


@cache
def _dummy_hash() -> str:
    """A real hash of a random password, checked for unknown users so both cases cost one bcrypt."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def hash_password(password: str) -> str:
    """A bcrypt hash (the only kind the store keeps)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def verify_password(password: str, password_hash: str | None) -> bool:
    """True when password matches; an unknown user (None) still costs one bcrypt check."""
    try:
        ok = bcrypt.checkpw((password or "").encode(), (password_hash or _dummy_hash()).encode())
    except ValueError:  # over 72 bytes, or a malformed hash
        return False
    return ok and password_hash is not None


def is_bcrypt_hash(value: str) -> bool:
    """Whether value looks like a bcrypt hash."""
    return bool(re.match(r"^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$", value or ""))


# --- accounts ---------------------------------------------------------------------------------------


def register(
    store: Store,
    *,
    username: str,
    name: str,
    email: str,
    password: str,
    repeat: str,
    client: str | None = None,
    now: float | None = None,
) -> User:
    """Validate and create an account; AuthError (including duplicates) with a user-facing message.
    Valid attempts from a known client address are counted: RegistrationThrottled past
    FREE_REGISTRATIONS (a form refused for its fields is not counted)."""
    username = validate_username(username)
    name, email = validate_name(name), validate_email(email)
    validate_password(password, repeat, (username, name, email))
    if client and client != UNKNOWN_CLIENT:
        key = f"#register\x1f{client[:64]}"  # '#' starts no username: no clash with throttle_keys
        wait = store.reserve_login_attempt(((key, registration_delay),), time.time() if now is None else now)
        if wait > 0:
            raise RegistrationThrottled(wait)
    try:
        return store.create_user(username, name, email, hash_password(password))
    except DuplicateUserError:  # the same words whichever field is taken (see REGISTRATION_CONFLICT)
        log.info("registration refused: username or email taken")
        raise AuthError(REGISTRATION_CONFLICT) from None


def update_profile(store: Store, user: User, *, name: str, email: str) -> User:
    """Change name and email after validation; AuthError when invalid or the email is taken."""
    try:
        return store.update_user(user.id, name=validate_name(name), email=validate_email(email))
    except AuthError:
        raise
    except ValueError as error:
        raise AuthError(str(error)) from error


def check_own_password(
    store: Store, user: User, password: str, client: str | None = None, now: float | None = None
) -> bool:
    """Whether ``password`` is this logged-in account's, under the login backoff (the same counters as
    logging in): a session left open in someone else's reach must not become a password oracle that
    answers as fast as bcrypt allows. LoginThrottled while the account waits; a success clears it."""
    return _throttled_check(
        store, user.username, client, now, lambda: verify_password(password, store.password_hash(user.username))
    )


def change_password(store: Store, user: User, *, current: str, new: str, repeat: str, client: str | None = None) -> int:
    """Replace the password after checking the current one (check_own_password: throttled); every
    session issued before is revoked. Returns the new session version (the caller reissues its own
    session under it)."""
    if not check_own_password(store, user, current, client):
        raise AuthError("The current password is not correct.")
    validate_password(new, repeat, (user.username, user.name, user.email))
    if new == current:
        raise AuthError("The new password must differ from the current one.")
    return store.set_password_hash(user.id, hash_password(new))


def delete_account(store: Store, user: User, *, password: str, confirmation: str, client: str | None = None) -> int:
    """Delete the account, its analyses and their files, after checking its password (throttled, as in
    check_own_password) and that ``confirmation`` is its username as typed (any case). Every session of
    it ends with it. Returns how many analyses went; AuthError when a check fails (nothing is deleted)."""
    if normalize_username(confirmation) != normalize_username(user.username):
        raise AuthError(f"Type your username, {user.username}, to confirm.")
    gone = AuthError("This account no longer exists.")  # deleted from another tab meanwhile
    if store.get_user(user.id) is None:
        raise gone
    if not check_own_password(store, user, password, client):
        raise AuthError("The password is not correct.")
    deleted = store.delete_user(user.id, login_keys_prefix=throttle_prefix(user.username))
    if deleted is None:
        raise gone
    log.info("user %s deleted their account and %d analyses", user.username, deleted)
    return deleted


# --- login backoff ----------------------------------------------------------------------------------


def backoff_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failures: none for the first few, then doubling."""
    if failures < FREE_ATTEMPTS:
        return 0.0
    return min(BASE_DELAY_S * 2 ** (failures - FREE_ATTEMPTS), MAX_DELAY_S)


def registration_delay(registrations: int) -> float:
    """Seconds before the next registration from a client that made ``registrations`` lately."""
    if registrations < FREE_REGISTRATIONS:
        return 0.0
    return min(60.0 * 2 ** (registrations - FREE_REGISTRATIONS), 3600.0)


def global_backoff_delay(failures: int) -> float:
    """The per-username cap over all clients: the same doubling, from GLOBAL_FREE_ATTEMPTS failures."""
    return backoff_delay(failures - GLOBAL_FREE_ATTEMPTS + FREE_ATTEMPTS) if failures >= GLOBAL_FREE_ATTEMPTS else 0.0


def throttle_prefix(username: str) -> str:
    """What every login_attempts key of this username starts with (Store.delete_user clears them)."""
    return f"{normalize_username(username)[:64]}\x1f"


def throttle_keys(username: str, client: str | None) -> tuple[str, str]:
    """(per username and client, per username) keys of the login_attempts table."""
    prefix = throttle_prefix(username)
    return f"{prefix}{(client or UNKNOWN_CLIENT)[:64]}", f"{prefix}*"


def _throttled_check(
    store: Store, username: str, client: str | None, now: float | None, check: Callable[[], bool]
) -> bool:
    """One password check under the login backoff: the attempt is reserved (checked and recorded in one
    transaction; LoginThrottled while the username waits), then ``check()`` runs, and a success clears
    the username's failures from this client and overall."""
    scoped, overall = throttle_keys(username, client)
    wait = store.reserve_login_attempt(
        ((scoped, backoff_delay), (overall, global_backoff_delay)), time.time() if now is None else now
    )
    if wait > 0:
        raise LoginThrottled(wait)
    if not check():
        log.info("failed password for %r from %s (%d in a row)", username, client, store.login_state(scoped)[0])
        return False
    store.clear_login_failures(scoped, overall)
    return True


def login_wait(store: Store, username: str, client: str | None = None, now: float | None = None) -> float:
    """Seconds before this username may try again from this client (0 when it may try now)."""
    now = time.time() if now is None else now
    return max(0.0, *(store.login_state(key)[1] - now for key in throttle_keys(username, client)))


def attempt_login(
    store: Store,
    username: str,
    password: str,
    check: Callable[[str, str], bool] | None = None,
    now: float | None = None,
    client: str | None = None,
) -> User:
    """Log in with backoff: LoginThrottled while the username waits, AuthError on bad credentials.

    ``check(username, password)`` verifies the pair; the app passes streamlit-authenticator's login,
    the default verifies the bcrypt hash in the store. ``client`` identifies the caller (its IP
    address): backoff is counted per username and client, with a higher cap per username. The attempt
    is reserved in the store (checked and recorded in one transaction) before the password is
    checked, so concurrent attempts get no more checks than sequential ones. Unknown users and wrong
    passwords are treated alike: same message, same bcrypt cost, same backoff.
    """
    key = normalize_username(username)[:64]
    if not key or not password:
        raise AuthError("Enter your username and password.")
    user = None

    def checked() -> bool:
        nonlocal user
        user = store.get_user_by_username(key)
        if user is None:
            return verify_password(password, None)  # False, at one bcrypt's cost like a wrong password
        return (check or (lambda u, p: verify_password(p, store.password_hash(u))))(key, password)

    if not _throttled_check(store, key, client, now, checked) or user is None:
        raise AuthError(INVALID_CREDENTIALS)
    return user


# --- session tokens ---------------------------------------------------------------------------------


def issue_session_token(
    username: str, session: tuple[int, int], key: str, now: float | None = None
) -> tuple[str, float]:
    """(the signed cookie value, its expiry as unix time) for a session of ``username`` under
    ``session``, the account's (id, session version) from Store.session_of. The claims keep
    streamlit-authenticator's names (username, exp_date) and add ``uid`` and ``sv``."""
    expires = (time.time() if now is None else now) + COOKIE_EXPIRY_DAYS * 86_400
    user_id, version = session
    claims = {"username": username, "exp_date": expires, "uid": int(user_id), "sv": int(version)}
    return jwt.encode(claims, key, algorithm="HS256"), expires


def read_session_token(
    store: Store, token: str | None, key: str, now: float | None = None
) -> tuple[str, tuple[int, int]] | None:
    """(username, (account id, session version)) of a cookie that is still valid: signed with ``key``,
    not expired, naming the account it was issued for, whose session version is still the one it was
    issued under; else None."""
    if not token:
        return None
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    username, expires = claims.get("username"), claims.get("exp_date")
    session = (claims.get("uid"), claims.get("sv"))
    if not isinstance(username, str) or not all(isinstance(v, int) for v in session):
        return None  # includes cookies from before account ids were in them: they no longer log in
    if not isinstance(expires, (int, float)) or expires <= (time.time() if now is None else now):
        return None
    return (username, session) if store.session_of(username) == session else None


# --- streamlit-authenticator credentials ------------------------------------------------------------


def load_credentials(store: Store) -> dict[str, Any]:
    """The credentials dict streamlit-authenticator expects, built from the users table."""
    return {
        "usernames": {
            row["username"]: {"name": row["name"], "email": row["email"], "password": row["password_hash"]}
            for row in store.credential_rows()
        }
    }


def _persisted(entry: dict[str, Any] | None) -> tuple[str, str, str] | None:
    """The fields of a credentials entry that the users table keeps: (name, email, password hash)."""
    if entry is None:
        return None
    name = entry.get("name") or f"{entry.get('first_name', '')} {entry.get('last_name', '')}".strip()
    return name, entry.get("email", ""), entry.get("password", "")


def save_credentials(store: Store, credentials: dict[str, Any], loaded: dict[str, Any] | None = None) -> int:
    """Write users added or changed in the dict back to SQLite (bcrypt hashes only); returns how many.

    With ``loaded`` (a deep copy taken when the dict was loaded) only entries changed since then are
    written, so a dict loaded before another session changed an account cannot undo that change.
    """
    reference = (loaded if loaded is not None else load_credentials(store))["usernames"]
    changed = 0
    for username, entry in credentials.get("usernames", {}).items():
        fields = _persisted(entry)
        if fields == _persisted(reference.get(username)):
            continue
        name, email, password = fields
        if not is_bcrypt_hash(password):
            raise ValueError(f"refusing to store a non-bcrypt password for {username!r}")
        user = store.get_user_by_username(username)
        if user is None:
            store.create_user(username, name, email, password)
        else:
            store.update_user(user.id, name=name, email=email)
            store.set_password_hash(user.id, password)
        changed += 1
    return changed


# --- cookie key -------------------------------------------------------------------------------------


def cookie_key(secrets_path: Path = SECRETS_PATH) -> str:
    """The cookie-signing key: env EMOTION_COOKIE_KEY, else ``cookie_key`` in secrets.toml, else a new
    random key written there (mode 0600; the file is git-ignored)."""
    from_env = os.environ.get(COOKIE_KEY_ENV, "").strip()
    if from_env:
        return from_env
    text = secrets_path.read_text(encoding="utf-8") if secrets_path.exists() else ""
    existing = tomllib.loads(text).get("cookie_key") if text else None
    if isinstance(existing, str) and existing.strip():
        return existing.strip()
    key = secrets.token_urlsafe(48)
    secrets_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = secrets_path.with_name(f".{secrets_path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        prefix = text if not text or text.endswith("\n") else text + "\n"
        handle.write(f'{prefix}cookie_key = "{key}"\n')
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, secrets_path)
    os.chmod(secrets_path, 0o600)
    log.info("generated a new cookie key in %s", secrets_path)
    return key
