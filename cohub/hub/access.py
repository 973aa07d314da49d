"""Identity checks for hub API functions: who may read or change a project.

Levels: "read" (owner, collaborator, viewer), "write" (owner, collaborator), "owner".
Admins pass every check. A project caller (a project key or the project itself) may act only
on its own project, at the "write" level.
"""

from __future__ import annotations

from typing import Literal

from ..db import accounts as db_accounts
from ..db import projects as db_projects
from .context import ApiError, Context

Level = Literal["read", "write", "owner"]

_ALLOWED: dict[Level, tuple[str, ...]] = {
    "read": ("owner", "collaborator", "viewer"),
    "write": ("owner", "collaborator"),
    "owner": ("owner",),
}
_WORDS: dict[Level, str] = {
    "read": "on",
    "write": "an owner or collaborator of",
    "owner": "the owner of",
}


async def is_admin(ctx: Context) -> bool:
    return ctx.caller.kind == "account" and await db_accounts.is_admin(ctx.db, ctx.caller.id)


async def require_admin(ctx: Context) -> str:
    account_id = ctx.caller.require_account()
    if not await is_admin(ctx):
        raise ApiError("only an admin can do this", 403)
    return account_id


async def require_project(ctx: Context, project_id: str, level: Level) -> str | None:
    """Check the caller's access to a project; return its group (None for admins and the
    project itself). Deleted projects are refused except to admins."""
    project = await db_projects.get_project(ctx.db, project_id)
    if ctx.caller.kind == "project":
        if ctx.caller.id != project_id:
            raise ApiError(f"a project may only act on itself, not on project {project_id}", 403)
        if project is None or project["deleted"]:
            raise ApiError(f"project {project_id} does not exist or is deleted", 404)
        if level == "owner":
            raise ApiError("only the project's owner (an account) can do this", 403)
        return None
    group = project["users"].get(ctx.caller.id) if project else None
    if group in _ALLOWED[level] and project and not project["deleted"]:
        return str(group)
    if await is_admin(ctx):
        if project is None:
            raise ApiError(f"no project with id {project_id}", 404)
        return None
    if group is None or project is None or project["deleted"]:
        # The same answer for "no such project" and "not yours": ids are not probed.
        raise ApiError(
            f"you are not a collaborator on project {project_id} (or it is deleted)", 403
        )
    raise ApiError(
        f"you must be {_WORDS[level]} project {project_id} to do this (you are a {group})", 403
    )
