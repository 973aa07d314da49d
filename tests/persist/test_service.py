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
