"""The hub-conat-api role: answers the hub API over Conat as the hub identity."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import timedelta

import sqlalchemy as sa

from ..conat.client import Client
from ..cookies import HUB_PASSWORD, cookie_name
from ..db import accounts, stats
from ..roles import Role, RoleContext
from . import api

log = logging.getLogger("cohub.hub")

# The hub_servers row: refreshed every REFRESH_S and valid for EXPIRE; a hub that dies drops
# out of /stats within EXPIRE. Its clients are the accounts and projects that called this hub
# API within EXPIRE.
REFRESH_S = 30.0
EXPIRE = timedelta(seconds=90)


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
    callers = api.RecentCallers()
    host, port = socket.gethostname(), ctx.settings.port

    async def register() -> None:
        clients = callers.count(EXPIRE.total_seconds())
        await stats.register_hub_server(ctx.db, host, port, clients, EXPIRE)

    async def keep_registered() -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await register()
            except (sa.exc.SQLAlchemyError, OSError) as e:
                log.warning("cannot refresh this hub in hub_servers: %s", e)

    async def run() -> None:
        await client.connect(timeout=60)
        tasks.append(await api.serve(client, ctx.db, ctx.settings, callers))
        log.info("hub API serving on %s", api.SUBJECT)

    async def start() -> None:
        await ensure_first_admin(ctx)
        await register()  # before hub-stats' first snapshot when both run in one process
        tasks.append(asyncio.ensure_future(keep_registered()))
        tasks.append(asyncio.ensure_future(run()))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        try:
            await stats.unregister_hub_server(ctx.db, host, port)
        except (sa.exc.SQLAlchemyError, OSError) as e:
            log.warning("cannot remove this hub from hub_servers: %s", e)

    return Role("hub-conat-api", start=start, stop=stop)
