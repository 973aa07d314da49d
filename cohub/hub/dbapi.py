"""The ``db.*`` hub API functions."""

from __future__ import annotations

from typing import Any

from ..db import accounts as db_accounts
from ..db import projects as db_projects
from .access import require_project
from .context import ApiFunction, Context, optional_string, optional_uuid, options


async def touch(ctx: Context, *args: Any) -> None:
    """Mark the caller active now; with ``project_id``, also mark that project used (the
    caller must be on it; viewers only mark themselves)."""
    opts = options(args)
    project_id = optional_uuid(opts, "project_id")
    optional_string(opts, "path", max_length=4096)
    optional_string(opts, "action", max_length=100)
    if project_id is not None:
        group = await require_project(ctx, project_id, "read")
        if group != "viewer":
            await db_projects.touch(ctx.db, project_id)
    if ctx.caller.kind == "account":
        await db_accounts.touch_account(ctx.db, ctx.caller.id)


FUNCTIONS: dict[str, ApiFunction] = {"touch": touch}
