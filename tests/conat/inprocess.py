"""A real router in the test's own process: the same Router, cookie authentication against
the test server's database, and uvicorn with the production websocket protocol, but with
limits and timings a test can set (a subprocess would need the production ones)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from cohub._websocket_protocol import CoalescingWebSocketProtocol
from cohub.conat.auth import CookieAuthenticator
from cohub.conat.permissions import Permissions
from cohub.conat.router import Router
from cohub.db import projects
from cohub.db.engine import Database
from tests.conftest import free_port


def make_router(
    db: Database,
    *,
    hub_password: str,
    system_password: str | None = None,
    permission_ttl: float | None = None,
    **options: Any,
) -> Router:
    """A router like the hub-conat-router role builds, with ``options`` for Router."""

    async def is_collaborator(project_id: str, account_id: str) -> bool:
        return await projects.is_collaborator(db, project_id, account_id)

    authenticate = CookieAuthenticator(
        db, hub_password=hub_password, system_password=system_password
    )
    permissions = (
        Permissions(is_collaborator)
        if permission_ttl is None
        else Permissions(is_collaborator, ttl=permission_ttl)
    )
    return Router(authenticate, permissions, **options)


@contextlib.asynccontextmanager
async def serve(router: Router) -> AsyncIterator[str]:
    """Serve ``router`` on a free port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        router.asgi_app(),
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="off",
        ws=CoalescingWebSocketProtocol,
        ws_per_message_deflate=False,
        ws_max_size=16 * 1024 * 1024,
        ws_ping_interval=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # raises why it did not start
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        await router.close()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
