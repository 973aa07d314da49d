"""The hub-conat-persist role: N persist server processes and the load balancer."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import socket

from ..conat.client import Client
from ..conat.errors import ConatError
from ..config import Settings
from ..cookies import HUB_PASSWORD, cookie_name
from ..roles import Role, RoleContext
from . import load_balancer
from .process import check_mode
from .supervisor import Supervisor, child_env

log = logging.getLogger("cohub.persist")


def server_ids(settings: Settings) -> list[str]:
    """``<prefix>-0`` .. ``<prefix>-<N-1>``; the prefix defaults to the host (pod) name."""
    if settings.persist_count < 1:
        raise SystemExit("--persist-count must be at least 1")
    prefix = settings.persist_server_id_prefix or socket.gethostname() or "persist"
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", prefix)
    return [f"{prefix}-{i}" for i in range(settings.persist_count)]


def settings_env(settings: Settings) -> dict[str, str]:
    """``COHUB_*`` variables that give a child process exactly these settings."""
    env: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if value is None:
            continue
        env["COHUB_" + f.name.upper()] = str(value)
    # the children must find the same secret and the same files, wherever they start
    env["COHUB_DATA_DIR"] = str(settings.data_dir.resolve())
    env["COHUB_CONAT_PASSWORD_FILE"] = str(settings.password_file.resolve())
    env["COHUB_PERSIST_SYNC_DIR"] = str(settings.sync_dir.resolve())
    env["COHUB_CONAT_URL"] = settings.router_url
    return env


def role(ctx: RoleContext) -> Role:
    settings = ctx.settings
    check_mode(settings.persist_mode)
    ids = server_ids(settings)
    supervisor = Supervisor(
        ids, child_env(settings_env(settings)), settings.data_dir.resolve() / "run"
    )
    client = Client(
        settings.router_url + settings.prefix.rstrip("/"),
        cookies={cookie_name(settings.prefix, HUB_PASSWORD): ctx.hub_password},
    )
    tasks: list[asyncio.Task[None]] = []

    async def balance() -> None:
        while True:
            try:
                await client.connect(timeout=60)
                break
            except ConatError as e:
                log.info("persist load balancer: router not reachable yet (%s)", e)
                await asyncio.sleep(1)
        tasks.append(await load_balancer.serve(client, ids))

    async def start() -> None:
        settings.sync_dir.mkdir(parents=True, exist_ok=True)
        supervisor.start()
        tasks.append(asyncio.ensure_future(balance()))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        await supervisor.stop()

    return Role("hub-conat-persist", start=start, stop=stop)
