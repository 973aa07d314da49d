"""Taking access away is announced on sys.conat.permissions.changed, so routers can re-check
the connections of that account or project: sign-out, API key delete and expire changes,
password resets, and project membership changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from cohub.conat.client import Client, Subscription
from cohub.conat.errors import RequestTimeout
from cohub.conat.protocol import PERMISSIONS_CHANGED
from cohub.db import accounts
from cohub.db.engine import Database
from tests.conftest import Server, User, sign_up

Connect = Callable[..., Awaitable[Client]]


async def _listen(server: Server, connect: Connect) -> Subscription:
    hub = await connect(server, {"hub_password": server.hub_password})
    sub = await hub.subscribe(PERMISSIONS_CHANGED)
    await asyncio.sleep(0.2)  # the router knows about the subscription
    return sub


async def _expect(sub: Subscription, data: dict[str, Any], timeout: float = 10) -> None:
    """Wait for ``data``; other announcements (from other tests) are skipped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = []
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await sub.next(timeout=left)
        except RequestTimeout:
            break
        if msg.data == data:
            return
        seen.append(msg.data)
    pytest.fail(f"{data} was not published on {PERMISSIONS_CHANGED}; saw {seen}")


async def _post(
    server: Server, path: str, body: Any, cookies: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30, cookies=cookies) as c:
        return await c.post(server.url + "/api/v2/" + path, json=body)


async def test_sign_out_is_announced(server: Server, connect: Connect) -> None:
    sub = await _listen(server, connect)
    user = sign_up(server)
    r = await _post(server, "accounts/sign-out", {}, cookies={"remember_me": user.cookie})
    assert r.status_code == 200
    await _expect(sub, {"account_id": user.account_id})


async def test_sign_out_everywhere_is_announced(server: Server, connect: Connect) -> None:
    sub = await _listen(server, connect)
    user = sign_up(server)
    r = await _post(
        server, "accounts/sign-out", {"all": True}, cookies={"remember_me": user.cookie}
    )
    assert r.status_code == 200
    await _expect(sub, {"account_id": user.account_id})


async def test_api_key_delete_and_expire_changes_are_announced(
    server: Server, connect: Connect, user: User
) -> None:
    cookie = {"remember_me": user.cookie}
    r = await _post(server, "api-keys", {"action": "create", "name": "k"}, cookies=cookie)
    key_id = r.json()["response"][0]["id"]
    sub = await _listen(server, connect)
    r = await _post(
        server,
        "api-keys",
        {"action": "edit", "id": key_id, "expire": "2100-01-01T00:00:00Z"},
        cookies=cookie,
    )
    assert r.status_code == 200, r.text
    await _expect(sub, {"account_id": user.account_id})
    r = await _post(server, "api-keys", {"action": "delete", "id": key_id}, cookies=cookie)
    assert r.status_code == 200, r.text
    await _expect(sub, {"account_id": user.account_id})


async def test_password_reset_is_announced(server: Server, connect: Connect) -> None:
    user = sign_up(server)
    db = Database(server.db_url)
    try:
        created = await accounts.create_password_reset(db, user.email)
    finally:
        await db.close()
    assert created is not None
    sub = await _listen(server, connect)
    r = await _post(
        server,
        "auth/redeem-password-reset",
        {"passwordResetId": created[1], "password": "a new password"},
    )
    assert r.status_code == 200, r.text
    await _expect(sub, {"account_id": user.account_id})


async def test_project_delete_is_announced(server: Server, connect: Connect, user: User) -> None:
    cookie = {"remember_me": user.cookie}
    pid = (await _post(server, "projects/create", {"title": "p"}, cookies=cookie)).json()[
        "project_id"
    ]
    sub = await _listen(server, connect)
    r = await _post(server, "projects/delete", {"project_id": pid}, cookies=cookie)
    assert r.status_code == 200, r.text
    await _expect(sub, {"project_id": pid})
