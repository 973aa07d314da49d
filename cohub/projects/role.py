"""The local project runner as a part of ``cohub serve``: cli.py adds it next to
hub-conat-api unless ``--project-runner none``."""

from __future__ import annotations

import asyncio
import logging

from ..conat.client import Client
from ..conat.errors import ConatError
from ..cookies import HUB_PASSWORD, cookie_name
from ..roles import Role, RoleContext
from .runner import Runner

log = logging.getLogger("cohub.projects")

NAME = "project-runner"


def role(ctx: RoleContext) -> Role:
    settings = ctx.settings
    client = Client(
        settings.router_url + settings.prefix.rstrip("/"),
        cookies={cookie_name(settings.prefix, HUB_PASSWORD): ctx.hub_password},
    )
    runner = Runner(
        client,
        ctx.db,
        projects_dir=settings.projects_dir,
        run_dir=settings.data_dir / "run",
        conat_url=settings.router_url,
        base_path=settings.prefix,
        idle_timeout=settings.project_idle_timeout_s,
        log_level=settings.log_level,
    )
    tasks: list[asyncio.Task[None]] = []

    async def run() -> None:
        # the router may be this process's own, listening only once start-up is done
        while True:
            try:
                await client.connect(timeout=60)
                break
            except ConatError as e:
                log.info("project runner: router not reachable yet (%s)", e)
                await asyncio.sleep(1)
        await runner.start()

    async def start() -> None:
        await runner.recover()
        tasks.append(asyncio.ensure_future(run()))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.close()
        await client.close()

    return Role(NAME, start=start, stop=stop)
