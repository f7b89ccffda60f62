"""The SQLite store of users, saved analyses and login throttling (sqlite-utils on SQLite).

Design rules, all enforced here:

* A short-lived connection per operation (and so per thread); WAL journal, foreign keys on and a busy
  timeout on every connection.
* Writes are serialised by a process-wide lock plus ``BEGIN IMMEDIATE`` (which serialises processes).
* An image or video file is written atomically (temporary file, fsync, rename) before the row that
  points at it is committed, so a committed row never names a half-written file.
* Every read, download and delete of an analysis is filtered by ``user_id``. Files live under
  ``media/<user_id>/`` with random names; nothing a user typed becomes part of a path.
* The schema is versioned (table ``schema_version``); migrations run when a Store is opened.
* Ids are never reused (``AUTOINCREMENT``): a deleted analysis's id, or a deleted account's id (and
  so its media folder), never passes to a new row.
* Each account has a ``session_version``; a session cookie carries the version it was issued under
  and is accepted only while it matches (studio.auth states the rule). Changing the password bumps it.
* Login throttling checks and records an attempt in one transaction (``reserve_login_attempt``).
* ``sweep()`` (run once per process by ``get_store``) removes media files no row points to, stale
  temporary files that a killed writer left behind, and stale video and dataset-explorer folders under
  the system temp dir.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from emotion import config

log = logging.getLogger(__name__)

SOURCES = ("photo", "snapshot", "video")
MEDIA_EXTENSIONS = frozenset({"mp4", "webm", "avi", "mov", "mkv", "gif"})
IMAGE_EXTENSIONS = frozenset({"jpg", "png"})  # the annotated picture: JPEG; PNG in analyses older versions saved
BUSY_TIMEOUT_MS = 30_000
SCHEMA_VERSION = 4
# The sweep leaves younger files alone: a writer may have written its file and not yet its row.
SWEEP_GRACE_S = 15 * 60
VIDEO_TMP_PREFIX = "emotion-video-"  # emotion.video's temporary folders under the system temp dir
EDA_TMP_PREFIX = "emotion-eda-"  # the dataset explorer's extracted zips, there too
_WRITE_LOCK = threading.RLock()  # process-wide: one writer at a time in this process


class DuplicateUserError(ValueError):
    """A username or email that another account already uses; ``field`` says which."""

    def __init__(self, field_name: str) -> None:
        super().__init__(f"That {field_name} is already taken.")
        self.field = field_name


class NoSuchUserError(ValueError):
    """An analysis saved for an account that is not there (deleted from another session meanwhile)."""

    def __init__(self) -> None:
        super().__init__("this account no longer exists")


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer version of the studio."""


@dataclass
class User:
    """An account, without its password hash."""

    id: int
    username: str
    name: str
    email: str
    created_at: str


@dataclass
class Analysis:
    """One saved analysis of a photo, webcam snapshot or video."""

    id: int
    user_id: int
    created_at: str
    source: str
    model: str
    detector: str
    faces: list[dict]
    original_name: str | None = None
    title: str | None = None
    extra: dict = field(default_factory=dict)
    has_image: bool = False
    has_media: bool = False
    content_key: str | None = None
    image_ext: str | None = None  # the kept files' kinds ("jpg", "mp4"...), None when there is none
    media_ext: str | None = None


def utc_now(timespec: str = "microseconds") -> str:
    """The current time as ISO-8601 UTC ("2026-11-21T06:00:00.123456+00:00"; microseconds by default,
    so rows made one after another sort as text in the order they were made)."""
    return datetime.now(UTC).isoformat(timespec=timespec)


# --- schema -----------------------------------------------------------------------------------------


def _migration_1(db: sqlite_utils.Database) -> None:
    """Users, analyses and login throttling."""
    db.execute(
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            name TEXT NOT NULL,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE analyses (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('photo', 'snapshot', 'video')),
            model TEXT NOT NULL,
            detector TEXT NOT NULL,
            faces TEXT NOT NULL,
            image_file TEXT,
            media_file TEXT,
            original_name TEXT)"""
    )
    db.execute(
        """CREATE TABLE login_attempts (
            username TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            locked_until REAL NOT NULL,
            updated_at TEXT NOT NULL)"""
    )


def _migration_2(db: sqlite_utils.Database) -> None:
    """Titles and free-form extras on analyses, and an index for per-user, newest-first listing."""
    analyses = db.table("analyses")
    analyses.add_column("title", str)
    analyses.add_column("extra", str, not_null_default="{}")
    analyses.create_index(["user_id", "created_at"], index_name="idx_analyses_user_time")


def _migration_3(db: sqlite_utils.Database) -> None:
    """AUTOINCREMENT ids for users and analyses (a deleted id is never handed out again), and a
    session version per user. SQLite cannot add AUTOINCREMENT to a table, so both are rebuilt with
    their rows and ids kept (migrate() runs this with foreign keys off, checked before commit)."""
    db.execute(
        """CREATE TABLE users_v3 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            name TEXT NOT NULL,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            session_version INTEGER NOT NULL DEFAULT 0)"""
    )
    db.execute(
        "INSERT INTO users_v3 (id, username, name, email, password_hash, created_at) "
        "SELECT id, username, name, email, password_hash, created_at FROM users"
    )
    db.execute(
        """CREATE TABLE analyses_v3 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('photo', 'snapshot', 'video')),
            model TEXT NOT NULL,
            detector TEXT NOT NULL,
            faces TEXT NOT NULL,
            image_file TEXT,
            media_file TEXT,
            original_name TEXT,
            title TEXT,
            extra TEXT NOT NULL DEFAULT '{}')"""
    )
    columns = "id, user_id, created_at, source, model, detector, faces, image_file, media_file, original_name, title"
    db.execute(f"INSERT INTO analyses_v3 ({columns}, extra) SELECT {columns}, COALESCE(extra, '{{}}') FROM analyses")
    db.execute("DROP TABLE analyses")
    db.execute("DROP TABLE users")
    db.execute("ALTER TABLE users_v3 RENAME TO users")
    db.execute("ALTER TABLE analyses_v3 RENAME TO analyses")
    db.execute("CREATE INDEX idx_analyses_user_time ON analyses (user_id, created_at)")


def _migration_4(db: sqlite_utils.Database) -> None:
    """A content key per analysis (hash of its input and options, see studio.analyses) and an index to
    find it, so that the same analysis is saved once; NULL for analyses saved before."""
    analyses = db.table("analyses")
    analyses.add_column("content_key", str)
    analyses.create_index(["user_id", "content_key"], index_name="idx_analyses_user_content")


MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    1: _migration_1,
    2: _migration_2,
    3: _migration_3,
    4: _migration_4,
}


def _schema_version(db: sqlite_utils.Database) -> int:
    if "schema_version" not in db.table_names():
        return 0
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


# --- connections ------------------------------------------------------------------------------------


def connect(path: Path) -> sqlite_utils.Database:
    """A new connection with the store's pragmas (autocommit mode: transactions are explicit)."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # WAL + NORMAL: a commit survives the process being killed (the WAL is in the OS cache) and the file
    # never corrupts; only a power cut may lose the last commits. Image files are fsynced regardless.
    conn.execute("PRAGMA synchronous = NORMAL")
    return sqlite_utils.Database(conn, execute_plugins=False)


@contextmanager
def _reading(path: Path) -> Iterator[sqlite_utils.Database]:
    db = connect(path)
    try:
        yield db
    finally:
        db.conn.close()


@contextmanager
def _writing(path: Path) -> Iterator[sqlite_utils.Database]:
    """One serialised write transaction: process lock, then BEGIN IMMEDIATE, COMMIT or ROLLBACK."""
    with _WRITE_LOCK, _reading(path) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.conn.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def migrate(path: Path, target: int = SCHEMA_VERSION) -> int:
    """Create or upgrade the database at path to ``target``, atomically; returns the version."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _reading(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
    # Foreign keys off while tables are rebuilt (SQLite's documented procedure: dropping the old users
    # table would otherwise cascade to every analysis); the pragma only takes effect outside a
    # transaction, and foreign_key_check verifies the result before the commit.
    with _WRITE_LOCK, _reading(path) as db:
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = _schema_version(db)
            if current > SCHEMA_VERSION:
                raise SchemaTooNewError(f"{path} has schema version {current}; this code knows up to {SCHEMA_VERSION}")
            for version in range(current + 1, target + 1):
                MIGRATIONS[version](db)
                db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", [version, utc_now()])
                log.info("store %s migrated to schema version %d", path, version)
            problems = db.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise RuntimeError(f"migration of {path} broke foreign keys: {problems[:5]}")
        except BaseException:
            if db.conn.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return max(current, target)


# --- files ------------------------------------------------------------------------------------------


def _write_atomic(folder: Path, data: bytes, ext: str) -> str:
    """Write data under folder with a random name (tmp, fsync, rename); returns the file name."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.{ext}"
    tmp = folder / f".{name}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / name)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return name


def _row_to_analysis(row: dict[str, Any]) -> Analysis:
    return Analysis(
        id=row["id"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        source=row["source"],
        model=row["model"],
        detector=row["detector"],
        faces=json.loads(row["faces"]),
        original_name=row["original_name"],
        title=row["title"],
        extra=json.loads(row["extra"] or "{}"),
        has_image=row["image_file"] is not None,
        has_media=row["media_file"] is not None,
        content_key=row.get("content_key"),
        image_ext=_extension(row["image_file"]),
        media_ext=_extension(row["media_file"]),
    )


def _extension(file_name: str | None) -> str | None:
    """'7/ab12.jpg' -> 'jpg'; None for no file."""
    return file_name.rsplit(".", 1)[-1].lower() if file_name and "." in file_name else None


def _row_to_user(row: dict[str, Any]) -> User:
    return User(row["id"], row["username"], row["name"], row["email"], row["created_at"])


def _time_bound(value: str, *, upper: bool) -> str:
    """An ISO date or datetime as a UTC ISO string; a date-only upper bound covers that whole day."""
    moment = datetime.fromisoformat(value)
    if upper and len(value) == 10:
        moment += timedelta(days=1) - timedelta(microseconds=1)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class Store:
    """Users and their saved analyses in one SQLite file, media files beside it."""

    def __init__(self, path: Path | None = None, media_root: Path | None = None) -> None:
        self.path = Path(path) if path is not None else config.db_path()
        self.media_root = Path(media_root) if media_root is not None else config.media_dir(self.path)
        migrate(self.path)
        # An idle connection held open for the Store's life: without it every short-lived connection
        # would be the last one to close, and SQLite checkpoints and removes the WAL on each close.
        self._keeper = sqlite3.connect(self.path, check_same_thread=False)
        self._keeper.execute("SELECT COUNT(*) FROM schema_version").fetchone()
        weakref.finalize(self, self._keeper.close)

    def close(self) -> None:
        """Release the idle keeper connection (operations still work, each on its own connection)."""
        self._keeper.close()

    def schema_version(self) -> int:
        """The highest migration applied to the file."""
        with _reading(self.path) as db:
            return _schema_version(db)

    # --- users --------------------------------------------------------------------------------------

    def create_user(self, username: str, name: str, email: str, password_hash: str) -> User:
        """Add an account; DuplicateUserError when the username or email is taken (any case)."""
        with _writing(self.path) as db:
            for column in ("username", "email"):
                value = username if column == "username" else email
                if db.execute(f"SELECT 1 FROM users WHERE {column} = ?", [value]).fetchone():
                    raise DuplicateUserError(column)
            created = utc_now()
            cursor = db.execute(
                "INSERT INTO users (username, name, email, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                [username, name, email, password_hash, created],
            )
            return User(cursor.lastrowid, username, name, email, created)

    def get_user(self, user_id: int) -> User | None:
        """The account with this id, or None."""
        with _reading(self.path) as db:
            rows = list(db.query("SELECT * FROM users WHERE id = ?", [user_id]))
        return _row_to_user(rows[0]) if rows else None

    def get_user_by_username(self, username: str) -> User | None:
        """The account with this username (case-insensitive), or None."""
        with _reading(self.path) as db:
            rows = list(db.query("SELECT * FROM users WHERE username = ?", [username]))
        return _row_to_user(rows[0]) if rows else None

    def update_user(self, user_id: int, *, name: str, email: str) -> User:
        """Change an account's display name and email; DuplicateUserError when the email is taken."""
        with _writing(self.path) as db:
            if db.execute("SELECT 1 FROM users WHERE email = ? AND id != ?", [email, user_id]).fetchone():
                raise DuplicateUserError("email")
            db.execute("UPDATE users SET name = ?, email = ? WHERE id = ?", [name, email, user_id])
            row = next(iter(db.query("SELECT * FROM users WHERE id = ?", [user_id])), None)
        if row is None:
            raise KeyError(f"no user {user_id}")
        return _row_to_user(row)

    def password_hash(self, username: str) -> str | None:
        """The stored bcrypt hash of an account, or None when there is no such user."""
        with _reading(self.path) as db:
            row = db.execute("SELECT password_hash FROM users WHERE username = ?", [username]).fetchone()
        return row[0] if row else None

    def set_password_hash(self, user_id: int, password_hash: str) -> int:
        """Replace an account's password hash; a new hash also bumps the session version (every session
        cookie issued before it stops working). Returns the session version now in force."""
        with _writing(self.path) as db:
            db.execute(
                "UPDATE users SET session_version = session_version + (password_hash != ?), password_hash = ? "
                "WHERE id = ?",
                [password_hash, password_hash, user_id],
            )
            row = db.execute("SELECT session_version FROM users WHERE id = ?", [user_id]).fetchone()
        return int(row[0]) if row else 0

    def session_of(self, username: str) -> tuple[int, int] | None:
        """(account id, session version) of this username, or None when there is no such user. A session
        is bound to both: a username freed by a deleted account and taken again is another account."""
        with _reading(self.path) as db:
            row = db.execute("SELECT id, session_version FROM users WHERE username = ?", [username]).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def delete_user(self, user_id: int, login_keys_prefix: str | None = None) -> int | None:
        """Delete an account with every analysis and file of it, and the login-throttling records whose
        keys start with ``login_keys_prefix`` (studio.auth.throttle_prefix); the number of analyses
        deleted, or None when there is no such account. Rows go first, in one transaction; then the
        account's media folder (a file left by a failed removal has no row and goes in the next sweep)."""
        with _writing(self.path) as db:
            if db.execute("SELECT 1 FROM users WHERE id = ?", [user_id]).fetchone() is None:
                return None
            count = db.execute("SELECT COUNT(*) FROM analyses WHERE user_id = ?", [user_id]).fetchone()[0]
            db.execute("DELETE FROM analyses WHERE user_id = ?", [user_id])
            db.execute("DELETE FROM users WHERE id = ?", [user_id])
            if login_keys_prefix:
                db.execute(
                    "DELETE FROM login_attempts WHERE substr(username, 1, ?) = ?",
                    [len(login_keys_prefix), login_keys_prefix],
                )
        shutil.rmtree(self.media_root / str(int(user_id)), ignore_errors=True)
        return int(count)

    def bump_session_version(self, user_id: int) -> int:
        """Revoke every session of this account issued so far (logout); returns the new version."""
        with _writing(self.path) as db:
            db.execute("UPDATE users SET session_version = session_version + 1 WHERE id = ?", [user_id])
            row = db.execute("SELECT session_version FROM users WHERE id = ?", [user_id]).fetchone()
        return int(row[0]) if row else 0

    def credential_rows(self) -> list[dict[str, Any]]:
        """username, name, email and password_hash of every account (for the authenticator)."""
        with _reading(self.path) as db:
            return list(db.query("SELECT username, name, email, password_hash FROM users ORDER BY id"))

    # --- login throttling ---------------------------------------------------------------------------

    def login_state(self, key: str) -> tuple[int, float]:
        """(failures, locked-until unix time) recorded for a throttling key."""
        with _reading(self.path) as db:
            row = db.execute("SELECT failures, locked_until FROM login_attempts WHERE username = ?", [key])
            found = row.fetchone()
        return (int(found[0]), float(found[1])) if found else (0, 0.0)

    def reserve_login_attempt(self, scopes: Sequence[tuple[str, Callable[[int], float]]], now: float) -> float:
        """Check and record one login attempt in a single write transaction.

        ``scopes``: (key, delay_for) pairs, e.g. one per username and client and one per username
        alone. When any key is locked at ``now``, nothing is recorded and the longest wait (seconds) is
        returned. Otherwise the attempt is counted as a failure under every key up front, each key's
        lock set to ``now + delay_for(failures)``, and 0.0 is returned: the caller may check the
        password once, and clears the keys on success. Since the check and the record are one
        transaction, concurrent attempts cannot all pass the check before any is recorded.
        """
        with _writing(self.path) as db:
            cutoff = (datetime.now(UTC) - timedelta(days=1)).isoformat()
            db.execute("DELETE FROM login_attempts WHERE updated_at < ? AND locked_until < ?", [cutoff, now])
            states = {}
            for key, _ in scopes:
                row = db.execute("SELECT failures, locked_until FROM login_attempts WHERE username = ?", [key])
                found = row.fetchone()
                states[key] = (int(found[0]), float(found[1])) if found else (0, 0.0)
            wait = max((locked - now for _, locked in states.values()), default=0.0)
            if wait > 0:
                return wait
            for key, delay_for in scopes:
                failures = states[key][0] + 1
                db.execute(
                    "INSERT OR REPLACE INTO login_attempts (username, failures, locked_until, updated_at) "
                    "VALUES (?, ?, ?, ?)",
                    [key, failures, now + delay_for(failures), utc_now()],
                )
        return 0.0

    def clear_login_failures(self, *keys: str) -> None:
        """Forget the failures recorded under these keys (after a successful login)."""
        with _writing(self.path) as db:
            for key in keys:
                db.execute("DELETE FROM login_attempts WHERE username = ?", [key])

    # --- analyses -----------------------------------------------------------------------------------

    def add_analysis(
        self,
        user_id: int,
        *,
        source: str,
        model: str,
        detector: str,
        faces: list[dict],
        image: bytes | None,
        image_ext: str = "jpg",
        original_name: str | None = None,
        title: str | None = None,
        media_bytes: bytes | None = None,
        media_ext: str | None = None,
        extra: dict | None = None,
        content_key: str | None = None,
    ) -> Analysis:
        """Save an analysis: files first (atomically), then the row; files are removed if the row fails.
        image: the annotated picture's encoded bytes, kept as a file with image_ext ("jpg" or "png").
        content_key: what find_analysis looks it up by (studio.analyses: hash of input and options)."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        ext = (media_ext or "").lower().lstrip(".")
        if image is not None and image_ext not in IMAGE_EXTENSIONS:
            raise ValueError(f"image_ext must be one of {sorted(IMAGE_EXTENSIONS)}, not {image_ext!r}")
        if media_bytes is not None and ext not in MEDIA_EXTENSIONS:
            raise ValueError(f"media_ext must be one of {sorted(MEDIA_EXTENSIONS)}, not {media_ext!r}")
        faces_json, extra_json = json.dumps(faces), json.dumps(extra or {})
        written: list[str] = []
        try:
            for data, file_ext in ((image, image_ext), (media_bytes, ext)):
                if data is not None:
                    written.append(
                        f"{int(user_id)}/{_write_atomic(self.media_root / str(int(user_id)), data, file_ext)}"
                    )
            image_file = written[0] if image is not None else None
            media_file = written[-1] if media_bytes is not None else None
            row = {
                "user_id": user_id, "created_at": utc_now(), "source": source, "model": model,
                "detector": detector, "faces": faces_json, "image_file": image_file, "media_file": media_file,
                "original_name": original_name, "title": title, "extra": extra_json, "content_key": content_key,
            }  # fmt: skip
            with _writing(self.path) as db:
                if db.execute("SELECT 1 FROM users WHERE id = ?", [user_id]).fetchone() is None:
                    raise NoSuchUserError
                columns = ", ".join(row)
                cursor = db.execute(
                    f"INSERT INTO analyses ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values())
                )
        except BaseException as error:
            for name in written:
                (self.media_root / name).unlink(missing_ok=True)
            if isinstance(error, NoSuchUserError):  # the account is gone: nobody else writes to its folder
                with suppress(OSError):
                    (self.media_root / str(int(user_id))).rmdir()
            raise
        return _row_to_analysis({**row, "id": cursor.lastrowid})

    def list_analyses(
        self,
        user_id: int,
        *,
        source: str | None = None,
        since: str | None = None,
        until: str | None = None,
        label: str | None = None,
        limit: int | None = None,
    ) -> list[Analysis]:
        """This user's analyses, newest first; since/until are inclusive ISO dates or datetimes."""
        where, params = ["user_id = ?"], [user_id]
        if source is not None:
            where.append("source = ?")
            params.append(source)
        if since:
            where.append("created_at >= ?")
            params.append(_time_bound(since, upper=False))
        if until:
            where.append("created_at <= ?")
            params.append(_time_bound(until, upper=True))
        if label is not None:
            where.append(
                "EXISTS (SELECT 1 FROM json_each(analyses.faces) f WHERE json_extract(f.value, '$.label') = ?)"
            )
            params.append(label)
        sql = f"SELECT * FROM analyses WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with _reading(self.path) as db:
            return [_row_to_analysis(row) for row in db.query(sql, params)]

    def get_analysis(self, user_id: int, analysis_id: int) -> Analysis | None:
        """One analysis, or None when it does not exist or is not this user's."""
        with _reading(self.path) as db:
            rows = list(db.query("SELECT * FROM analyses WHERE id = ? AND user_id = ?", [analysis_id, user_id]))
        return _row_to_analysis(rows[0]) if rows else None

    def find_analysis(self, user_id: int, content_key: str) -> Analysis | None:
        """This user's newest analysis saved with this content_key, or None (studio.analyses keys an
        analysis by its input's hash and options, so that it is saved once; an indexed lookup)."""
        sql = "SELECT * FROM analyses WHERE user_id = ? AND content_key = ? ORDER BY created_at DESC, id DESC LIMIT 1"
        with _reading(self.path) as db:
            rows = list(db.query(sql, [user_id, content_key]))
        return _row_to_analysis(rows[0]) if rows else None

    def set_title(self, user_id: int, analysis_id: int, title: str | None) -> bool:
        """Give this user's analysis a new title (None: none); False when it is not this user's or not there."""
        with _writing(self.path) as db:
            cursor = db.execute(
                "UPDATE analyses SET title = ? WHERE id = ? AND user_id = ?", [title, analysis_id, user_id]
            )
        return cursor.rowcount == 1

    def update_extra(self, user_id: int, analysis_id: int, changes: dict) -> bool:
        """Merge `changes` into the extra of this user's analysis (e.g. a Grad-CAM computed later);
        False when it is not this user's or not there."""
        with _writing(self.path) as db:
            row = db.execute("SELECT extra FROM analyses WHERE id = ? AND user_id = ?", [analysis_id, user_id])
            found = row.fetchone()
            if found is None:
                return False
            extra = {**json.loads(found[0] or "{}"), **changes}
            db.execute(
                "UPDATE analyses SET extra = ? WHERE id = ? AND user_id = ?", [json.dumps(extra), analysis_id, user_id]
            )
        return True

    def _read_file(self, user_id: int, analysis_id: int, column: str) -> bytes | None:
        with _reading(self.path) as db:
            row = db.execute(f"SELECT {column} FROM analyses WHERE id = ? AND user_id = ?", [analysis_id, user_id])
            found = row.fetchone()
        if not found or found[0] is None:
            return None
        user_folder = (self.media_root / str(int(user_id))).resolve()
        path = (self.media_root / found[0]).resolve()
        if path.parent != user_folder:
            log.error("analysis %s points outside its owner's folder: %s", analysis_id, found[0])
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:
            log.warning("media file of analysis %s is missing: %s", analysis_id, path)
            return None

    def read_image(self, user_id: int, analysis_id: int) -> bytes | None:
        """The annotated picture of this user's analysis (JPEG; PNG when an older version saved it), or None."""
        return self._read_file(user_id, analysis_id, "image_file")

    def read_media(self, user_id: int, analysis_id: int) -> bytes | None:
        """The annotated video of this user's analysis, or None."""
        return self._read_file(user_id, analysis_id, "media_file")

    def delete_analysis(self, user_id: int, analysis_id: int) -> bool:
        """Delete this user's analysis and its files; False when it is not this user's or not there."""
        with _writing(self.path) as db:
            row = db.execute(
                "SELECT image_file, media_file FROM analyses WHERE id = ? AND user_id = ?", [analysis_id, user_id]
            ).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM analyses WHERE id = ? AND user_id = ?", [analysis_id, user_id])
        for name in row:
            if name is not None:
                with suppress(OSError):
                    (self.media_root / name).unlink(missing_ok=True)
        return True

    def sweep(self, grace_s: float = SWEEP_GRACE_S, now: float | None = None) -> dict[str, int]:
        """Remove media files that no analysis row points to and stale temporary files (a writer killed
        between its file and its row, or mid-write), then log what went. Files younger than
        ``grace_s`` are kept, since a live writer may be about to commit the row that names them.
        Returns {"orphans", "temporary", "bytes"}."""
        now = time.time() if now is None else now
        with _reading(self.path) as db:
            referenced = {
                name
                for row in db.execute("SELECT image_file, media_file FROM analyses").fetchall()
                for name in row
                if name is not None
            }
        removed = {"orphans": 0, "temporary": 0, "bytes": 0}

        def stale(path: Path) -> bool:
            with suppress(OSError):
                return now - path.lstat().st_mtime >= grace_s
            return False

        for folder in self.media_root.iterdir() if self.media_root.is_dir() else ():
            if not folder.is_dir() or folder.is_symlink():
                continue
            for path in folder.iterdir():
                relative = f"{folder.name}/{path.name}"
                temporary = path.name.endswith(".tmp")
                if not path.is_file() or (not temporary and relative in referenced) or not stale(path):
                    continue
                size = path.lstat().st_size
                with suppress(OSError):
                    path.unlink()
                    removed["temporary" if temporary else "orphans"] += 1
                    removed["bytes"] += size
        system_temp = Path(tempfile.gettempdir())
        for path in (p for prefix in (VIDEO_TMP_PREFIX, EDA_TMP_PREFIX) for p in system_temp.glob(f"{prefix}*")):
            # A folder is stale when nothing in it was written lately (a long video is still being written).
            if path.is_dir() and not path.is_symlink() and all(stale(f) for f in (path, *path.rglob("*"))):
                size = sum(f.lstat().st_size for f in path.rglob("*") if f.is_file())
                shutil.rmtree(path, ignore_errors=True)
                removed["temporary"] += 1
                removed["bytes"] += size
        log.info(
            "start-up sweep of %s: removed %d orphan media files and %d stale temporary files (%.1f MB)",
            self.media_root,
            removed["orphans"],
            removed["temporary"],
            removed["bytes"] / 1e6,
        )
        return removed

    def count_analyses(self, user_id: int) -> dict[str, int]:
        """{"photo": n, "snapshot": n, "video": n, "total": n} from a COUNT query."""
        counts = dict.fromkeys(SOURCES, 0)
        with _reading(self.path) as db:
            for source, n in db.execute(
                "SELECT source, COUNT(*) FROM analyses WHERE user_id = ? GROUP BY source", [user_id]
            ).fetchall():
                counts[source] = int(n)
        counts["total"] = sum(counts[s] for s in SOURCES)
        return counts


_STORES: dict[tuple[Path, Path], Store] = {}
_STORES_LOCK = threading.Lock()


def get_store() -> Store:
    """One Store per process per database path (cheap: connections are opened per operation)."""
    key = (config.db_path(), config.media_dir())
    with _STORES_LOCK:
        if key not in _STORES:
            _STORES[key] = Store(key[0], key[1])
            try:
                _STORES[key].sweep()
            except OSError as error:  # a sweep that cannot finish must not keep the studio from starting
                log.warning("start-up sweep of %s failed: %s", key[1], error)
        return _STORES[key]
