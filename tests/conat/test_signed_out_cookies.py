"""On /conat, an expired, unknown, malformed or banned-owner remember_me is "signed out": one
``info`` with a 401 error, then the socket is closed (hubs.md, Authentication)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import socketio
import sqlalchemy as sa

from cohub.db.engine import sync_url
from tests.conftest import Server, sign_up


async def _info_then_disconnect(server: Server, cookie: str) -> dict:
    sio = socketio.AsyncClient(reconnection=False)
    infos: list[dict] = []
    gone = asyncio.Event()
    sio.on("info", lambda info: infos.append(info))
    sio.on("disconnect", lambda *a: gone.set())
    await sio.connect(
        server.url,
        transports=["websocket"],
        socketio_path="conat",
        headers={"Cookie": f"remember_me={cookie}"},
    )
    try:
        await asyncio.wait_for(gone.wait(), 10)
    finally:
        await sio.disconnect()
    assert len(infos) == 1
    return infos[0]["user"]


def _sql(server: Server, statement: str, **params: object) -> None:
    engine = sa.create_engine(sync_url(server.db_url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()


async def test_expired_session_is_signed_out(server: Server) -> None:
    user = sign_up(server)
    _sql(
        server,
        "UPDATE remember_me SET expire = :t WHERE hash = :h",
        t=datetime.now(UTC) - timedelta(minutes=1),
        h=hashlib.sha256(user.cookie.encode()).hexdigest(),
    )
    who = await _info_then_disconnect(server, user.cookie)
    assert who["code"] == 401 and "account_id" not in who


async def test_banned_owner_is_signed_out(server: Server) -> None:
    user = sign_up(server)
    _sql(server, "UPDATE accounts SET banned = :t WHERE account_id = :a", t=True, a=user.account_id)
    who = await _info_then_disconnect(server, user.cookie)
    assert who["code"] == 401 and "account_id" not in who


@pytest.mark.parametrize(
    "cookie",
    ["", "x" * 5000, "%00%ff", "' OR 1=1 --", "n%C3%A4chts", "a" * 64],
    ids=["empty", "huge", "bytes", "sql", "unicode", "unknown"],
)
async def test_malformed_or_unknown_session_is_signed_out(server: Server, cookie: str) -> None:
    who = await _info_then_disconnect(server, cookie)
    assert who["code"] == 401 and "error" in who
