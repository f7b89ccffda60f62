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
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
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
BUSY_TIMEOUT_MS = 30_000
SCHEMA_VERSION = 3
_WRITE_LOCK = threading.RLock()  # process-wide: one writer at a time in this process


class DuplicateUserError(ValueError):
    """A username or email that another account already uses; ``field`` says which."""

    def __init__(self, field_name: str) -> None:
        super().__init__(f"That {field_name} is already taken.")
        self.field = field_name


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


def utc_now() -> str:
    """The current time as ISO-8601 UTC with microseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


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
    """A content key per analysis (hash of its input and options, see studio.analyses) and an index to
    find it, so that the same analysis is saved once; NULL for analyses saved before."""
    analyses = db.table("analyses")
    analyses.add_column("content_key", str)
    analyses.create_index(["user_id", "content_key"], index_name="idx_analyses_user_content")


MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {1: _migration_1, 2: _migration_2, 3: _migration_3}


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
    with _writing(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        current = _schema_version(db)
        if current > SCHEMA_VERSION:
            raise SchemaTooNewError(f"{path} has schema version {current}; this code knows up to {SCHEMA_VERSION}")
        for version in range(current + 1, target + 1):
            MIGRATIONS[version](db)
            db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", [version, utc_now()])
            log.info("store %s migrated to schema version %d", path, version)
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
    )


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
        if media_root is None:
            own_media = path is None or "EMOTION_MEDIA_DIR" in os.environ
            media_root = config.media_dir() if own_media else self.path.parent / "media"
        self.media_root = Path(media_root)
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

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Replace an account's password hash."""
        with _writing(self.path) as db:
            db.execute("UPDATE users SET password_hash = ? WHERE id = ?", [password_hash, user_id])

    def credential_rows(self) -> list[dict[str, Any]]:
        """username, name, email and password_hash of every account (for the authenticator)."""
        with _reading(self.path) as db:
            return list(db.query("SELECT username, name, email, password_hash FROM users ORDER BY id"))

    # --- login throttling ---------------------------------------------------------------------------

    def login_state(self, username: str) -> tuple[int, float]:
        """(consecutive failures, locked-until unix time) recorded for a typed username."""
        with _reading(self.path) as db:
            row = db.execute("SELECT failures, locked_until FROM login_attempts WHERE username = ?", [username])
            found = row.fetchone()
        return (int(found[0]), float(found[1])) if found else (0, 0.0)

    def record_login_failure(self, username: str, now: float, delay_for: Callable[[int], float]) -> tuple[int, float]:
        """Count one more failure atomically; ``delay_for(failures)`` sets the lock. Returns the new state."""
        with _writing(self.path) as db:
            cutoff = (datetime.now(UTC) - timedelta(days=1)).isoformat()
            db.execute("DELETE FROM login_attempts WHERE updated_at < ? AND locked_until < ?", [cutoff, now])
            row = db.execute("SELECT failures FROM login_attempts WHERE username = ?", [username]).fetchone()
            failures = (int(row[0]) if row else 0) + 1
            locked_until = now + delay_for(failures)
            db.execute(
                "INSERT OR REPLACE INTO login_attempts (username, failures, locked_until, updated_at) VALUES (?,?,?,?)",
                [username, failures, locked_until, utc_now()],
            )
        return failures, locked_until

    def clear_login_failures(self, username: str) -> None:
        """Forget the failures of a username (after a successful login)."""
        with _writing(self.path) as db:
            db.execute("DELETE FROM login_attempts WHERE username = ?", [username])

    # --- analyses -----------------------------------------------------------------------------------

    def add_analysis(
        self,
        user_id: int,
        *,
        source: str,
        model: str,
        detector: str,
        faces: list[dict],
        image_png: bytes | None,
        original_name: str | None = None,
        title: str | None = None,
        media_bytes: bytes | None = None,
        media_ext: str | None = None,
        extra: dict | None = None,
        content_key: str | None = None,
    ) -> Analysis:
        """Save an analysis: files first (atomically), then the row; files are removed if the row fails.
        content_key: what find_analysis looks it up by (studio.analyses: hash of input and options)."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        ext = (media_ext or "").lower().lstrip(".")
        if media_bytes is not None and ext not in MEDIA_EXTENSIONS:
            raise ValueError(f"media_ext must be one of {sorted(MEDIA_EXTENSIONS)}, not {media_ext!r}")
        faces_json, extra_json = json.dumps(faces), json.dumps(extra or {})
        written: list[str] = []
        try:
            for data, file_ext in ((image_png, "png"), (media_bytes, ext)):
                if data is not None:
                    written.append(
                        f"{int(user_id)}/{_write_atomic(self.media_root / str(int(user_id)), data, file_ext)}"
                    )
            image_file = written[0] if image_png is not None else None
            media_file = written[-1] if media_bytes is not None else None
            row = {
                "user_id": user_id, "created_at": utc_now(), "source": source, "model": model,
                "detector": detector, "faces": faces_json, "image_file": image_file, "media_file": media_file,
                "original_name": original_name, "title": title, "extra": extra_json, "content_key": content_key,
            }  # fmt: skip
            with _writing(self.path) as db:
                columns = ", ".join(row)
                cursor = db.execute(
                    f"INSERT INTO analyses ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values())
                )
        except BaseException:
            for name in written:
                (self.media_root / name).unlink(missing_ok=True)
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
        """The annotated PNG of this user's analysis, or None."""
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
        return _STORES[key]
