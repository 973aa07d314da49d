"""The ``projects.*`` hub API functions. Every call checks the caller's role in the project."""

from __future__ import annotations

from typing import Any

from ..conat.protocol import PERMISSIONS_CHANGED
from ..db import projects as db_projects
from ..db.errors import DBError
from .context import ApiError, ApiFunction, Context, options, string_option
from .validate import uuid_option


async def create_project(ctx: Context, *args: Any) -> str:
    owner = ctx.caller.require_account()
    opts = options(list(args))
    title = string_option(opts, "title", max_length=1024, default="Untitled")
    description = string_option(opts, "description", max_length=10_000, default="")
    return await db_projects.create_project(
        ctx.db, owner_id=owner, title=title, description=description
    )


async def list_projects(ctx: Context, *args: Any) -> list[dict[str, Any]]:
    account_id = ctx.caller.require_account()
    return await db_projects.list_projects(ctx.db, account_id)


async def _require_collaborator(ctx: Context, project_id: str) -> str:
    account_id = ctx.caller.require_account()
    group = await db_projects.get_group(ctx.db, project_id, account_id)
    if group not in ("owner", "collaborator"):
        raise ApiError(f"you must be an owner or collaborator of project {project_id} to do this")
    return account_id


async def add_collaborator(ctx: Context, *args: Any) -> None:
    opts = options(list(args))
    project_id = uuid_option(opts, "project_id")
    account_id = uuid_option(opts, "account_id")
    await _require_collaborator(ctx, project_id)
    try:
        await db_projects.add_collaborator(ctx.db, project_id, account_id)
    except DBError as e:
        raise ApiError(str(e)) from e
    await ctx.notify(PERMISSIONS_CHANGED, {"project_id": project_id})


async def remove_collaborator(ctx: Context, *args: Any) -> None:
    opts = options(list(args))
    project_id = uuid_option(opts, "project_id")
    account_id = uuid_option(opts, "account_id")
    caller = ctx.caller.require_account()
    if caller != account_id:  # a user may always remove themself
        await _require_collaborator(ctx, project_id)
    elif await db_projects.get_group(ctx.db, project_id, caller) is None:
        raise ApiError(f"you are not a collaborator of project {project_id}")
    try:
        await db_projects.remove_collaborator(ctx.db, project_id, account_id)
    except DBError as e:
        raise ApiError(str(e)) from e
    await ctx.notify(PERMISSIONS_CHANGED, {"project_id": project_id})


FUNCTIONS: dict[str, ApiFunction] = {
    "createProject": create_project,
    "list": list_projects,
    "addCollaborator": add_collaborator,
    "removeCollaborator": remove_collaborator,
}
