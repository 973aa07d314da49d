"""Storage of one stream: set semantics, limits, compression, schema and failure modes."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cohub.conat.errors import BadRequest
from cohub.persist.limits import EPHEMERAL_MAX_BYTES
from cohub.persist.storage import (
    SCHEMA_VERSION,
    Rejected,
    StorageError,
    Stream,
    WrongLastSequence,
)


@pytest.fixture
def stream(tmp_path: Path) -> Any:
    s = Stream.open("s", tmp_path / "s.db")
    yield s
    s.close()


def fill(s: Stream) -> None:
    """Simulate a full disk: the file may not grow beyond its current pages."""
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count={pages}")


def changes(s: Stream) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    s.listen(seen.append)
    return seen


def test_keyed_set_twice_gives_new_seq_and_old_row_gone(stream: Stream) -> None:
    seen = changes(stream)
    assert stream.set(b"a", key="k").seq == 1
    assert stream.set(b"b", key="k").seq == 2
    assert stream.get(seq=1) is None
    got = stream.get(key="k")
    assert got is not None and (got.seq, got.raw) == (2, b"b")
    assert stream.keys() == ["k"]
    assert {"op": "delete", "seqs": [1]} in seen  # the replaced row is announced


def test_previous_seq_mismatch(stream: Stream) -> None:
    stream.set(b"a", key="k")
    with pytest.raises(WrongLastSequence) as e:
        stream.set(b"b", key="k", previous_seq=7)
    assert e.value.code == "wrong-last-sequence"
    assert stream.set(b"b", key="k", previous_seq=1).seq == 2
    with pytest.raises(WrongLastSequence):
        stream.set(b"x", key="new", previous_seq=1)  # absent key is at seq 0
    assert stream.set(b"x", key="new", previous_seq=0).seq == 3


def test_repeated_msg_id_returns_original(stream: Stream) -> None:
    first = stream.set(b"a", msg_id="m1")
    again = stream.set(b"other", msg_id="m1")
    assert again == first
    assert stream.inventory()["count"] == 1


def test_msg_id_of_a_rolled_back_batch_is_forgotten(stream: Stream) -> None:
    fill(stream)  # nothing more fits: the batch fails
    with pytest.raises(StorageError):
        stream.set_many([{"raw": os.urandom(50_000), "msgID": "m"}])
    stream._db.execute("PRAGMA max_page_count=1000000")
    assert stream.set(b"y", msg_id="m").seq >= 1
    assert stream.get(seq=stream.last_seq()) is not None


def test_max_msgs_discard_old_announces_delete(stream: Stream) -> None:
    seen = changes(stream)
    stream.config({"max_msgs": 3})
    for i in range(4):
        stream.set(b"%d" % i)
    assert [m.seq for m in stream.get_all()] == [2, 3, 4]
    assert {"op": "delete", "seqs": [1]} in seen
    assert stream.inventory()["limits"] == {"max_msgs": 3}


def test_max_msgs_discard_new_rejects(stream: Stream) -> None:
    stream.config({"max_msgs": 3, "discard_policy": "new"})
    for i in range(3):
        stream.set(b"%d" % i)
    with pytest.raises(Rejected) as e:
        stream.set(b"4")
    assert e.value.code == "reject"
    assert [m.seq for m in stream.get_all()] == [1, 2, 3]


def test_msg_ttl(stream: Stream) -> None:
    seen = changes(stream)
    stream.config({"allow_msg_ttl": True})
    stream.set(b"short", ttl=50)
    stream.set(b"long", ttl=60_000)
    stream.set(b"forever")
    time.sleep(0.1)
    assert [m.raw for m in stream.get_all()] == [b"long", b"forever"]
    assert {"op": "delete", "seqs": [1]} in seen


def test_max_age(stream: Stream) -> None:
    stream.config({"max_age": 50})
    stream.set(b"old")
    time.sleep(0.08)
    stream.set(b"new")
    assert [m.raw for m in stream.get_all()] == [b"new"]


def test_max_bytes_old_and_new(stream: Stream) -> None:
    stream.config({"max_bytes": 250})
    for _ in range(5):
        stream.set(b"x" * 100)
    assert stream.inventory()["bytes"] <= 250
    assert stream.inventory()["count"] == 2
    stream.config({"discard_policy": "new"})
    with pytest.raises(Rejected):
        stream.set(b"y" * 100)
    with pytest.raises(Rejected):
        stream.set(b"z" * 1000)


def test_max_msg_size(stream: Stream) -> None:
    stream.config({"max_msg_size": 10})
    stream.set(b"ok")
    with pytest.raises(Rejected):
        stream.set(b"x" * 11)


def test_rate_limits(stream: Stream) -> None:
    stream.config({"max_msgs_per_second": 3})
    for _ in range(3):
        stream.set(b"a")
    with pytest.raises(Rejected, match="max_msgs_per_second"):
        stream.set(b"a")
    stream.config({"max_msgs_per_second": -1, "max_bytes_per_second": 10})
    time.sleep(1.05)
    stream.set(b"x" * 8)
    with pytest.raises(Rejected, match="max_bytes_per_second"):
        stream.set(b"x" * 8)


def test_delete_forms(stream: Stream) -> None:
    seen = changes(stream)
    for i in range(6):
        stream.set(b"%d" % i)
    assert stream.delete(seq=1) == [1]
    assert stream.delete(seqs=[3, 4, 99]) == [3, 4]
    assert stream.delete(last_seq=2) == [2]
    assert stream.delete(all=True) == [5, 6]
    assert [c["seqs"] for c in seen if c.get("op") == "delete"] == [[1], [3, 4], [2], [5, 6]]
    assert stream.inventory() == {"bytes": 0, "count": 0, "limits": {}, "seq": 6}
    assert stream.set(b"next").seq == 7  # seqs are never reused


def test_large_payloads_are_compressed(tmp_path: Path) -> None:
    s = Stream.open("s", tmp_path / "c.db")
    big = b"abc" * 10_000
    s.set(big, headers={"h": 1})
    s.set(b"small")
    s.close()
    rows = sqlite3.connect(tmp_path / "c.db").execute("SELECT compress, length(raw) FROM messages")
    (c1, n1), (c2, n2) = rows.fetchall()
    assert c1 == 1 and n1 < len(big) // 10
    assert (c2, n2) == (0, 5)
    s = Stream.open("s", tmp_path / "c.db")
    got = s.get(seq=1)
    assert got is not None and got.raw == big and got.headers == {"h": 1}
    s.close()


def test_set_many_mixes_results(stream: Stream) -> None:
    stream.set(b"a", key="k")
    results = stream.set_many(
        [
            {"raw": b"1"},
            {"raw": b"2", "key": "k", "previousSeq": 99},
            {"raw": "not bytes"},
            "junk",
            {"raw": b"3", "key": "k", "previousSeq": 1},
        ]
    )
    assert results[0]["seq"] == 2
    assert results[1]["code"] == "wrong-last-sequence"
    assert results[2]["code"] == 400 and results[3]["code"] == 400
    assert results[4]["seq"] == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"encoding": 7},
        {"key": 5},
        {"ttl": "soon"},
        {"previous_seq": "1"},
        {"msg_id": ["x"]},
        {"headers": {"x": object()}},
    ],
)
def test_hostile_set_arguments(stream: Stream, kwargs: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        stream.set(b"x", **kwargs)
    assert stream.inventory()["count"] == 0


def test_config_validation(stream: Stream) -> None:
    for bad in ({"max_msgs": "3"}, {"nope": 1}, {"discard_policy": "both"}, [1], {"max_age": -5}):
        with pytest.raises(BadRequest):
            stream.config(bad)
    assert stream.config({"desc": {"a": 1}}).desc == {"a": 1}


def test_config_survives_reopen(tmp_path: Path) -> None:
    s = Stream.open("s", tmp_path / "r.db")
    s.config({"max_msgs": 5, "allow_msg_ttl": True})
    s.close()
    s = Stream.open("s", tmp_path / "r.db")
    assert s.conf.max_msgs == 5 and s.conf.allow_msg_ttl
    s.close()


def test_ephemeral_is_in_memory_and_capped(tmp_path: Path) -> None:
    s = Stream.open("e", None)
    assert s.conf.max_bytes == EPHEMERAL_MAX_BYTES
    assert s.config({"max_bytes": 10**12}).max_bytes == EPHEMERAL_MAX_BYTES
    assert s.config({"max_bytes": 1000}).max_bytes == 1000
    s.set(b"x")
    s.close()
    assert list(tmp_path.iterdir()) == []


def test_corrupted_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite at all" * 200)
    with pytest.raises(StorageError, match="corrupted"):
        Stream.open("bad", bad)
    good = Stream.open("good", tmp_path / "good.db")
    assert good.set(b"fine").seq == 1
    good.close()


def test_newer_schema_refused(tmp_path: Path) -> None:
    f = tmp_path / "v.db"
    Stream.open("v", f).close()
    conn = sqlite3.connect(f)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer than this cohub supports"):
        Stream.open("v", f)


def test_reference_file_without_version_is_adopted(tmp_path: Path) -> None:
    f = tmp_path / "ref.db"
    conn = sqlite3.connect(f)
    conn.execute(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE, "
        "time INTEGER NOT NULL, headers TEXT, compress NUMBER NOT NULL, encoding NUMBER NOT "
        "NULL, raw BLOB NOT NULL, size NUMBER NOT NULL, ttl NUMBER)"
    )
    conn.execute(
        "INSERT INTO messages(time, compress, encoding, raw, headers, size) "
        "VALUES (1750218209.211, 0, 0, x'7b', NULL, 1)"
    )
    conn.commit()
    conn.close()
    s = Stream.open("ref", f)
    got = s.get(seq=1)
    assert got is not None and got.time == 1750218209211 and got.raw == b"{"
    s.close()
    assert sqlite3.connect(f).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_disk_full_leaves_no_partial_row(stream: Stream) -> None:
    stream.set(b"first")
    seen = changes(stream)
    stream._db.execute(
        "PRAGMA max_page_count=" + str(stream._db.execute("PRAGMA page_count").fetchone()[0])
    )
    with pytest.raises(StorageError, match="full"):
        stream.set_many([{"raw": bytes(range(256)) * 200} for _ in range(20)])
    assert seen == []
    assert [m.raw for m in stream.get_all()] == [b"first"]
    assert stream.inventory()["count"] == 1


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot open"):
        Stream.open("x", blocker / "sub" / "x.db")


def test_archive_copy_and_restore(tmp_path: Path) -> None:
    local, archive = tmp_path / "local" / "a.db", tmp_path / "archive" / "a.db"
    s = Stream.open("a", local, archive=archive, archive_interval=3600)
    s.set(b"one")
    s.close()  # close refreshes the archive copy
    assert archive.exists()
    local.unlink()
    s = Stream.open("a", local, archive=archive)
    assert [m.raw for m in s.get_all()] == [b"one"]
    s.close()


# ---- msgID dedupe that outlives the open stream ----------------------------------------------


def test_msg_id_survives_close_and_reopen(tmp_path: Path) -> None:
    f = tmp_path / "m.db"
    s = Stream.open("m", f)
    first = s.set(b"a", msg_id="m1")
    s.close()
    s = Stream.open("m", f)  # a new object knows nothing in memory: only the file can say
    assert s.set(b"again", msg_id="m1") == first
    assert s.set_many([{"raw": b"x", "msgID": "m1"}]) == [first.to_wire()]
    assert [m.raw for m in s.get_all()] == [b"a"]
    s.close()


def test_msg_id_repeated_within_one_batch(stream: Stream) -> None:
    results = stream.set_many([{"raw": b"a", "msgID": "x"}, {"raw": b"b", "msgID": "x"}])
    assert results[0] == results[1] and results[0]["seq"] == 1
    assert stream.inventory()["count"] == 1


def test_msg_id_seen_by_another_connection(tmp_path: Path) -> None:
    """Two servers on one file (nfs mode) dedupe each other's msgIDs."""
    f = tmp_path / "two.db"
    a, b = Stream.open("t", f, mode="nfs"), Stream.open("t", f, mode="nfs")
    first = a.set(b"a", msg_id="shared")
    assert b.set(b"b", msg_id="shared") == first
    assert b.inventory()["count"] == 1
    a.close()
    b.close()


def test_msg_id_window_is_two_minutes(tmp_path: Path) -> None:
    f = tmp_path / "w.db"
    s = Stream.open("w", f)
    s.set(b"a", msg_id="old")
    s.set(b"b", msg_id="recent")
    # age the rows instead of sleeping 2 minutes: the window is decided by the stored time
    s._db.execute("UPDATE msg_ids SET time = time - ? WHERE msg_id='old'", (121_000,))
    s._db.execute("UPDATE msg_ids SET time = time - ? WHERE msg_id='recent'", (100_000,))
    assert s.set(b"c", msg_id="old").seq == 3  # outside the window: stored anew
    assert s.set(b"d", msg_id="recent").seq == 2  # inside: the original
    s._db.execute("UPDATE msg_ids SET time = time - 200000")
    s._pruned_at = 0.0  # let the next write prune now rather than in 10 s
    s.set(b"e", msg_id="fresh")
    left = [r[0] for r in s._db.execute("SELECT msg_id FROM msg_ids")]
    assert left == ["fresh"]  # expired rows are pruned, the table does not grow forever
    s.close()


def test_msg_id_table_added_to_version_1_file(tmp_path: Path) -> None:
    f = tmp_path / "v1.db"
    conn = sqlite3.connect(f)
    conn.execute(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE, "
        "time INTEGER NOT NULL, headers TEXT, compress NUMBER NOT NULL, encoding NUMBER NOT "
        "NULL, raw BLOB NOT NULL, size NUMBER NOT NULL, ttl NUMBER)"
    )
    conn.execute("CREATE TABLE config (field TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    s = Stream.open("v1", f)
    first = s.set(b"a", msg_id="m")
    assert s.set(b"b", msg_id="m") == first
    s.close()
    assert sqlite3.connect(f).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2


# ---- nfs mode ---------------------------------------------------------------------------------

_CHILD = """
import sys
from pathlib import Path
from cohub.persist.storage import Stream
s = Stream.open("n", Path(sys.argv[1]), mode="nfs")
for i in range(50):
    s.set(b"child %d" % i)
print(s.inventory()["count"])
s.close()
"""


def test_nfs_mode_uses_no_wal_and_two_processes_share_a_stream(tmp_path: Path) -> None:
    f = tmp_path / "n.db"
    s = Stream.open("n", f, mode="nfs")
    # WAL needs shared memory between the processes, which NFS does not give: rollback journal
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    for i in range(50):
        s.set(b"parent %d" % i)
    # another process opens and writes the same stream while this one holds it open
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(f)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.returncode == 0, child.stderr
    assert int(child.stdout) == 100
    s.set(b"parent again")
    raws = [m.raw for m in s.get_all()]
    assert len(raws) == 101 and raws[50] == b"child 0" and raws[-1] == b"parent again"
    assert s.inventory()["count"] == 101  # the cached counters followed the other process
    assert not Path(str(f) + "-wal").exists()
    s.close()


def test_disk_mode_uses_wal(tmp_path: Path) -> None:
    s = Stream.open("d", tmp_path / "d.db", mode="disk")
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.set(b"x")
    assert (tmp_path / "d.db-wal").exists()
    s.close()


def test_limits_set_by_another_connection_apply(tmp_path: Path) -> None:
    f = tmp_path / "l.db"
    a, b = Stream.open("l", f, mode="nfs"), Stream.open("l", f, mode="nfs")
    a.config({"max_msgs": 2})
    for i in range(4):
        b.set(b"%d" % i)  # b must see a's limit, not its cached config
    assert [m.raw for m in a.get_all()] == [b"2", b"3"]
    assert b.conf.max_msgs == 2
    a.close()
    b.close()


# ---- deletion announcements -------------------------------------------------------------------


def test_max_age_deletions_are_announced(stream: Stream) -> None:
    seen = changes(stream)
    stream.config({"max_age": 50})
    stream.set(b"a")
    stream.set(b"b")
    time.sleep(0.08)
    stream.expire()  # what the server's housekeeping does every second, with no write
    # one announcement, or two if a slow machine let "a" expire when "b" was written
    assert sorted(seq for c in seen if c.get("op") == "delete" for seq in c["seqs"]) == [1, 2]
    stream.set(b"c")
    assert [m.raw for m in stream.get_all()] == [b"c"]


def test_max_bytes_deletions_are_announced(stream: Stream) -> None:
    seen = changes(stream)
    stream.config({"max_bytes": 250})
    for _ in range(3):
        stream.set(b"x" * 100)
    assert [c for c in seen if c.get("op") == "delete"] == [{"op": "delete", "seqs": [1]}]
    stream.config({"max_bytes": 100})  # a tighter limit trims at once, and says so
    assert [c for c in seen if c.get("op") == "delete"][-1] == {"op": "delete", "seqs": [2]}
    assert [m.seq for m in stream.get_all()] == [3]


# ---- archive ----------------------------------------------------------------------------------


def _archived(archive: Path) -> list[bytes]:
    conn = sqlite3.connect(f"file:{archive}?mode=ro", uri=True)
    try:
        return [bytes(r[0]) for r in conn.execute("SELECT raw FROM messages ORDER BY seq")]
    finally:
        conn.close()


def test_archive_is_refreshed_periodically_while_open(tmp_path: Path) -> None:
    local, archive = tmp_path / "local" / "p.db", tmp_path / "archive" / "p.db"
    s = Stream.open("p", local, archive=archive, archive_interval=0.05)
    s.set(b"one")  # the first write after opening is not due yet
    assert not archive.exists()
    time.sleep(0.06)
    s.set(b"two")  # due: the write refreshes the copy
    assert _archived(archive) == [b"one", b"two"]
    s.set(b"three")  # within the interval: not copied yet
    assert _archived(archive) == [b"one", b"two"]
    time.sleep(0.06)
    s.archive_if_due()  # the server's housekeeping, with no write
    assert _archived(archive) == [b"one", b"two", b"three"]
    s.archive_if_due()  # nothing changed since: no copy (the file stays the same)
    s.close()


def test_newer_wal_is_not_replaced_by_an_older_archive(tmp_path: Path) -> None:
    """After a crash the newest commits may be only in the WAL; the archive must not win."""
    local, archive = tmp_path / "local" / "w.db", tmp_path / "archive" / "w.db"
    s = Stream.open("w", local, archive=archive, archive_interval=0)
    s.set(b"one")  # archived right after the commit
    time.sleep(0.01)
    s._archive_interval = 3600
    s.set(b"two")  # in the WAL only, newer than the archive
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    # copy the files as a kill -9 leaves them (the connection never checkpointed)
    for suffix in ("", "-wal"):
        shutil.copy2(str(local) + suffix, str(crashed / "w.db") + suffix)
    assert _archived(archive) == [b"one"]
    again = Stream.open("w", crashed / "w.db", archive=archive)
    assert [m.raw for m in again.get_all()] == [b"one", b"two"]
    again.close()
    s.close()  # only now: closing refreshes the archive, which would hide the difference


# ---- read-only directory ----------------------------------------------------------------------


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` refuse writes, also to root.

    chmod does not stop root (the tests run as root in CI), so as root the directory is
    bind-mounted read-only onto itself, which the kernel enforces for everyone. Without
    CAP_SYS_ADMIN that is impossible, and the immutable flag (chattr +i, enforced for root
    too) is the next real thing; if neither is allowed the test is skipped, saying why.
    """
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", str(directory), str(directory)]).returncode == 0
    if mounted:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)]).returncode != 0:
            subprocess.run(["umount", str(directory)], check=True)
            mounted = False
    if mounted:
        try:
            yield
        finally:
            subprocess.run(["umount", str(directory)], check=True)
        return
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0:
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        return
    pytest.skip("root without CAP_SYS_ADMIN or CAP_LINUX_IMMUTABLE: cannot make a read-only dir")


def test_read_only_directory_is_a_clear_error_and_no_partial_row(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    f = d / "s.db"
    s = Stream.open("s", f, mode="nfs")  # rollback journal: every write creates a file
    s.set(b"first")
    seen = changes(s)
    with read_only(d):
        with pytest.raises(StorageError, match="writable"):
            s.set_many([{"raw": b"a"}, {"raw": b"b"}])
        with pytest.raises(StorageError, match="writable"):
            s.set(b"c", msg_id="m")
        assert [m.raw for m in s.get_all()] == [b"first"]  # reads still work
        with pytest.raises(StorageError, match="writable"):
            Stream.open("new", d / "new.db")
    assert seen == []  # nothing was announced
    assert s.inventory()["count"] == 1
    s.close()
    s = Stream.open("s", f, mode="nfs")
    assert [m.raw for m in s.get_all()] == [b"first"]
    assert s.set(b"c", msg_id="m").seq == 2  # the failed msgID was not remembered
    s.close()
