"""The router end to end: a real `cohub serve` process and real socket.io clients."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from urllib.parse import quote

import msgpack
import pytest
import socketio
from websockets.asyncio.client import connect as ws_connect

from cohub.conat.client import Client
from cohub.conat.errors import (
    BadRequest,
    ConatError,
    NoSubscribers,
    PermissionDenied,
    RequestTimeout,
)
from cohub.conat.protocol import CONNECTIONS_SUBJECT
from cohub.db import projects as db_projects
from cohub.db.engine import Database

pytestmark = pytest.mark.asyncio


async def test_info_carries_account_id(server, user, connect) -> None:
    client = await connect(server, {"remember_me": user.cookie})
    assert client.info is not None
    assert client.info["user"] == {"account_id": user.account_id}
    assert client.info["max_payload"] == 8_000_000
    # conat.md section 1: info carries {max_payload, id, clusterName, user}, configured or not
    assert client.info["clusterName"] == "default"
    assert isinstance(client.info["id"], str) and client.info["id"]


async def test_publish_subscribe_roundtrip(server, user, connect) -> None:
    client = await connect(server, {"remember_me": user.cookie})
    sub = await client.subscribe(f"account.{user.account_id}.x")
    result = await client.publish(f"account.{user.account_id}.x", {"hello": "world"})
    assert result.count == 1
    msg = await sub.next(timeout=5)
    assert msg.data == {"hello": "world"}
    assert msg.subject == f"account.{user.account_id}.x"


async def test_wildcards_and_json_encoding_and_headers(server, user, connect) -> None:
    client = await connect(server, {"remember_me": user.cookie})
    base = f"account.{user.account_id}"
    star = await client.subscribe(f"{base}.*.leaf")
    tail = await client.subscribe(f"{base}.>")
    r = await client.publish(f"{base}.mid.leaf", [1, 2, 3], encoding=1, headers={"k": "v"})
    assert r.count == 2
    for sub in (star, tail):
        msg = await sub.next(timeout=5)
        assert msg.data == [1, 2, 3]
        assert msg.encoding == 1
        assert msg.headers == {"k": "v"}
    r = await client.publish(f"{base}.a.b.c", "deep")
    assert r.count == 1  # only the '>' pattern matches three more tokens
    assert (await tail.next(timeout=5)).data == "deep"


async def test_queue_groups(server, user, connect) -> None:
    a = await connect(server, {"remember_me": user.cookie})
    b = await connect(server, {"remember_me": user.cookie})
    c = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.q"
    sa = await a.subscribe(subject, queue="q")
    sb = await b.subscribe(subject, queue="q")
    sc = await c.subscribe(subject)
    for i in range(10):
        r = await c.publish(subject, i)
        assert r.count == 2
    got_c = [(await sc.next(timeout=5)).data for _ in range(10)]
    assert got_c == list(range(10))
    got_ab: list[int] = []
    for sub in (sa, sb):
        while True:
            try:
                got_ab.append((await sub.next(timeout=0.3)).data)
            except RequestTimeout:
                break
    assert sorted(got_ab) == list(range(10))


async def test_request_reply_and_errors(server, user, connect) -> None:
    client = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.echo"

    async def echo(msg):  # type: ignore[no-untyped-def]
        return {"echo": msg.data}

    task = await client.service(subject, echo)
    try:
        reply = await client.request(subject, "hi", timeout=5)
        assert reply.data == {"echo": "hi"}
    finally:
        task.cancel()
    with pytest.raises(NoSubscribers) as e:
        await client.request(f"account.{user.account_id}.nobody", 1, timeout=5)
    assert e.value.code == 503
    silent = await client.subscribe(f"account.{user.account_id}.silent")
    with pytest.raises(RequestTimeout) as t:
        await client.request(f"account.{user.account_id}.silent", 1, timeout=0.5)
    assert t.value.code == 408
    silent.close()


async def test_large_message_is_chunked(server, user, connect) -> None:
    client = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.big"
    sub = await client.subscribe(subject)
    payload = bytes(range(256)) * (20 * 1024 * 1024 // 256)
    r = await client.publish(subject, payload)
    assert r.count == 1 and r.bytes > 20 * 1024 * 1024
    msg = await sub.next(timeout=30)
    assert msg.data == payload


async def test_hub_api_ping_and_projects(server, user, connect) -> None:
    client = await connect(server, {"remember_me": user.cookie})
    api = f"hub.account.{user.account_id}.api"
    pong = await client.call(api, "system.ping")
    assert isinstance(pong["now"], int)
    assert (await client.call(api, "system.test"))["account_id"] == user.account_id
    project_id = await client.call(api, "projects.createProject", {"title": "My project"})
    uuid.UUID(project_id)
    listed = await client.call(api, "projects.list")
    assert {"project_id": project_id, "title": "My project", "group": "owner"}.items() <= next(
        p for p in listed if p["project_id"] == project_id
    ).items()
    bad = await client.request(api, {"name": "nope.nothing", "args": []}, timeout=5)
    assert "unknown function" in bad.data["error"]


async def test_collaborators_grant_project_subjects(server, user, other_user, connect) -> None:
    owner = await connect(server, {"remember_me": user.cookie})
    other = await connect(server, {"remember_me": other_user.cookie})
    api = f"hub.account.{user.account_id}.api"
    project_id = await owner.call(api, "projects.createProject", {"title": "shared"})
    with pytest.raises(PermissionDenied) as denied:
        await other.subscribe(f"project.{project_id}.>")
    assert denied.value.code == 403
    await owner.call(
        api,
        "projects.addCollaborator",
        {"project_id": project_id, "account_id": other_user.account_id},
    )
    fresh = await connect(server, {"remember_me": other_user.cookie})  # no cached denial
    sub = await fresh.subscribe(f"project.{project_id}.x.>")
    assert (await owner.publish(f"project.{project_id}.x.y", 7)).count == 1
    assert (await sub.next(timeout=5)).data == 7
    listed = await fresh.call(f"hub.account.{other_user.account_id}.api", "projects.list")
    assert any(p["project_id"] == project_id and p["group"] == "collaborator" for p in listed)
    removed = await owner.request(
        api,
        {
            "name": "projects.removeCollaborator",
            "args": [{"project_id": project_id, "account_id": user.account_id}],
        },
        timeout=5,
    )
    assert "owner" in removed.data["error"]


async def test_second_account_is_denied_with_permission_event(
    server, user, other_user, connect
) -> None:
    other = await connect(server, {"remember_me": other_user.cookie})
    events: list[dict] = []
    other.sio.on("permission", lambda data: events.append(data))
    with pytest.raises(PermissionDenied):
        await other.subscribe(f"account.{user.account_id}.>")
    await asyncio.sleep(0.2)
    assert events and events[0]["type"] == "sub"
    assert events[0]["subject"] == f"account.{user.account_id}.>"
    with pytest.raises(PermissionDenied):
        await other.publish(f"hub.account.{user.account_id}.api", {"name": "system.test"})
    # an account may publish to its own hub API subject but never subscribe there
    with pytest.raises(PermissionDenied):
        await other.subscribe(f"hub.account.{other_user.account_id}.api")
    # anyone may publish to an inbox
    assert (await other.publish("_INBOX.somebody.else", 1)).count == 0


async def test_cached_denial_fails_locally(server, user, other_user, connect) -> None:
    other = await connect(server, {"remember_me": other_user.cookie}, reconnect=False)
    subject = f"account.{user.account_id}.secret"
    with pytest.raises(PermissionDenied):
        await other.publish(subject, 1)
    await asyncio.sleep(0.2)
    await other.sio.disconnect()  # any server round trip would now fail differently
    with pytest.raises(PermissionDenied):
        await other.publish(subject, 1)


async def test_no_cookie_gets_info_error_and_disconnect(server) -> None:
    sio = socketio.AsyncClient(reconnection=False)
    infos: list[dict] = []
    gone = asyncio.Event()
    sio.on("info", lambda info: infos.append(info))
    sio.on("disconnect", lambda *a: gone.set())
    await sio.connect(server.url, transports=["websocket"], socketio_path="conat")
    await asyncio.wait_for(gone.wait(), 5)
    assert infos and "error" in infos[0]["user"]
    assert infos[0]["user"]["code"] == 401
    await sio.disconnect()


async def test_bad_cookie_is_refused(server) -> None:
    client = Client(server.url, cookies={"remember_me": "not-a-session"}, reconnect=False)
    with pytest.raises(Exception, match="sign in"):
        await client.connect(timeout=5)
    await client.close()


async def test_hub_password_gives_hub_identity(server, connect) -> None:
    hub = await connect(server, {"hub_password": server.hub_password})
    assert hub.info["user"] == {"hub_id": "hub"}
    tap = await hub.subscribe(">")
    r = await hub.publish("anything.at.all", 1)
    assert r.count == 0  # the admin tap is silent
    assert (await tap.next(timeout=5)).subject == "anything.at.all"
    with pytest.raises(NoSubscribers):
        await hub.request("nobody.here", 1, timeout=2)


async def test_client_validates_subjects(server, user, connect) -> None:
    client = await connect(server, {"remember_me": user.cookie})
    for bad in ("", "a..b", "a.*", "a.>", " x", "a b"):
        with pytest.raises(BadRequest):
            await client.publish(bad, 1)
    with pytest.raises(BadRequest):
        await client.subscribe("a.>.b")
    subject = f"account.{user.account_id}.dup"
    await client.subscribe(subject, queue="one")
    with pytest.raises(BadRequest, match="one queue group"):
        await client.subscribe(subject, queue="two")


async def test_same_subject_twice_shares_one_server_subscription(server, user, connect) -> None:
    """conat.md 9.3: two local iterators, one server subscription, dropped only when both close."""
    client = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.twice"
    first = await client.subscribe(subject)
    second = await client.subscribe(subject)
    held = await client.sio.call("subscriptions", None, timeout=5)
    assert held.count(subject) == 1
    assert (await client.publish(subject, 1)).count == 1  # one server-side subscription
    assert (await first.next(timeout=5)).data == 1
    assert (await second.next(timeout=5)).data == 1
    first.close()
    await asyncio.sleep(0.2)
    assert subject in await client.sio.call("subscriptions", None, timeout=5)
    assert (await client.publish(subject, 2)).count == 1
    assert (await second.next(timeout=5)).data == 2
    second.close()
    for _ in range(50):
        if subject not in await client.sio.call("subscriptions", None, timeout=5):
            break
        await asyncio.sleep(0.05)
    assert subject not in await client.sio.call("subscriptions", None, timeout=5)
    assert (await client.publish(subject, 3)).count == 0


# ---- audit follow-ups ------------------------------------------------------------------------


async def test_wait_for_interest_default_and_cap() -> None:
    """conat.md 6: wait-for-interest defaults to 30 s and never waits past 90 s, on the router
    (milliseconds on the wire) and in the client (seconds, or True for the default)."""
    from cohub.conat.client import wait_for_interest_seconds as client_wait
    from cohub.conat.router import wait_for_interest_seconds as router_wait

    assert router_wait(None) == 30.0
    assert router_wait(1500) == 1.5
    assert router_wait(0) == 0.0
    assert router_wait(10 * 60 * 1000) == 90.0
    assert router_wait(float("inf")) == 90.0
    for bad in (-1, "30", True, float("nan"), [1]):
        with pytest.raises(BadRequest):
            router_wait(bad)
    assert client_wait(True) == 30.0
    assert client_wait(2.5) == 2.5
    assert client_wait(600) == 90.0


async def _until(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_missing_middle_chunk_drops_the_message_end_to_end(server, user, connect) -> None:
    """conat.md 9.6: chunks 0 and 2 of a message (1 never sent) reach a Client subscriber,
    which must drop that message and still deliver the next one."""
    subscriber = await connect(server, {"remember_me": user.cookie})
    publisher = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.gappy"
    sub = await subscriber.subscribe(subject)
    for seq, done in ((0, 0), (2, 1)):
        frame = [subject, "gap-id", seq, done, 0, msgpack.packb(f"part {seq}")]
        assert await publisher.sio.call("publish", frame, timeout=5) == {"count": 1}
    assert (await publisher.publish(subject, "whole")).count == 1
    assert (await sub.next(timeout=5)).data == "whole"
    with pytest.raises(RequestTimeout):
        await sub.next(timeout=0.3)  # and nothing else came


async def test_admin_tap_is_never_counted(server, user, connect) -> None:
    """conat.md 9.5: with a '>' tap and a real subscriber the count is 1 and both get it; with
    the tap alone the count is 0 and a request fails with 503."""
    hub = await connect(server, {"hub_password": server.hub_password})
    client = await connect(server, {"remember_me": user.cookie})
    tap = await hub.subscribe(">")
    subject = f"account.{user.account_id}.tapped"
    real = await client.subscribe(subject)
    assert (await client.publish(subject, "both")).count == 1
    assert (await real.next(timeout=5)).data == "both"
    seen = await tap.next(timeout=5)
    while seen.subject != subject:  # the server's own traffic passes the tap too
        seen = await tap.next(timeout=5)
    assert seen.data == "both"
    real.close()
    lonely = f"account.{user.account_id}.tapped.alone"
    assert (await client.publish(lonely, 1)).count == 0
    with pytest.raises(NoSubscribers) as e:
        await client.request(lonely, 1, timeout=2)
    assert e.value.code == 503


async def test_hub_delivers_to_cluster_targets(server, connect) -> None:
    """The field after the headers names delivery targets (cluster fan-out): a hub naming a
    subscriber's connection and pattern reaches exactly that subscriber."""
    from tests.conftest import sign_up

    user = sign_up(server)
    client = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.targeted"
    sub = await client.subscribe(subject)
    hub = await connect(server, {"hub_password": server.hub_password})
    figures = (await hub.request(CONNECTIONS_SUBJECT, None, timeout=5)).data
    (sid,) = [c["id"] for c in figures["connections"] if c["user"] == client.info["user"]]
    base = [subject, "t1", 0, 1, 0, msgpack.packb("to you")]
    ack = await hub.sio.call("publish", [*base, None, [{"pattern": subject, "target": sid}]])
    assert ack == {"count": 1}
    msg = await sub.next(timeout=5)
    assert msg.data == "to you" and msg.subject == subject
    # a target that holds no such subscription is not delivered to
    base[1] = "t2"
    ack = await hub.sio.call("publish", [*base, None, [{"pattern": subject, "target": "nobody"}]])
    assert ack == {"count": 0}
    other = f"account.{user.account_id}.elsewhere"
    ack = await hub.sio.call("publish", [*base, None, [{"pattern": other, "target": sid}]])
    assert ack == {"count": 0}
    with pytest.raises(RequestTimeout):
        await sub.next(timeout=0.3)


async def test_project_secret_cookies(server, user, connect) -> None:
    """conat.md 3.4: project_secret with project_id signs in as the project; a wrong secret or
    a missing project_id is refused."""
    owner = await connect(server, {"remember_me": user.cookie})
    project_id = await owner.call(
        f"hub.account.{user.account_id}.api", "projects.createProject", {"title": "run"}
    )
    secret = secrets.token_urlsafe(24)
    async with Database(server.db_url) as db:
        await db_projects.set_secret_token(db, project_id, secret)
    project = await connect(server, {"project_id": project_id, "project_secret": secret})
    assert project.info["user"] == {"project_id": project_id}
    sub = await project.subscribe(f"project.{project_id}.files")
    assert (await project.publish(f"project.{project_id}.files", 1)).count == 1
    assert (await sub.next(timeout=5)).data == 1
    for cookies, message in (
        ({"project_id": project_id, "project_secret": secret + "x"}, "invalid secret token"),
        ({"project_secret": secret}, "must specify project_id"),
    ):
        refused = Client(server.url, cookies=cookies, reconnect=False)
        try:
            with pytest.raises(ConatError, match=message) as e:
                await refused.connect(timeout=5)
            assert e.value.code == 401
        finally:
            await refused.close()


async def test_system_password_cookie(server, connect) -> None:
    """conat.md 3.1: the sys cookie with the system password (a file beside the hub password,
    created at start) is the system hub identity; a wrong one is refused."""
    path = server.data_dir / "secrets" / "conat-password-system"
    assert path.stat().st_mode & 0o777 == 0o600
    password = path.read_text().strip()
    assert password and password != server.hub_password
    system = await connect(server, {"sys": password})
    assert system.info["user"] == {"hub_id": "system"}
    assert (await system.publish("sys.conat.anything", 1)).count == 0  # hubs may publish anywhere
    refused = Client(server.url, cookies={"sys": server.hub_password}, reconnect=False)
    try:
        with pytest.raises(ConatError, match="invalid system account password"):
            await refused.connect(timeout=5)
    finally:
        await refused.close()


async def test_permessage_deflate_is_refused(server, user) -> None:
    """conat.md 10: a client offering permessage-deflate gets no extension back (frames stay
    uncompressed), and pub/sub works on that connection."""
    ws = await ws_connect(
        f"ws://127.0.0.1:{server.port}/conat/?EIO=4&transport=websocket",
        additional_headers={"Cookie": f"remember_me={quote(user.cookie, safe='')}"},
        compression="deflate",
        open_timeout=10,
    )
    try:
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        assert ws.protocol.extensions == []

        async def text() -> str:
            while True:
                frame = await asyncio.wait_for(ws.recv(), 10)
                if frame == "2":
                    await ws.send("3")
                elif isinstance(frame, str):
                    return frame

        assert (await text()).startswith("0{")
        await ws.send("40")
        assert (await text()).startswith("40")
        info = re.fullmatch(r'42(\d+)\["info",(.*)\]', await text())
        assert info and json.loads(info.group(2))["user"] == {"account_id": user.account_id}
        await ws.send(f"43{info.group(1)}[]")
        subject = f"account.{user.account_id}.deflate"
        await ws.send("421" + json.dumps(["subscribe", {"subject": subject, "queue": "q"}]))
        assert await text() == '431[{"status":"added"}]'
        payload = json.dumps({"big": "x" * 5000}).encode()  # large and compressible
        frame = [subject, "m1", 0, 1, 1, {"_placeholder": True, "num": 0}]
        await ws.send("451-2" + json.dumps(["publish", frame]))
        await ws.send(payload)
        acked = delivered = False
        while not (acked and delivered):
            got = await text()
            if got == '432[{"count":1}]':
                acked = True
            else:
                assert got.startswith("451-") and json.loads(got[4:])[0] == subject
                assert await asyncio.wait_for(ws.recv(), 10) == payload
                delivered = True
    finally:
        await ws.close()


async def test_denial_cache_expires_after_60_s(
    server, user, other_user, connect, monkeypatch
) -> None:
    """conat.md 2: a denial is cached for 60 s (failing locally), then the router is asked
    again. The client's clock is moved on instead of waiting."""
    import time

    from cohub.conat import client as client_module

    class Clock:
        offset = 0.0

        def monotonic(self) -> float:
            return time.monotonic() + self.offset

        def time(self) -> float:
            return time.time() + self.offset

    clock = Clock()
    monkeypatch.setattr(client_module, "time", clock)
    other = await connect(server, {"remember_me": other_user.cookie})
    events: list[dict] = []
    cache_it = other._on_permission

    async def on_permission(payload: dict) -> None:
        events.append(payload)
        await cache_it(payload)

    other.sio.on("permission", on_permission)
    subject = f"account.{user.account_id}.secret"
    with pytest.raises(PermissionDenied):
        await other.publish(subject, 1)
    await _until(lambda: len(events) == 1)
    clock.offset = 59.0
    with pytest.raises(PermissionDenied):
        await other.publish(subject, 1)  # from the cache: the router is not asked
    await asyncio.sleep(0.3)
    assert len(events) == 1
    clock.offset = 61.0
    with pytest.raises(PermissionDenied):
        await other.publish(subject, 1)  # the cached denial expired: the router says no again
    await _until(lambda: len(events) == 2)
