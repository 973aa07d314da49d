"""The hub-conat-api role: answers the hub API over Conat as the hub identity."""

from __future__ import annotations

import asyncio
import logging

from ..conat.client import Client
from ..cookies import HUB_PASSWORD, cookie_name
from ..roles import Role, RoleContext
from . import api

log = logging.getLogger("cohub.hub")


def role(ctx: RoleContext) -> Role:
    client = Client(
        ctx.settings.router_url + ctx.settings.prefix.rstrip("/"),
        cookies={cookie_name(ctx.settings.prefix, HUB_PASSWORD): ctx.hub_password},
    )
    tasks: list[asyncio.Task[None]] = []

    async def run() -> None:
        await client.connect(timeout=60)
        tasks.append(await api.serve(client, ctx.db))
        log.info("hub API serving on %s", api.SUBJECT)

    async def start() -> None:
        tasks.append(asyncio.ensure_future(run()))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()

    return Role("hub-conat-api", start=start, stop=stop)
