"""The hub-next role: the landing page, /api/v2 and its OpenAPI description and docs page."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import BaseRoute, Route

from ..cookies import REMEMBER_ME, cookie_name
from ..db import accounts
from ..roles import Role, RoleContext
from . import api_v2, auth_api, spec
from .hub_client import HubClient

log = logging.getLogger("cohub.next")

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


async def _ensure_first_admin(ctx: RoleContext) -> None:
    email = ctx.settings.admin_email.strip()
    if not email:
        return
    try:
        await accounts.ensure_admin(ctx.db, email, ctx.settings.admin_password)
    except ValueError as e:
        log.error("cannot create the first admin %s: %s", email, e)


def role(ctx: RoleContext) -> Role:
    prefix = ctx.settings.prefix
    session_cookie = cookie_name(prefix, REMEMBER_ME)
    hub = HubClient(ctx.settings.router_url, prefix, ctx.hub_password)
    operations = auth_api.operations(ctx.db, ctx.settings, session_cookie, hub.revoked)
    operations += api_v2.operations(hub)
    document = spec.openapi(operations, prefix, "cohub API v2", session_cookie)

    async def current_account(request: Request) -> dict[str, Any] | None:
        token = request.cookies.get(session_cookie)
        account_id = await accounts.account_for_session(ctx.db, token) if token else None
        return await accounts.get_account(ctx.db, account_id) if account_id else None

    async def landing(request: Request) -> HTMLResponse:
        page = _templates.get_template("landing.html").render(
            site_name="cohub", prefix=prefix, account=await current_account(request)
        )
        return HTMLResponse(page)

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    async def docs(request: Request) -> HTMLResponse:
        groups: dict[str, list[tuple[str, Any]]] = {}
        for path, item in document["paths"].items():
            groups.setdefault(item["post"]["tags"][0], []).append((path, item["post"]))
        page = _templates.get_template("api_docs.html").render(
            site_name="cohub",
            prefix=prefix,
            account=None,
            spec=document,
            groups=list(groups.items()),
            openapi_url=prefix + "api/v2/openapi.json",
        )
        return HTMLResponse(page)

    routes: list[BaseRoute] = [
        Route(prefix, landing, methods=["GET", "HEAD"]),
        Route(prefix + "api/v2/openapi.json", openapi_json, methods=["GET", "HEAD"]),
        Route(prefix + "api/v2/docs", docs, methods=["GET", "HEAD"]),
    ]
    routes += spec.routes(operations, ctx.db, prefix, session_cookie)

    async def start() -> None:
        await _ensure_first_admin(ctx)

    async def stop() -> None:
        await hub.close()

    return Role("hub-next", routes=routes, start=start, stop=stop)
