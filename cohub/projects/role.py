"""The local project runner as a part of ``cohub serve``: cli.py adds it next to
hub-conat-api unless ``--project-runner none``, and calls ``protect_files`` first."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlalchemy.engine import make_url

from ..conat.client import Client
from ..conat.errors import ConatError
from ..config import Settings
from ..cookies import HUB_PASSWORD, cookie_name
from ..roles import Role, RoleContext
from . import isolation
from .isolation import CannotIsolate
from .runner import Runner

__all__ = ["NAME", "CannotIsolate", "protect_files", "role"]

log = logging.getLogger("cohub.projects")

NAME = "project-runner"


def protect_files(settings: Settings) -> None:
    """The hub's files for the hub only (cli.py also sets umask 0o077 before this): project
    users must not read the database, the hub password or the streams (isolation.py)."""
    others: list[Path] = [settings.password_file, settings.sync_dir]
    url = make_url(settings.database_url)
    if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
        db = Path(url.database)
        others += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    isolation.protect_data_dir(settings.data_dir, settings.projects_dir, *others)


def _isolate(settings: Settings) -> bool:
    """Whether projects get users of their own; CannotIsolate if asked for and impossible."""
    mode = settings.project_isolation
    why = None if mode == "none" else isolation.problem(settings.projects_dir)
    if mode != "none" and why is None:
        return True
    if mode == "uid":
        raise CannotIsolate(
            f"--project-isolation uid: {why}; fix that, or use --project-isolation none"
        )
    log.warning(
        "projects are NOT isolated from the hub: they run as its own OS user and can read "
        "what it can (the database, the hub password, other projects): %s",
        why or "--project-isolation none",
    )
    return False


def role(ctx: RoleContext) -> Role:
    """The runner role; CannotIsolate when ``--project-isolation uid`` cannot work here."""
    settings = ctx.settings
    isolate = _isolate(settings)
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
        isolate=isolate,
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
