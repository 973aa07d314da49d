"""The hub-next role: the landing page and /api/v2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from ..cookies import REMEMBER_ME, cookie_name
from ..db import accounts
from ..roles import Role, RoleContext
from . import auth_api

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def role(ctx: RoleContext) -> Role:
    prefix = ctx.settings.prefix
    session_cookie = cookie_name(prefix, REMEMBER_ME)

    async def current_account(request: Request) -> dict[str, Any] | None:
        token = request.cookies.get(session_cookie)
        account_id = await accounts.account_for_session(ctx.db, token) if token else None
        return await accounts.get_account(ctx.db, account_id) if account_id else None

    async def landing(request: Request) -> HTMLResponse:
        page = _templates.get_template("landing.html").render(
            site_name="cohub", prefix=prefix, account=await current_account(request)
        )
        return HTMLResponse(page)

    routes: list[BaseRoute] = [Route(prefix, landing, methods=["GET", "HEAD"])]
    routes += auth_api.routes(ctx.db, prefix)
    return Role("hub-next", routes=routes)
