"""The router end to end: a real `cohub serve` process and real socket.io clients."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import socketio

from cohub.conat.client import Client
from cohub.conat.errors import BadRequest, NoSubscribers, PermissionDenied, RequestTimeout

pytestmark = pytest.mark.asyncio


async def test_info_carries_account_id(server, user, connect) -> None:
    client = await connect(server, {"remember_me": user.cookie})
    assert client.info is not None
    assert client.info["user"] == {"account_id": user.account_id}
    assert client.info["max_payload"] == 8_000_000


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
