"""The hub-stats role: a statistics snapshot at start and every interval; ``GET /stats``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..db import stats
from ..roles import Role, RoleContext
from .base import Job, JobRunner

NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Expires": "0"}


def role(ctx: RoleContext) -> Role:
    async def snapshot() -> None:
        await stats.insert_stats(ctx.db, await stats.compute_stats(ctx.db))

    runner = JobRunner(Job("stats", ctx.settings.stats_interval_s, snapshot))

    async def newest(request: Request) -> JSONResponse:
        return JSONResponse(await stats.newest_stats(ctx.db), headers=NO_CACHE)

    return Role(
        "hub-stats",
        routes=[Route(ctx.settings.prefix + "stats", newest, methods=["GET", "HEAD"])],
        start=runner.start,
        stop=runner.stop,
    )
