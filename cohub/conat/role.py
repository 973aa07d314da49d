"""The hub-conat-router role: the socket.io router at ``<base-path>conat``."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY
from starlette.types import ASGIApp, Receive, Scope, Send

from ..db import projects
from ..roles import Role, RoleContext
from .auth import CookieAuthenticator, load_or_create_secret
from .metrics import RouterCollector
from .permissions import Permissions
from .router import Router


def system_password_file(hub_password_file: Path) -> Path:
    """The ``sys`` cookie's secret (identity ``{hub_id: "system"}``, for cluster links and
    system services) lives beside the hub password, created on first use like it."""
    return hub_password_file.with_name(hub_password_file.name + "-system")


def build_router(ctx: RoleContext) -> Router:
    async def is_collaborator(project_id: str, account_id: str) -> bool:
        return await projects.is_collaborator(ctx.db, project_id, account_id)

    authenticate = CookieAuthenticator(
        ctx.db,
        hub_password=ctx.hub_password,
        base_path=ctx.settings.prefix,
        system_password=load_or_create_secret(system_password_file(ctx.settings.password_file)),
    )
    return Router(authenticate, Permissions(is_collaborator))


def role(ctx: RoleContext) -> Role:
    router = build_router(ctx)
    path = ctx.settings.conat_path
    sio_app = router.asgi_app()
    collector = RouterCollector(
        router.counters,
        lambda: router.connection_count,
        router.subscription_count,
        router.server_id,
    )

    def wrap(inner: ASGIApp) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            p = scope.get("path", "")
            if scope["type"] in ("http", "websocket") and (p == path or p.startswith(path + "/")):
                await sio_app(scope, receive, send)
            else:
                await inner(scope, receive, send)

        return app

    async def start() -> None:
        REGISTRY.register(collector)

    async def stop() -> None:
        REGISTRY.unregister(collector)
        await router.close()

    return Role("hub-conat-router", wrap=wrap, start=start, stop=stop)
