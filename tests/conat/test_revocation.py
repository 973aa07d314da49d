"""Access taken away reaches connections that are already open."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cohub.conat.client import Client
from cohub.conat.protocol import PERMISSIONS_CHANGED
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
