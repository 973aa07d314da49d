"""Sign-in throttling under concurrent requests, and the registration-token gate, on a server
of their own (the throttle counts per IP, and a registration token gates every sign-up)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cohub.db import settings as site_settings
from cohub.db.engine import Database
from tests.conftest import Server, sign_up, start_server, stop_server
from tests.next.conftest import api, drop_schema, fresh_database, new_email


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("gates")
    db_url, schema = fresh_database(data_dir)
    srv = start_server(data_dir, db_url)
    try:
        yield srv
    finally:
        stop_server(srv)
        drop_schema(schema)


async def _sign_in(client: httpx.AsyncClient, server: Server, email: str, password: str):  # type: ignore[no-untyped-def]
    return await client.post(
        server.url + "/api/v2/auth/sign-in", json={"email": email, "password": password}
    )


async def test_concurrent_wrong_passwords_are_throttled(own_server: Server) -> None:
    user = sign_up(own_server)
    async with httpx.AsyncClient(timeout=60) as client:
        # correct sign-ins are not failures: more than five in a minute are fine
        for _ in range(7):
            r = await _sign_in(client, own_server, user.email, user.password)
            assert r.status_code == 200, r.text
        # 20 wrong passwords at once: at most five get to the password check
        replies = await asyncio.gather(
            *(_sign_in(client, own_server, user.email, f"wrong {i}") for i in range(20))
        )
        codes = sorted(r.status_code for r in replies)
        assert set(codes) <= {401, 429}, [r.text for r in replies]
        assert codes.count(401) == 5 and codes.count(429) == 15, codes
        for r in replies:
            if r.status_code == 429:
                assert "too many sign-in attempts" in r.json()["error"]
        # within the minute, the right password is refused too
        r = await _sign_in(client, own_server, user.email, user.password)
        assert r.status_code == 429 and "too many" in r.json()["error"], r.text
        assert "set-cookie" not in r.headers
        # another email from the same IP is not locked out (at most 5 IP failures counted)
        other = sign_up(own_server)
        r = await _sign_in(client, own_server, other.email, other.password)
        assert r.status_code == 200, r.text


def _sign_up(server: Server, token: str | None = None) -> httpx.Response:
    body: dict[str, object] = {"email": new_email(), "password": "password123", "terms": True}
    if token is not None:
        body["registrationToken"] = token
    return api(server.url + "/", "auth/sign-up", body)


async def test_used_up_and_expired_tokens_keep_the_gate_shut(own_server: Server) -> None:
    db = Database(own_server.db_url)
    once, old = f"once-{uuid.uuid4().hex[:6]}", f"old-{uuid.uuid4().hex[:6]}"
    try:
        await site_settings.create_registration_token(db, once, limit=1)
        await site_settings.create_registration_token(
            db, old, expire=datetime.now(UTC) - timedelta(minutes=1)
        )
        r = _sign_up(own_server)
        assert r.status_code == 403 and "requires a registration token" in r.json()["error"]
        assert _sign_up(own_server, once).status_code == 200
        # every token is now used up or expired: sign-up still needs one, and says why not
        r = _sign_up(own_server)
        assert r.status_code == 403 and "requires a registration token" in r.json()["error"]
        r = _sign_up(own_server, once)
        assert r.status_code == 403 and "used up" in r.json()["error"], r.text
        r = _sign_up(own_server, old)
        assert r.status_code == 403 and "expired" in r.json()["error"], r.text
        r = _sign_up(own_server, "no-such-token")
        assert r.status_code == 403 and "no such token" in r.json()["error"], r.text
        for token in (once, old):
            await site_settings.disable_registration_token(db, token)
        assert _sign_up(own_server).status_code == 200  # only disabled tokens: open again
    finally:
        for token in (once, old):
            await site_settings.disable_registration_token(db, token)
        await db.close()
