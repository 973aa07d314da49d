"""The hub-conat-api role: answers the hub API over Conat as the hub identity."""

from __future__ import annotations

import asyncio
import logging

from ..conat.client import Client
from ..cookies import HUB_PASSWORD, cookie_name
from ..db import accounts
from ..roles import Role, RoleContext
from . import api

log = logging.getLogger("cohub.hub")


async def ensure_first_admin(ctx: RoleContext) -> None:
    """Create (or promote) the admin named by --admin-email / COHUB_ADMIN_EMAIL."""
    email = ctx.settings.admin_email.strip()
    if not email:
        return
    try:
        account_id = await accounts.ensure_admin(ctx.db, email, ctx.settings.admin_password)
    except ValueError as e:
        log.error("cannot create the first admin %s: %s", email, e)
        return
    log.info("admin account %s (%s) is ready", email, account_id)


def role(ctx: RoleContext) -> Role:
    client = Client(
        ctx.settings.router_url + ctx.settings.prefix.rstrip("/"),
        cookies={cookie_name(ctx.settings.prefix, HUB_PASSWORD): ctx.hub_password},
    )
    tasks: list[asyncio.Task[None]] = []

    async def run() -> None:
        await client.connect(timeout=60)
        tasks.append(await api.serve(client, ctx.db, ctx.settings))
        log.info("hub API serving on %s", api.SUBJECT)

    async def start() -> None:
        await ensure_first_admin(ctx)
        tasks.append(asyncio.ensure_future(run()))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()

    return Role("hub-conat-api", start=start, stop=stop)
