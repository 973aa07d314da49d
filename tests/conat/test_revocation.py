"""Access taken away reaches connections that are already open."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cohub.conat import protocol as P
from cohub.conat.client import Client
from cohub.conat.permissions import Permissions
from cohub.conat.protocol import PERMISSIONS_CHANGED
from cohub.db import projects as db_projects
from cohub.db.engine import Database
from tests.conat import inprocess
from tests.conat.inprocess import make_router
from tests.conftest import Server, sign_up


async def _post(url: str, json: dict, cookies: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(cookies=cookies) as http:
        return await http.post(url, json=json)


async def _until(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_removed_collaborator_stops_receiving_at_once(server: Server, connect) -> None:  # type: ignore[no-untyped-def]
    owner_user, other_user = sign_up(server), sign_up(server)
    owner = await connect(server, {"remember_me": owner_user.cookie})
    api = f"hub.account.{owner_user.account_id}.api"
    project_id = await owner.call(api, "projects.createProject", {"title": "p"})
    args = {"project_id": project_id, "account_id": other_user.account_id}
    await owner.call(api, "projects.addCollaborator", args)
    other = await connect(server, {"remember_me": other_user.cookie})
    events: list[dict] = []
    other.sio.on("permission", lambda data: events.append(data))
    subject = f"project.{project_id}.files"
    sub = await other.subscribe(subject)
    assert (await owner.publish(subject, 1)).count == 1
    assert (await sub.next(timeout=5)).data == 1

    await owner.call(api, "projects.removeCollaborator", args)
    await _until(lambda: any(e["subject"] == subject for e in events))
    assert events[-1]["type"] == "sub" and "revoked" in events[-1]["message"]
    assert (await owner.publish(subject, 2)).count == 0
    # and the router now refuses a new subscription there
    fresh = await connect(server, {"remember_me": other_user.cookie})
    with pytest.raises(Exception, match="permission denied"):
        await fresh.subscribe(subject)


async def test_deleted_project_closes_its_subjects_even_to_its_owner(
    server: Server, connect
) -> None:  # type: ignore[no-untyped-def]
    owner_user = sign_up(server)
    owner = await connect(server, {"remember_me": owner_user.cookie})
    hub = await connect(server, {"hub_password": server.hub_password})
    api = f"hub.account.{owner_user.account_id}.api"
    project_id = await owner.call(api, "projects.createProject", {"title": "doomed"})
    events: list[dict] = []
    owner.sio.on("permission", lambda data: events.append(data))
    subject = f"project.{project_id}.-.api.-"
    sub = await owner.subscribe(subject)
    assert (await hub.publish(subject, 1)).count == 1
    assert (await sub.next(timeout=5)).data == 1

    await owner.call(api, "projects.deleteProject", {"project_id": project_id})
    await _until(lambda: any(e["subject"] == subject for e in events))
    assert (await hub.publish(subject, 2)).count == 0  # the owner's subscription is gone
    fresh = await connect(server, {"remember_me": owner_user.cookie})
    with pytest.raises(Exception, match="permission denied"):
        await fresh.subscribe(subject)
    with pytest.raises(Exception, match="permission denied"):
        await fresh.publish(subject, {"name": "system.exec", "args": [{"command": "id"}]})


async def _ended(client: Client) -> None:
    await _until(lambda: not client.connected or client.identity is None)


async def test_signed_out_session_loses_its_connection(server: Server, connect) -> None:  # type: ignore[no-untyped-def]
    user = sign_up(server)
    client = Client(server.url, cookies={"remember_me": user.cookie}, reconnect=False)
    await client.connect()
    try:
        r = await _post(
            server.url + "/api/v2/accounts/sign-out", json={}, cookies={"remember_me": user.cookie}
        )
        assert r.status_code == 200
        # what hub-next announces after a sign-out; the router re-checks that account now
        hub = await connect(server, {"hub_password": server.hub_password})
        await hub.publish(PERMISSIONS_CHANGED, {"account_id": user.account_id})
        await _ended(client)
        assert client.info is not None
        assert client.info["user"].get("code") == 401
    finally:
        await client.close()


async def test_deleted_api_key_loses_its_connection(server: Server, connect) -> None:  # type: ignore[no-untyped-def]
    user = sign_up(server)
    cookies = {"remember_me": user.cookie}
    created = await _post(
        server.url + "/api/v2/api-keys", json={"action": "create", "name": "k"}, cookies=cookies
    )
    assert created.status_code == 200, created.text
    key = created.json()["response"][0]
    secret = key["secret"]
    assert isinstance(secret, str) and secret.startswith("sk-"), key
    client = Client(server.url, cookies={"api_key": secret}, reconnect=False)
    await client.connect()
    try:
        assert client.identity is not None and client.identity.id == user.account_id
        deleted = await _post(
            server.url + "/api/v2/api-keys",
            json={"action": "delete", "id": key["id"]},
            cookies=cookies,
        )
        assert deleted.status_code == 200, deleted.text
        hub = await connect(server, {"hub_password": server.hub_password})
        await hub.publish(PERMISSIONS_CHANGED, {"account_id": user.account_id})
        await _ended(client)
    finally:
        await client.close()


async def test_valid_sessions_survive_a_recheck(server: Server, connect) -> None:  # type: ignore[no-untyped-def]
    user = sign_up(server)
    client = await connect(server, {"remember_me": user.cookie})
    sub = await client.subscribe(f"account.{user.account_id}.keep")
    hub = await connect(server, {"hub_password": server.hub_password})
    await hub.publish(PERMISSIONS_CHANGED, {"account_id": user.account_id})
    await hub.publish(PERMISSIONS_CHANGED, {})  # everything, everyone
    await asyncio.sleep(0.5)
    assert client.connected and client.identity is not None
    assert (await client.publish(f"account.{user.account_id}.keep", "still")).count == 1
    assert (await sub.next(timeout=5)).data == "still"


def test_production_timings_revoke_within_a_minute() -> None:
    """A collaborator change no hub announced is seen at the next sweep after the cached
    decision expires: sweep interval plus cache lifetime must stay within the minute."""
    assert P.PERMISSION_SWEEP_S + P.PERMISSION_CACHE_S <= 60
    assert Permissions(lambda p, a: None)._ttl == P.PERMISSION_CACHE_S  # type: ignore[arg-type,return-value]


async def test_unannounced_collaborator_removal_is_revoked(  # type: ignore[no-untyped-def]
    server: Server, connect, monkeypatch
) -> None:
    """A collaborator taken off a project straight in the database (no hub, no announcement)
    loses the project's subscriptions at the router's next sweep. The sweep and the cache
    run at 0.2 s and 0.3 s here instead of 15 s and 45 s."""
    monkeypatch.setattr(P, "PERMISSION_SWEEP_S", 0.2)
    owner_user, other_user = sign_up(server), sign_up(server)
    owner = await connect(server, {"remember_me": owner_user.cookie})
    api = f"hub.account.{owner_user.account_id}.api"
    project_id = await owner.call(api, "projects.createProject", {"title": "quiet"})
    await owner.call(
        api,
        "projects.addCollaborator",
        {"project_id": project_id, "account_id": other_user.account_id},
    )
    async with Database(server.db_url) as db:
        router = make_router(db, hub_password="hub-secret", permission_ttl=0.3)
        async with inprocess.serve(router) as url:
            async with (
                Client(url, cookies={"remember_me": other_user.cookie}) as other,
                Client(url, cookies={"hub_password": "hub-secret"}) as hub,
            ):
                events: list[dict] = []
                other.sio.on("permission", lambda data: events.append(data))
                subject = f"project.{project_id}.files"
                sub = await other.subscribe(subject)
                assert (await hub.publish(subject, 1)).count == 1
                assert (await sub.next(timeout=5)).data == 1
                await asyncio.sleep(1.0)  # several sweeps: a collaborator keeps access
                assert events == [] and (await hub.publish(subject, 2)).count == 1

                await db_projects.remove_collaborator(db, project_id, other_user.account_id)
                await _until(lambda: any(e["subject"] == subject for e in events), timeout=10)
                assert events[-1]["type"] == "sub" and "revoked" in events[-1]["message"]
                assert (await hub.publish(subject, 3)).count == 0
                held = await other.sio.call("subscriptions", None, timeout=5)
                assert subject not in held
