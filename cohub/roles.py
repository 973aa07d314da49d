"""What a role contributes to a process, and how selected roles become one ASGI app.

Roles never import each other: each one is a factory ``(RoleContext) -> Role`` that cli.py
looks up by name. A role adds HTTP routes, optionally a whole ASGI app at a path (the
socket.io router), and background work started after the server listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from .config import Settings
from .db.engine import Database

log = logging.getLogger("cohub.roles")

Wrap = Callable[[ASGIApp], ASGIApp]


@dataclass
class RoleContext:
    """What every role may use: the settings, the database and the hub's Conat secret."""

    settings: Settings
    db: Database
    hub_password: str


@dataclass
class Role:
    name: str
    routes: list[BaseRoute] = field(default_factory=list)
    wrap: Wrap | None = None  # e.g. the socket.io app, which passes other paths through
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None


def _probe_routes(ctx: RoleContext) -> list[BaseRoute]:
    async def alive(request: Request) -> PlainTextResponse:
        if await ctx.db.ping():
            return PlainTextResponse("alive")
        return PlainTextResponse("database is not answering", status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    prefix = ctx.settings.prefix
    return [
        Route(prefix + "alive", alive, methods=["GET", "HEAD"]),
        Route(prefix + "metrics", metrics, methods=["GET"]),
    ]


def compose(ctx: RoleContext, roles: list[Role]) -> ASGIApp:
    """One ASGI app serving every selected role, with their start/stop in its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for role in roles:
            if role.start is not None:
                log.info("starting role %s", role.name)
                await role.start()
        try:
            yield
        finally:
            for role in reversed(roles):
                if role.stop is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(role.stop(), 10)
            await ctx.db.close()

    routes: list[BaseRoute] = _probe_routes(ctx)
    for role in roles:
        routes.extend(role.routes)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"not found: {request.url.path}"}, status_code=404)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)

    async def http_error(request: Request, exc: Exception) -> Response:
        """Every other Starlette HTTP error (405, ...) as ``{error}``, keeping its headers."""
        assert isinstance(exc, HTTPException)
        if exc.status_code in (204, 304):  # no body allowed
            return Response(status_code=exc.status_code, headers=exc.headers)
        path = request.url.path
        if exc.status_code == 405:
            message = f"method {request.method} is not allowed on {path}"
            if path.startswith(ctx.settings.prefix + "api/"):
                message += "; use POST with a JSON body (Content-Type: application/json)"
            elif exc.headers and exc.headers.get("Allow"):
                message += f"; allowed: {exc.headers['Allow']}"
        else:
            message = str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    handlers: dict[Any, Any] = {404: not_found, 500: server_error, HTTPException: http_error}
    app: ASGIApp = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    for role in roles:
        if role.wrap is not None:
            app = role.wrap(app)
    return app
