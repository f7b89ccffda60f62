"""The SQLite store: round trips, per-user isolation, migrations, concurrency and crash safety."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from studio import store as store_module
from studio.store import Analysis, DuplicateUserError, SchemaTooNewError, Store, get_store, migrate

HASH = "$2b$12$" + "x" * 53
FACE = {"box": [1, 2, 30, 30], "label": "happy", "confidence": 0.9, "scores": {"happy": 0.9}}
SAD_FACE = {**FACE, "label": "sad", "scores": {"sad": 0.8}}


@pytest.fixture
def db(tmp_path: Path) -> Store:
    return Store(tmp_path / "studio.db", tmp_path / "media")


def add(store: Store, user_id: int, **overrides) -> Analysis:
    values = {"source": "photo", "model": "m1", "detector": "haar", "faces": [FACE], "image": b"\xff\xd8JPEG-bytes"}
    return store.add_analysis(user_id, **{**values, **overrides})


def test_create_and_read_back(db: Store) -> None:
    user = db.create_user("alice", "Alice A", "alice@example.com", HASH)
    assert db.get_user(user.id) == user
    assert db.get_user_by_username("ALICE") == user
    saved = add(
        db,
        user.id,
        source="video",
        faces=[FACE, SAD_FACE],
        original_name="../../etc/passwd.png",
        title="Holiday",
        media_bytes=b"video-bytes",
        media_ext="mp4",
        extra={"image_size": [640, 480], "frames": [1, 2]},
    )
    fetched = db.get_analysis(user.id, saved.id)
    assert fetched == saved
    assert fetched.faces == [FACE, SAD_FACE] and fetched.extra["image_size"] == [640, 480]
    assert fetched.has_image and fetched.has_media and fetched.title == "Holiday"
    assert db.read_image(user.id, saved.id) == b"\xff\xd8JPEG-bytes"
    assert db.read_media(user.id, saved.id) == b"video-bytes"
    files = sorted(p.name for p in (db.media_root / str(user.id)).iterdir())
    assert len(files) == 2 and not any("passwd" in f or f.startswith(".") for f in files)
    assert {Path(f).suffix for f in files} == {".jpg", ".mp4"}
    older = add(db, user.id, image=b"\x89PNG-bytes", image_ext="png")  # as analyses were kept before JPEG
    assert db.read_image(user.id, older.id) == b"\x89PNG-bytes"


def test_set_title(db: Store) -> None:
    user = db.create_user("carol", "Carol", "carol@example.com", HASH)
    saved = add(db, user.id, title="first")
    assert db.set_title(user.id, saved.id, "second") is True
    assert db.get_analysis(user.id, saved.id) == replace(saved, title="second")
    assert db.set_title(user.id, saved.id, None) is True and db.get_analysis(user.id, saved.id).title is None
    assert db.set_title(user.id, saved.id + 1, "nothing there") is False


def test_analysis_without_files(db: Store) -> None:
    user = db.create_user("bob", "Bob", "bob@example.com", HASH)
    saved = add(db, user.id, image=None, source="snapshot")
    assert not saved.has_image and not saved.has_media
    assert db.read_image(user.id, saved.id) is None and db.read_media(user.id, saved.id) is None
    assert db.count_analyses(user.id) == {"photo": 0, "snapshot": 1, "video": 0, "total": 1}


def test_rejects_bad_source_and_media_extension(db: Store) -> None:
    user = db.create_user("carol", "Carol", "carol@example.com", HASH)
    with pytest.raises(ValueError, match="source"):
        add(db, user.id, source="webcam")
    with pytest.raises(ValueError, match="media_ext"):
        add(db, user.id, media_bytes=b"x", media_ext="../../x.sh")
    with pytest.raises(ValueError, match="image_ext"):
        add(db, user.id, image_ext="../x.sh")
    assert db.count_analyses(user.id)["total"] == 0


def test_failed_insert_leaves_no_file(db: Store) -> None:
    with pytest.raises(store_module.NoSuchUserError):  # there is no user 999
        add(db, 999, media_bytes=b"v", media_ext="webm")
    assert not any(p.is_file() for p in db.media_root.rglob("*"))


def test_duplicate_username_and_email_any_case(db: Store) -> None:
    db.create_user("dora", "Dora", "dora@example.com", HASH)
    with pytest.raises(DuplicateUserError) as error:
        db.create_user("DORA", "Other", "other@example.com", HASH)
    assert error.value.field == "username"
    with pytest.raises(DuplicateUserError) as error:
        db.create_user("dora2", "Other", "Dora@Example.COM", HASH)
    assert error.value.field == "email"
    other = db.create_user("eve", "Eve", "eve@example.com", HASH)
    with pytest.raises(DuplicateUserError):
        db.update_user(other.id, name="Eve", email="DORA@example.com")
    assert db.update_user(other.id, name="Eve Two", email="eve2@example.com").name == "Eve Two"


def test_list_filters_and_order(db: Store) -> None:
    user = db.create_user("finn", "Finn", "finn@example.com", HASH)
    first = add(db, user.id, source="photo", faces=[FACE])
    second = add(db, user.id, source="snapshot", faces=[SAD_FACE])
    third = add(db, user.id, source="photo", faces=[SAD_FACE, FACE])
    assert [a.id for a in db.list_analyses(user.id)] == [third.id, second.id, first.id]
    assert [a.id for a in db.list_analyses(user.id, source="photo")] == [third.id, first.id]
    assert [a.id for a in db.list_analyses(user.id, label="sad")] == [third.id, second.id]
    assert [a.id for a in db.list_analyses(user.id, label="angry")] == []
    assert [a.id for a in db.list_analyses(user.id, limit=1)] == [third.id]
    assert [a.id for a in db.list_analyses(user.id, since=second.created_at)] == [third.id, second.id]
    assert [a.id for a in db.list_analyses(user.id, until=second.created_at)] == [second.id, first.id]
    today = first.created_at[:10]
    assert len(db.list_analyses(user.id, since=today, until=today)) == 3
    assert db.list_analyses(user.id, until="2000-01-01") == []


def test_isolation_matrix(db: Store) -> None:
    """Two users: every query of one user's analyses by the other finds, reads and deletes nothing."""
    alice = db.create_user("alice", "Alice", "alice@example.com", HASH)
    bob = db.create_user("bob", "Bob", "bob@example.com", HASH)
    owned = {
        alice.id: [add(db, alice.id, media_bytes=b"a-video", media_ext="mp4"), add(db, alice.id, source="video")],
        bob.id: [add(db, bob.id, source="snapshot", faces=[SAD_FACE], media_bytes=b"b-video", media_ext="webm")],
    }
    for owner, other in ((alice, bob), (bob, alice)):
        mine = {a.id for a in owned[owner.id]}
        assert {a.id for a in db.list_analyses(owner.id)} == mine
        for label in ("happy", "sad"):
            assert {a.id for a in db.list_analyses(other.id, label=label)}.isdisjoint(mine)
        for analysis in owned[owner.id]:
            assert db.get_analysis(other.id, analysis.id) is None
            assert db.read_image(other.id, analysis.id) is None
            assert db.read_media(other.id, analysis.id) is None
            assert db.delete_analysis(other.id, analysis.id) is False
            assert db.set_title(other.id, analysis.id, "mine now") is False
            assert db.get_analysis(owner.id, analysis.id) == analysis
            assert db.read_image(owner.id, analysis.id) is not None
        assert db.count_analyses(owner.id)["total"] == len(mine)
    victim = owned[alice.id][0]
    assert db.delete_analysis(alice.id, victim.id) is True
    assert db.get_analysis(alice.id, victim.id) is None and db.read_image(alice.id, victim.id) is None
    assert db.delete_analysis(alice.id, victim.id) is False
    assert len(list((db.media_root / str(alice.id)).iterdir())) == 1  # the other analysis's PNG
    assert db.count_analyses(bob.id) == {"photo": 0, "snapshot": 1, "video": 0, "total": 1}
    assert db.count_analyses(alice.id) == {"photo": 0, "snapshot": 0, "video": 1, "total": 1}


def test_counts_agree_with_rows(db: Store) -> None:
    user = db.create_user("gil", "Gil", "gil@example.com", HASH)
    for source in ["photo"] * 3 + ["snapshot"] * 2 + ["video"]:
        add(db, user.id, source=source, image=None)
    counts = db.count_analyses(user.id)
    for source in store_module.SOURCES:
        assert counts[source] == len(db.list_analyses(user.id, source=source))
    assert counts == {"photo": 3, "snapshot": 2, "video": 1, "total": 6}


def test_migrate_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    store = Store(path, tmp_path / "media")
    assert store.schema_version() == store_module.SCHEMA_VERSION == 4
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 2, 3, 4]
    assert Store(path, tmp_path / "media").schema_version() == 4  # opening again is a no-op


def test_migrate_from_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    assert migrate(path, target=1) == 1
    with sqlite3.connect(path) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(analyses)")]
        assert "title" not in columns and "extra" not in columns
        conn.execute(
            "INSERT INTO users VALUES (1, 'old', 'Old', 'old@example.com', ?, '2024-01-01T00:00:00+00:00')", [HASH]
        )
        conn.execute(
            "INSERT INTO analyses (user_id, created_at, source, model, detector, faces, original_name) "
            "VALUES (1, '2024-01-02T00:00:00+00:00', 'photo', 'm', 'haar', ?, 'x.jpg')",
            ['[{"label": "happy"}]'],
        )
    store = Store(path, tmp_path / "media")
    assert store.schema_version() == 4
    old = store.list_analyses(1)
    assert len(old) == 1 and old[0].title is None and old[0].extra == {} and old[0].original_name == "x.jpg"
    assert store.list_analyses(1, label="happy") == old
    new = add(store, 1, title="new", extra={"a": 1})
    assert store.get_analysis(1, new.id).title == "new"
    with sqlite3.connect(path) as conn:
        indexes = [r[1] for r in conn.execute("PRAGMA index_list(analyses)")]
    assert "idx_analyses_user_time" in indexes and "idx_analyses_user_content" in indexes
    assert old[0].content_key is None and store.find_analysis(1, "k") is None
    keyed = add(store, 1, content_key="k")
    assert store.find_analysis(1, "k").id == keyed.id and store.find_analysis(2, "k") is None


def test_migration_3_keeps_rows_and_stops_id_reuse(tmp_path: Path) -> None:
    """A version-2 database keeps its users, analyses and ids; afterwards a deleted id is never reused."""
    path = tmp_path / "v2.db"
    assert migrate(path, target=2) == 2
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        for uid in (1, 2):
            conn.execute(
                "INSERT INTO users VALUES (?, ?, 'U', ?, ?, '2024-01-01T00:00:00+00:00')",
                [uid, f"user{uid}", f"u{uid}@example.com", HASH],
            )
        for aid in (1, 2, 3):
            conn.execute(
                "INSERT INTO analyses (id, user_id, created_at, source, model, detector, faces, image_file, title, "
                "extra) VALUES (?, ?, ?, 'photo', 'm', 'haar', '[]', ?, ?, '{\"k\": 1}')",
                [aid, 1 + aid % 2, f"2024-01-0{aid}T00:00:00+00:00", f"{1 + aid % 2}/f{aid}.png", f"t{aid}"],
            )
        conn.execute("DELETE FROM analyses WHERE id = 3")  # under v2 the next row would get id 3 again
    store = Store(path, tmp_path / "media")
    assert store.schema_version() == 4
    assert [a.id for a in store.list_analyses(2)] == [1] and store.list_analyses(2)[0].extra == {"k": 1}
    assert [a.id for a in store.list_analyses(1)] == [2] and store.list_analyses(1)[0].title == "t2"
    assert store.get_user(2).username == "user2" and store.session_of("user2")[1] == 0
    newest = add(store, 1)
    assert newest.id == 3  # 3 was never committed under AUTOINCREMENT's counter: the first free id
    assert store.delete_analysis(1, newest.id)
    assert add(store, 2).id == 4  # the deleted newest id is not handed out again (any user's)
    with sqlite3.connect(path) as conn:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'analyses'").fetchone()[0]
        assert "AUTOINCREMENT" in sql and "REFERENCES users(id) ON DELETE CASCADE" in sql
        assert "idx_analyses_user_time" in [r[1] for r in conn.execute("PRAGMA index_list(analyses)")]


def test_ids_are_not_reused(db: Store) -> None:
    """Deleting the newest analysis or account does not free its id for the next one."""
    alice = db.create_user("alice", "A", "a@example.com", HASH)
    first, second = add(db, alice.id), add(db, alice.id)
    assert db.delete_analysis(alice.id, second.id)
    third = add(db, alice.id)
    assert third.id > second.id > first.id
    bob = db.create_user("bob", "B", "b@example.com", HASH)
    with sqlite3.connect(db.path) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM users WHERE id = ?", [bob.id])
    assert db.create_user("carol", "C", "c@example.com", HASH).id > bob.id  # media/<id>/ never inherited


def test_delete_user_takes_everything_of_that_account_and_nothing_else(db: Store) -> None:
    alice = db.create_user("alice", "A", "a@example.com", HASH)
    bob = db.create_user("bob", "B", "b@example.com", HASH)
    kept = add(db, bob.id, media_bytes=b"b-video", media_ext="mp4")
    for _ in range(2):
        add(db, alice.id, media_bytes=b"a-video", media_ext="mp4")
    now = time.time()
    for username in ("alice", "bob"):
        db.reserve_login_attempt([(f"{username}\x1f10.0.0.1", lambda n: 0.0), (f"{username}\x1f*", lambda n: 0.0)], now)
    db.reserve_login_attempt([("alice.x\x1f*", lambda n: 0.0)], now)  # another name with alice's prefix
    assert db.delete_user(bob.id + 100) is None
    assert db.delete_user(alice.id, login_keys_prefix="alice\x1f") == 2
    assert db.get_user(alice.id) is None and db.session_of("alice") is None and db.list_analyses(alice.id) == []
    assert not (db.media_root / str(alice.id)).exists()
    assert db.login_state("alice\x1f10.0.0.1")[0] == 0 and db.login_state("alice\x1f*")[0] == 0
    assert db.login_state("bob\x1f*")[0] == 1 and db.login_state("alice.x\x1f*")[0] == 1
    assert db.get_analysis(bob.id, kept.id) == kept and db.read_media(bob.id, kept.id) == b"b-video"
    assert db.delete_user(alice.id) is None
    with pytest.raises(store_module.NoSuchUserError, match="no longer exists"):
        add(db, alice.id)  # a save from a session of the deleted account that was still open
    assert not (db.media_root / str(alice.id)).exists() or not any((db.media_root / str(alice.id)).iterdir())
    again = db.create_user("alice", "A2", "a@example.com", HASH)  # the name and email are free again
    assert again.id > bob.id and db.session_of("alice") == (again.id, 0) and db.list_analyses(again.id) == []


def test_analyses_know_their_files_kinds(db: Store) -> None:
    user = db.create_user("alice", "A", "a@example.com", HASH)
    video = add(db, user.id, media_bytes=b"v", media_ext="MP4")
    bare = add(db, user.id, image=None)
    assert (video.image_ext, video.media_ext) == ("jpg", "mp4")
    assert db.get_analysis(user.id, video.id).media_ext == "mp4"
    assert (bare.image_ext, bare.media_ext) == (None, None)


def test_password_change_and_logout_bump_the_session_version(db: Store) -> None:
    alice = db.create_user("alice", "A", "a@example.com", HASH)
    assert db.session_of("alice")[1] == 0 and db.session_of("nobody") is None
    assert db.set_password_hash(alice.id, HASH) == 0  # the same hash (a credentials save) revokes nothing
    assert db.set_password_hash(alice.id, "$2b$12$" + "y" * 53) == 1
    assert db.bump_session_version(alice.id) == 2 and db.session_of("ALICE")[1] == 2


def test_sweep_removes_orphans_and_stale_temporaries_only(db: Store, tmp_path: Path, caplog) -> None:
    alice = db.create_user("alice", "A", "a@example.com", HASH)
    kept = [add(db, alice.id), add(db, alice.id, media_bytes=b"video", media_ext="mp4")]
    folder = db.media_root / str(alice.id)
    orphan, tmp, fresh_orphan = folder / "deadbeef.png", folder / ".cafe.png.tmp", folder / "young.png"
    for path in (orphan, tmp, fresh_orphan):
        path.write_bytes(b"x" * 1000)
    stranger = db.media_root / "99"
    stranger.mkdir()
    (stranger / "lost.mp4").write_bytes(b"y" * 10)  # a folder no user has: every file in it is an orphan
    old = time.time() - 2 * store_module.SWEEP_GRACE_S
    for path in (
        orphan,
        tmp,
        stranger / "lost.mp4",
        *folder.glob("*.png"),
        *folder.glob("*.jpg"),
        *folder.glob("*.mp4"),
    ):
        if path != fresh_orphan:
            os.utime(path, (old, old))
    with caplog.at_level("INFO", logger="studio.store"):
        removed = db.sweep()
    assert removed["orphans"] == 2 and removed["temporary"] >= 1 and removed["bytes"] >= 2010
    assert not orphan.exists() and not tmp.exists() and not (stranger / "lost.mp4").exists()
    assert fresh_orphan.exists()  # younger than the grace period: its row may be on its way
    for analysis in kept:  # every file a row points to is still there
        assert db.read_image(alice.id, analysis.id) == b"\xff\xd8JPEG-bytes"
    assert db.read_media(alice.id, kept[1].id) == b"video"
    assert any("removed 2 orphan media files" in r.getMessage() for r in caplog.records)
    assert db.sweep(grace_s=0)["orphans"] == 1 and not fresh_orphan.exists()


def test_get_store_sweeps_once_at_start_up(isolated_store: Path, tmp_path: Path) -> None:
    orphan = tmp_path / "media" / "1" / "orphan.png"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x")
    old = time.time() - 2 * store_module.SWEEP_GRACE_S
    os.utime(orphan, (old, old))
    store_module._STORES.clear()
    try:
        get_store()
        assert not orphan.exists()
    finally:
        store_module._STORES.clear()


def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    migrate(path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, '2099-01-01')")
    with pytest.raises(SchemaTooNewError):
        Store(path, tmp_path / "media")


def test_get_store_follows_environment(isolated_store: Path) -> None:
    store = get_store()
    assert store.path == isolated_store and get_store() is store
    assert store.media_root == isolated_store.parent / "media"
    assert isolated_store.exists()


def test_connections_have_pragmas(db: Store) -> None:
    conn = store_module.connect(db.path).conn
    try:
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store_module.BUSY_TIMEOUT_MS
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


@pytest.mark.slow
def test_eight_threads_two_hundred_writes_each(db: Store) -> None:
    users = [db.create_user(f"user{i}", f"User {i}", f"u{i}@example.com", HASH) for i in range(4)]
    errors: list[BaseException] = []
    saved: list[list[int]] = [[] for _ in range(8)]

    def work(index: int) -> None:
        try:
            user = users[index % len(users)]
            for n in range(200):
                png = b"img-%d-%d" % (index, n) if n % 4 == 0 else None
                saved[index].append(add(db, user.id, image=png, title=f"t{index}-{n}").id)
                if n % 50 == 0:
                    db.count_analyses(user.id)
        except BaseException as error:  # collected and asserted on below
            errors.append(error)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    print(f"\n8 threads x 200 writes: {elapsed:.2f} s ({1600 / elapsed:.0f} writes/s)")
    assert errors == [], errors[:3]
    ids = [i for per_thread in saved for i in per_thread]
    assert len(ids) == len(set(ids)) == 1600
    assert sum(db.count_analyses(u.id)["total"] for u in users) == 1600
    for index, per_thread in enumerate(saved):
        user = users[index % len(users)]
        titles = {a.id: a.title for a in db.list_analyses(user.id)}
        assert [titles[i] for i in per_thread] == [f"t{index}-{n}" for n in range(200)]


CHILD_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from studio.store import Store
    store = Store(Path(sys.argv[1]), Path(sys.argv[2]))
    user_id = int(sys.argv[3])
    n = 0
    while True:
        n += 1
        saved = store.add_analysis(user_id, source="photo", model="m", detector="haar",
                                   faces=[{"label": "happy", "n": n}], image=b"child-%d" % n)
        print(saved.id, flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_mid_stream_keeps_every_acknowledged_row(tmp_path: Path) -> None:
    path, media = tmp_path / "crash.db", tmp_path / "media"
    store = Store(path, media)
    child_user = store.create_user("child", "Child", "child@example.com", HASH)
    parent_user = store.create_user("parent", "Parent", "parent@example.com", HASH)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_WRITER, str(path), str(media), str(child_user.id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    acknowledged: list[int] = []
    parent_rows = 0
    try:
        assert child.stdout is not None
        while len(acknowledged) < 150:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"writer died early: {child.stderr.read() if child.stderr else ''}")
            acknowledged.append(int(line))
            if len(acknowledged) % 3 == 0:  # the parent writes too, so the two processes contend
                add(store, parent_user.id, image=None)
                parent_rows += 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    after = Store(path, media)
    for analysis_id in acknowledged:
        assert after.get_analysis(child_user.id, analysis_id) is not None, analysis_id
        assert after.read_image(child_user.id, analysis_id) is not None, analysis_id
    assert after.count_analyses(child_user.id)["total"] >= len(acknowledged)
    assert after.count_analyses(parent_user.id)["total"] == parent_rows
    rows_with_image = {a.id for a in after.list_analyses(child_user.id) if a.has_image}
    for analysis_id in rows_with_image:  # no committed row points at a missing or partial file
        assert after.read_image(child_user.id, analysis_id).startswith(b"child-")


def test_twenty_concurrent_reservations_get_at_most_the_free_attempts(db: Store) -> None:
    """reserve_login_attempt checks and records in one transaction: of 20 simultaneous attempts on one
    key, exactly as many pass as sequential failures would allow; the others are told to wait."""
    free = 3

    def delay(failures: int) -> float:
        return 0.0 if failures < free else 60.0

    start = threading.Barrier(20)
    waits: list[float] = []
    lock = threading.Lock()

    def attempt() -> None:
        start.wait()
        wait = db.reserve_login_attempt([("alice\x1f10.0.0.1", delay), ("alice\x1f*", lambda n: 0.0)], now=1000.0)
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits)[:free] == [0.0] * free and all(w == pytest.approx(60.0) for w in sorted(waits)[free:])
    assert db.login_state("alice\x1f10.0.0.1") == (free, 1060.0)
    assert db.login_state("alice\x1f*")[0] == free  # refused attempts are not recorded
    db.clear_login_failures("alice\x1f10.0.0.1", "alice\x1f*")
    assert db.login_state("alice\x1f10.0.0.1") == (0, 0.0)


def test_sweep_removes_stale_video_temp_folders_only(db: Store, tmp_path: Path, monkeypatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "systemp"))
    old = time.time() - 2 * store_module.SWEEP_GRACE_S
    stale_dir, busy_dir = (tmp_path / "systemp" / f"{store_module.VIDEO_TMP_PREFIX}{n}" for n in ("a", "b"))
    old_zip = tmp_path / "systemp" / f"{store_module.EDA_TMP_PREFIX}0123abcd"  # an explorer upload, extracted
    other = tmp_path / "systemp" / "someone-elses"
    for folder in (stale_dir, busy_dir, old_zip / "happy", other):
        folder.mkdir(parents=True)
        (folder / "annotated.mp4").write_bytes(b"v" * 100)
        os.utime(folder, (old, old))
    for path in (stale_dir / "annotated.mp4", old_zip, old_zip / "happy" / "annotated.mp4", other / "annotated.mp4"):
        os.utime(path, (old, old))  # busy_dir's file was written just now
    removed = db.sweep()
    assert not stale_dir.exists() and busy_dir.exists() and not old_zip.exists() and other.exists()
    assert removed["temporary"] == 2
