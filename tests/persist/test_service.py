"""The persist service end to end: a real `cohub serve`, the router, persist processes."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from cohub.conat.client import Client
from cohub.conat.errors import ConatError, NotFound, PermissionDenied, TooMany
from cohub.persist.client import AKV, KV, AStream, Deleted, Entry, PersistStream, Storage
from cohub.persist.load_balancer import pick
from cohub.persist.server import PersistServer
from tests.conftest import Server, User, sign_up

pytestmark = pytest.mark.asyncio


def path(user: User, name: str | None = None) -> str:
    return f"accounts/{user.account_id}/{name or secrets.token_hex(4)}"


async def raw_request(nc: Client, scope: str, headers: dict[str, Any], data: Any = None) -> Any:
    server_id = (await nc.request(f"persist.{scope}.id", None, timeout=10)).data
    reply = await nc.request(
        f"persist.{scope}.server.{server_id}", data, headers=headers, timeout=10
    )
    return reply.data, reply.headers or {}


async def test_behaviour_9_keyed_sets_and_concurrency(server: Server, user: User, connect) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    async with KV(nc, path(user)) as kv:
        first = await kv.set("k", "v1")
        second = await kv.set("k", "v2")
        assert (first.seq, second.seq) == (1, 2)
        assert await PersistStream.get(kv, seq=1) is None
        assert await kv.get("k") == "v2"
        with pytest.raises(ConatError) as e:
            await kv.set("k", "v3", previous_seq=1)
        assert e.value.code == "wrong-last-sequence"
        assert (await kv.set("k", "v3", previous_seq=2)).seq == 3
        again = await PersistStream.set(kv, "x", msg_id="same")
        repeat = await PersistStream.set(kv, "y", msg_id="same")
        assert repeat == again
        assert await kv.keys() == ["k"]
        assert await kv.delete("k") is True
        assert await kv.get("k") is None


async def test_behaviour_10_limits_through_the_router(server: Server, user: User, connect) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    async with PersistStream(nc, path(user)) as s:
        feed = await s.changefeed()
        await s.config({"max_msgs": 3})
        for i in range(4):
            await s.append(i)
        got: list[Any] = []
        while len(got) < 5:
            got.extend(await feed.next(5))
        assert Deleted([1]) in got
        assert [e.seq for e in await s.get_all()] == [2, 3, 4]

    async with PersistStream(nc, path(user)) as s:
        await s.config({"max_msgs": 3, "discard_policy": "new"})
        for i in range(3):
            await s.append(i)
        with pytest.raises(ConatError) as e:
            await s.append(3)
        assert e.value.code == "reject"

    async with PersistStream(nc, path(user)) as s:
        await s.config({"allow_msg_ttl": True})
        await s.append("brief", ttl=100)
        await s.append("stays")
        await asyncio.sleep(0.2)
        assert [e.data for e in await s.get_all()] == ["stays"]


async def test_stream_roundtrip_headers_json_and_big_payload(
    server: Server, user: User, connect
) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    big = "z" * 200_000
    async with PersistStream(nc, path(user)) as s:
        a = await s.append({"n": 1}, headers={"h": "v"})
        b = await s.append([1, 2], encoding=1)
        c = await s.append(big)
        entries = await s.get_all()
        assert [e.seq for e in entries] == [a.seq, b.seq, c.seq]
        assert entries[0].headers == {"h": "v"} and entries[0].data == {"n": 1}
        assert entries[1].encoding == 1 and entries[1].data == [1, 2]
        assert entries[2].data == big
        assert [e.seq for e in await s.get_all(start_seq=2, end_seq=2)] == [2]
        inv = await s.inventory()
        assert inv["count"] == 3 and inv["seq"] == 3
        results = await s.set_many([{"raw": b"\x01"}, {"raw": b"\x02", "key": "k"}])
        assert [r["seq"] for r in results] == [4, 5]
        assert await s.delete(seqs=[4]) == [4]


async def test_stateless_forms(server: Server, user: User, connect) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    p = path(user)
    kv = AKV(nc, p)
    await kv.set("a", 1)
    await kv.set("b", 2)
    assert await kv.get("a") == 1
    assert sorted(await kv.keys()) == ["a", "b"]
    s = AStream(nc, p)
    assert [e.key for e in await s.get_all()] == ["a", "b"]
    with pytest.raises(ConatError):
        await s.changefeed()


async def test_two_clients_see_each_others_writes(server: Server, user: User, connect) -> None:
    a = await connect(server, {"remember_me": user.cookie})
    b = await connect(server, {"remember_me": user.cookie})
    p = path(user)
    async with PersistStream(a, p) as sa, PersistStream(b, p) as sb:
        feed = await sb.changefeed()
        for i in range(20):
            await sa.append(i)
        seen: list[Entry] = []
        while len(seen) < 20:
            seen.extend(u for u in await feed.next(5) if isinstance(u, Entry))
        assert [e.data for e in seen] == list(range(20))


async def test_changefeed_from_start_seq(server: Server, user: User, connect) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    async with PersistStream(nc, path(user)) as s:
        for i in range(5):
            await s.append(i)
        feed = await s.changefeed(start_seq=3)
        await s.append(5)
        seen: list[int] = []
        while len(seen) < 4:
            seen.extend(u.seq for u in await feed.next(5) if isinstance(u, Entry))
        assert seen == [3, 4, 5, 6]


async def test_path_traversal_and_foreign_scope_refused(
    server: Server, user: User, other_user: User, connect
) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    me, them = user.account_id, other_user.account_id
    for bad in (
        f"accounts/{me}/../{them}/x",
        f"accounts/{me}/%2e%2e/%2e%2e/accounts/{them}/x",
        f"/accounts/{me}/x",
        f"accounts/{them}/x",
        "hub/secret",
    ):
        with pytest.raises(PermissionDenied):
            await PersistStream(nc, bad).open()
        # the server refuses too, not just the client-side check
        data, headers = await raw_request(
            nc, f"account-{me}", {"cmd": "open", "session": "s1"}, {"storage": {"path": bad}}
        )
        assert headers.get("code") == 403, (bad, data)
    # and another account's scope cannot even be addressed: the router refuses
    with pytest.raises(PermissionDenied):
        await raw_request(nc, f"account-{them}", {"cmd": "keys", "storage": {"path": "x"}})


async def test_hostile_input_gets_clear_errors(server: Server, user: User, connect) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    scope = f"account-{user.account_id}"
    good = {"path": path(user)}
    cases: list[tuple[dict[str, Any], Any, Any]] = [
        ({"cmd": "frobnicate", "storage": good}, None, 404),
        ({"cmd": None, "storage": good}, None, 404),
        ({"cmd": "keys"}, None, 400),
        ({"cmd": "keys", "storage": "nope"}, None, 400),
        ({"cmd": "keys", "storage": {"path": 5}}, None, 400),
        ({"cmd": "keys", "storage": {**good, "ephemeral": "yes"}}, None, 400),
        ({"cmd": "keys", "session": "no-such-session"}, None, 410),
        ({"cmd": "open", "session": "bad session!"}, {"storage": good}, 400),
        ({"cmd": "open", "session": "ok"}, "not an object", 400),
        ({"cmd": "setMany", "storage": good}, "not a list", 400),
        ({"cmd": "set", "storage": good, "key": 7}, "x", 400),
        ({"cmd": "set", "storage": good, "ttl": "later"}, "x", 400),
        ({"cmd": "set", "storage": good, "headers": "x" * 60_000}, "x", None),
        ({"cmd": "get", "storage": good, "seq": "1"}, None, 400),
        ({"cmd": "get", "storage": good}, None, 400),
        ({"cmd": "delete", "storage": good, "seqs": "all"}, None, 400),
        ({"cmd": "config", "storage": good, "config": {"max_msgs": "many"}}, None, 400),
        ({"cmd": "getAll", "storage": good, "start_seq": []}, None, 400),
    ]
    for headers, data, code in cases:
        reply, reply_headers = await raw_request(nc, scope, headers, data)
        if code is None:
            assert "error" not in reply_headers, reply
        else:
            assert reply_headers.get("code") == code, (headers, reply)
            assert isinstance(reply_headers.get("error"), str) and reply_headers["error"]
    with pytest.raises(NotFound):
        await AStream(nc, good["path"]).request("frobnicate")
    async with PersistStream(nc, path(user)) as s:  # the server is still fine
        assert (await s.append("still here")).seq == 1


async def test_load_balancer_answers_by_java_hash(server: Server, user: User, connect) -> None:
    nc = await connect(server, {"hub_password": server.hub_password})
    ids = set()
    for scope in ("hub", f"account-{user.account_id}", "project-x"):
        reply = await nc.request(f"persist.{scope}.id", None, timeout=10)
        ids.add(reply.data)
    assert len(ids) == 1  # the session server runs one persist process
    only = ids.pop()
    assert pick([only], "hub") == only


async def test_open_stream_limits(server: Server, user: User, connect) -> None:
    hub = await connect(server, {"hub_password": server.hub_password})
    nc = await connect(server, {"remember_me": user.cookie})
    other = sign_up(server)
    nc2 = await connect(server, {"remember_me": other.cookie})
    sid = f"limits-{secrets.token_hex(3)}"
    persist = PersistServer(hub, sid, server.data_dir / "sync", max_per_scope=3, max_global=5)
    async with persist:

        async def open_one(client: Client, u: User, n: int) -> Any:
            reply = await client.request(
                f"persist.account-{u.account_id}.server.{sid}",
                {"storage": {"path": path(u, f"s{n}")}},
                headers={"cmd": "open", "session": f"s{n}"},
                timeout=10,
            )
            return reply.headers or {}

        for n in range(3):
            assert "error" not in await open_one(nc, user, n)
        assert (await open_one(nc, user, 3)).get("code") == 429
        for n in range(2):
            assert "error" not in await open_one(nc2, other, n)
        assert (await open_one(nc2, other, 2)).get("code") == 429  # the server-wide limit
        assert persist.open_streams == 5
    assert TooMany.default_code == 429


async def test_corrupted_stream_fails_alone(server: Server, user: User, connect) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    bad = path(user, "corrupt")
    file = server.data_dir / "sync" / f"{bad}.db"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"garbage, not SQLite" * 500)
    with pytest.raises(ConatError, match="corrupted"):
        await PersistStream(nc, bad).open()
    async with PersistStream(nc, path(user)) as fine:
        assert (await fine.append(1)).seq == 1


async def test_hub_may_use_any_path(server: Server, connect) -> None:
    hub = await connect(server, {"hub_password": server.hub_password})
    async with PersistStream(hub, Storage(f"hub/{secrets.token_hex(4)}", ephemeral=True)) as s:
        await s.append("in memory")
        assert (await s.inventory())["limits"] == {"max_bytes": 64_000_000}  # the cap
        assert [e.data for e in await s.get_all()] == ["in memory"]


async def test_open_stream_limits_count_distinct_streams(
    server: Server, user: User, connect
) -> None:
    """Many sessions and stateless calls on one stream are one open stream, not many."""
    hub = await connect(server, {"hub_password": server.hub_password})
    nc = await connect(server, {"remember_me": user.cookie})
    other = sign_up(server)
    nc2 = await connect(server, {"remember_me": other.cookie})
    sid = f"distinct-{secrets.token_hex(3)}"
    persist = PersistServer(hub, sid, server.data_dir / "sync", max_per_scope=2, max_global=3)
    a, b, c = path(user, "a"), path(user, "b"), path(user, "c")

    async def ask(client: Client, u: User, headers: dict[str, Any], data: Any = None) -> Any:
        reply = await client.request(
            f"persist.account-{u.account_id}.server.{sid}", data, headers=headers, timeout=10
        )
        return (reply.headers or {}).get("code")

    async def open_session(client: Client, u: User, p: str, session: str) -> Any:
        return await ask(client, u, {"cmd": "open", "session": session}, {"storage": {"path": p}})

    async with persist:
        for n in range(5):  # more sessions than the per-scope limit, all on one stream
            assert await open_session(nc, user, a, f"a{n}") is None
        assert persist.open_streams == 1
        assert await open_session(nc, user, b, "b0") is None
        assert await open_session(nc, user, c, "c0") == 429  # a third distinct stream
        # a stateless call on a stream this scope already has open is not a new stream
        assert await ask(nc, user, {"cmd": "keys", "storage": {"path": a}}) is None
        assert await ask(nc, user, {"cmd": "keys", "storage": {"path": c}}) == 429
        # the server-wide limit: a, b and the other account's first stream
        assert await open_session(nc2, other, path(other, "d"), "d0") is None
        assert await open_session(nc2, other, path(other, "e"), "e0") == 429
        assert persist.open_streams == 3
        # closing the only session on b frees its slot for c; a's 5 sessions still hold a
        assert await ask(nc, user, {"cmd": "close", "session": "b0"}) is None
        assert await open_session(nc, user, c, "c1") is None
        assert await ask(nc, user, {"cmd": "close", "session": "a0"}) is None
        assert await open_session(nc, user, b, "b1") == 429  # a is still open: 2 streams


async def test_msg_id_dedupe_across_stateless_calls_and_sessions(
    server: Server, user: User, connect
) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    p = path(user)
    s = AStream(nc, p)
    first = await s.append("one", msg_id="retry-me")
    # each stateless call opens and closes the stream on the server: only the file remembers
    assert await s.append("two", msg_id="retry-me") == first
    async with PersistStream(nc, p) as session:
        assert await session.append("three", msg_id="retry-me") == first
        results = await session.set_many([{"raw": b"\x01", "msgID": "retry-me"}])
        assert results == [{"seq": first.seq, "time": first.time}]
    assert [e.data for e in await s.get_all()] == ["one"]


async def test_max_age_expiry_is_announced_without_writes(
    server: Server, user: User, connect
) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    async with PersistStream(nc, path(user)) as s:
        await s.config({"max_age": 300})
        feed = await s.changefeed()
        a = await s.append("a")
        b = await s.append("b")
        deleted: list[int] = []
        # no more writes: the server's once-a-second housekeeping expires and announces them
        while len(deleted) < 2:
            got = await feed.next(10)
            deleted.extend(seq for u in got if isinstance(u, Deleted) for seq in u.seqs)
        assert sorted(deleted) == [a.seq, b.seq]
        assert await s.get_all() == []


async def test_get_all_over_several_batches(server: Server, user: User, connect) -> None:
    nc = await connect(server, {"remember_me": user.cookie})
    p = path(user)
    # 12 MB that zstd cannot shrink: three batches or more of about 4 MB each
    values = [secrets.token_bytes(200_000) for _ in range(60)]
    async with PersistStream(nc, p, timeout=60) as s:
        for i in range(0, len(values), 10):
            await s.set_many([{"raw": v, "encoding": 0} for v in values[i : i + 10]])
        entries = await s.get_all()
        assert [e.raw for e in entries] == values
        assert [e.seq for e in entries] == list(range(1, 61))
        assert [e.seq for e in await s.get_all(start_seq=30)] == list(range(30, 61))
    # the same request by hand: count the batches and check their numbering
    scope = f"account-{user.account_id}"
    server_id = (await nc.request(f"persist.{scope}.id", None, timeout=10)).data
    batches: list[int] = []
    count = 0
    replies = nc.request_many(
        f"persist.{scope}.server.{server_id}",
        None,
        headers={"cmd": "getAll", "storage": {"path": p}},
        timeout=30,
        max_wait=30,
    )
    async for msg in replies:
        batches.append((msg.headers or {})["seq"])
        count += len(msg.data)
    assert count == 60
    assert len(batches) >= 3 and batches == list(range(len(batches)))


async def test_two_servers_share_a_directory_in_nfs_mode(
    server: Server, connect, tmp_path: Any
) -> None:
    """nfs mode: any server may open any stream, and they see each other's writes."""
    hub = await connect(server, {"hub_password": server.hub_password})
    shared = tmp_path / "shared"
    one, two = f"nfs1-{secrets.token_hex(3)}", f"nfs2-{secrets.token_hex(3)}"
    storage = {"path": "hub/nfs-shared"}
    first = PersistServer(hub, one, shared, mode="nfs")
    second = PersistServer(hub, two, shared, mode="nfs")
    async with first, second:

        async def ask(sid: str, headers: dict[str, Any], data: Any = None) -> Any:
            reply = await hub.request(
                f"persist.hub.server.{sid}", data, headers=headers, timeout=10
            )
            assert "error" not in (reply.headers or {}), reply.data
            return reply.data

        # both hold the stream open at once: a session on each
        await ask(one, {"cmd": "open", "session": "s1"}, {"storage": storage})
        await ask(two, {"cmd": "open", "session": "s2"}, {"storage": storage})
        a = await ask(one, {"cmd": "set", "session": "s1", "msgID": "m"}, "from one")
        b = await ask(two, {"cmd": "set", "session": "s2"}, "from two")
        assert (a["seq"], b["seq"]) == (1, 2)
        assert await ask(two, {"cmd": "set", "session": "s2", "msgID": "m"}, "dup") == a
        assert (await ask(one, {"cmd": "inventory", "session": "s1"}))["count"] == 2
        assert (await ask(two, {"cmd": "get", "session": "s2", "seq": 1}))["seq"] == 1
    assert not (shared / "hub" / "nfs-shared.db-wal").exists()


async def test_get_all_objects_and_rows_carry_the_same_messages(
    server: Server, user: User, connect
) -> None:
    """The compact form (``format: rows``) is only an encoding: a client that does not ask
    for it still gets objects, with the same facts."""
    nc = await connect(server, {"remember_me": user.cookie})
    p = path(user)
    async with KV(nc, p) as kv:
        await kv.set("k", {"v": 1}, headers={"h": [1, "x"]})
        await PersistStream.set(kv, "z" * 5000, encoding=1)  # compressed on disk
    scope = f"account-{user.account_id}"
    server_id = (await nc.request(f"persist.{scope}.id", None, timeout=10)).data

    async def batches(extra: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        replies = nc.request_many(
            f"persist.{scope}.server.{server_id}",
            None,
            headers={"cmd": "getAll", "storage": {"path": p}, **extra},
            timeout=10,
            max_wait=10,
        )
        data, formats = [], []
        async for msg in replies:
            data.extend(msg.data)
            formats.append((msg.headers or {}).get("format"))
        return data, formats

    objects, plain = await batches({})
    rows, compact = await batches({"format": "rows"})
    assert plain == [None] and compact == ["rows"]
    assert [set(o) for o in objects] == [
        {"seq", "time", "encoding", "raw", "key", "headers"},
        {"seq", "time", "encoding", "raw"},
    ]
    assert rows == [
        [o["seq"], o["time"], o["encoding"], o["raw"], o.get("key"), o.get("headers")]
        for o in objects
    ]
    assert rows[0][4:] == ["k", {"h": [1, "x"]}]
