"""The ``projects.*`` hub API functions about projects and their people. Every call checks
the caller's role in the project (access.py). Lifecycle and file functions: lifecycle.py."""

from __future__ import annotations

import logging
from typing import Any

from ..conat.protocol import PERMISSIONS_CHANGED
from ..db import accounts as db_accounts
from ..db import projects as db_projects
from ..db.errors import DBError, NotFound, PermissionDenied
from ..mail import MailError, send_email, smtp_settings
from . import lifecycle
from .access import is_admin, require_project
from .context import (
    ApiError,
    ApiFunction,
    Context,
    int_option,
    optional_uuid,
    options,
    string_option,
    uuid_option,
)

log = logging.getLogger("cohub.hub.projects")


def _db_error(e: DBError) -> ApiError:
    if isinstance(e, NotFound):
        return ApiError(str(e), 404)
    if isinstance(e, PermissionDenied):
        return ApiError(str(e), 403)
    return ApiError(str(e))


async def create_project(ctx: Context, *args: Any) -> str:
    owner = ctx.caller.require_account()
    opts = options(args)
    title = string_option(opts, "title", max_length=1024, default="Untitled")
    description = string_option(opts, "description", max_length=10_000, default="")
    return await db_projects.create_project(
        ctx.db, owner_id=owner, title=title, description=description
    )


async def list_projects(ctx: Context, *args: Any) -> list[dict[str, Any]]:
    """The caller's projects (not deleted), most recently edited first. With a project
    key: just that project. Admins may name another ``account_id``."""
    opts = options(args)
    limit = int_option(opts, "limit", default=1000, minimum=1, maximum=10_000) or 1000
    if ctx.caller.kind == "project":
        project = await db_projects.get_project(ctx.db, ctx.caller.id)
        if project is None or project["deleted"]:
            return []
        return [
            {
                "project_id": project["project_id"],
                "title": project["title"],
                "description": project["description"],
                "group": None,
            }
        ]
    account_id = ctx.caller.id
    other = optional_uuid(opts, "account_id")
    if other is not None and other != account_id:
        if not await is_admin(ctx):
            raise ApiError("only admins may list the projects of another account", 403)
        account_id = other
    return (await db_projects.list_projects(ctx.db, account_id))[:limit]


async def get_project(ctx: Context, *args: Any) -> dict[str, Any]:
    """One project the caller may read: id, title, description, state, users, ..."""
    opts = options(args)
    project_id = uuid_option(opts, "project_id")
    await require_project(ctx, project_id, "read")
    project = await db_projects.get_project(ctx.db, project_id)
    if project is None:
        raise ApiError(f"no project with id {project_id}", 404)
    return project


async def list_collaborators(ctx: Context, *args: Any) -> list[dict[str, Any]]:
    opts = options(args)
    project_id = uuid_option(opts, "project_id")
    await require_project(ctx, project_id, "read")
    return await db_projects.list_collaborators(ctx.db, project_id)


async def add_collaborator(ctx: Context, *args: Any) -> dict[str, Any]:
    """Add an account to a project as a collaborator (owners and collaborators may)."""
    opts = options(args)
    project_id = uuid_option(opts, "project_id")
    account_id = uuid_option(opts, "account_id")
    ctx.caller.require_account()
    await require_project(ctx, project_id, "write")
    try:
        await db_projects.add_collaborator(ctx.db, project_id, account_id)
    except DBError as e:
        raise _db_error(e) from e
    await ctx.notify(PERMISSIONS_CHANGED, {"project_id": project_id})
    return {"project_id": project_id}


async def remove_collaborator(ctx: Context, *args: Any) -> None:
    """Take an account off a project. Owners cannot be removed; anyone may remove themself."""
    opts = options(args)
    project_id = uuid_option(opts, "project_id")
    account_id = uuid_option(opts, "account_id")
    caller = ctx.caller.require_account()
    if caller != account_id:
        await require_project(ctx, project_id, "write")
    elif await db_projects.get_group(ctx.db, project_id, caller) is None:
        raise ApiError(f"you are not a collaborator on project {project_id}", 403)
    if await db_projects.get_group(ctx.db, project_id, account_id) is None:
        raise ApiError(f"account {account_id} is not on project {project_id}", 404)
    try:
        await db_projects.remove_collaborator(ctx.db, project_id, account_id)
    except DBError as e:
        raise _db_error(e) from e
    await ctx.notify(PERMISSIONS_CHANGED, {"project_id": project_id})


async def invite_collaborator(ctx: Context, *args: Any) -> dict[str, Any]:
    """Add an existing account to a project and tell them by email when email is configured.
    The reply says whether the email went out."""
    opts = options(args)
    project_id = uuid_option(opts, "project_id")
    account_id = uuid_option(opts, "account_id")
    inviter = ctx.caller.require_account()
    await require_project(ctx, project_id, "write")
    subject = string_option(opts, "subject", max_length=500, default="")
    message = string_option(opts, "email", max_length=20_000, default="")
    try:
        await db_projects.add_collaborator(ctx.db, project_id, account_id)
    except DBError as e:
        raise _db_error(e) from e
    await ctx.notify(PERMISSIONS_CHANGED, {"project_id": project_id})
    target = await db_accounts.get_account(ctx.db, account_id)
    project = await db_projects.get_project(ctx.db, project_id)
    smtp = await smtp_settings(ctx.db, ctx.settings)
    if smtp is None:
        return {"added": True, "email": "not sent: email is not configured on this server"}
    if not target or not target["email_address"]:
        return {"added": True, "email": "not sent: the account has no email address"}
    names = await db_accounts.get_names(ctx.db, [inviter])
    who = " ".join(names.get(inviter, {}).values()).strip() or "A collaborator"
    title = project["title"] if project else project_id
    site = ctx.settings.site_url if ctx.settings else ""
    body = (message + "\n\n" if message else "") + (
        f"{who} added you to the project '{title}'.\nOpen it: {site}projects/{project_id}\n"
    )
    try:
        await send_email(smtp, target["email_address"], subject or f"Invitation to {title}", body)
    except MailError as e:
        return {"added": True, "email": f"not sent: {e}"}
    return {"added": True, "email": "sent"}


async def change_user_type(ctx: Context, *args: Any) -> None:
    """Change a collaborator's group; only the owner (or an admin) may. Making someone the
    owner turns the current owner into a collaborator."""
    opts = options(args)
    project_id = uuid_option(opts, "project_id")
    target = uuid_option(opts, "target_account_id")
    new_group = opts.get("new_group")
    if new_group not in ("owner", "collaborator", "viewer"):
        raise ApiError("'new_group' must be one of owner, collaborator, viewer")
    ctx.caller.require_account()
    await require_project(ctx, project_id, "owner")
    try:
        await db_projects.change_user_type(ctx.db, project_id, target, new_group)
    except DBError as e:
        raise _db_error(e) from e
    await ctx.notify(PERMISSIONS_CHANGED, {"project_id": project_id})


async def delete_project(ctx: Context, *args: Any) -> None:
    """Mark a project deleted (the owner or an admin), then stop it and every process it
    left running (through the project runner, best effort: with no runner answering it is
    deleted all the same). hub-delete-projects unlinks it later."""
    opts = options(args)
    project_id = uuid_option(opts, "project_id")
    ctx.caller.require_account()
    await require_project(ctx, project_id, "owner")
    try:
        # first: from now on neither the hub nor the runner starts it, and its token is void
        await db_projects.mark_deleted(ctx.db, project_id)
    except DBError as e:
        raise _db_error(e) from e
    await ctx.notify(PERMISSIONS_CHANGED, {"project_id": project_id})
    why = await lifecycle.stop_deleted(ctx, project_id)
    if why is not None:
        log.warning("deleted project %s could not be stopped: %s", project_id, why)


async def touch(ctx: Context, *args: Any) -> None:
    opts = options(args)
    project_id = uuid_option(opts, "project_id")
    await require_project(ctx, project_id, "write")
    await db_projects.touch(ctx.db, project_id)


FUNCTIONS: dict[str, ApiFunction] = {
    "createProject": create_project,
    "list": list_projects,
    "get": get_project,
    "listCollaborators": list_collaborators,
    "addCollaborator": add_collaborator,
    "removeCollaborator": remove_collaborator,
    "inviteCollaborator": invite_collaborator,
    "changeUserType": change_user_type,
    "deleteProject": delete_project,
    "touch": touch,
}
