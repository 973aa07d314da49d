"""The ``system.*`` hub API functions."""

from __future__ import annotations

import time
from typing import Any

from ..conat.protocol import PERMISSIONS_CHANGED
from ..db import accounts as db_accounts
from ..db import api_keys as db_keys
from ..db import settings as db_settings
from ..db.errors import DBError, NotFound, PermissionDenied
from ..ids import is_uuid
from .access import is_admin, require_project
from .context import (
    ApiError,
    ApiFunction,
    Context,
    bool_option,
    int_option,
    optional_string,
    optional_uuid,
    options,
    string_option,
    time_option,
    uuid_option,
)

MAX_NAMES = 1000
API_KEY_ACTIONS = ("get", "create", "delete", "edit")


async def ping(ctx: Context, *args: Any) -> dict[str, Any]:
    return {"now": int(time.time() * 1000)}


async def test(ctx: Context, *args: Any) -> dict[str, Any]:
    """Who the hub thinks is calling, and the server time."""
    return {f"{ctx.caller.kind}_id": ctx.caller.id, "server_time": int(time.time() * 1000)}


async def get_customize(ctx: Context, *args: Any) -> dict[str, Any]:
    """The public site settings (all, or the fields named in a list)."""
    values: dict[str, Any] = await db_settings.public_settings(ctx.db)
    values["registration_token_required"] = await db_settings.token_required(ctx.db)
    fields = args[0] if args else None
    if fields is None:
        return values
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ApiError("getCustomize takes an optional list of field names")
    return {f: values[f] for f in fields[:100] if f in values}


async def manage_api_keys(ctx: Context, *args: Any) -> list[dict[str, Any]] | None:
    """API keys of the account, or of one project (``project_id``), for owners and
    collaborators. Actions: get (all, or one ``id``), create (``name``, ``expire``),
    edit (``id``, ``name``, ``expire``), delete (``id``)."""
    account_id = ctx.caller.require_account()
    opts = options(args)
    action = opts.get("action")
    if action not in API_KEY_ACTIONS:
        raise ApiError(f"'action' must be one of {', '.join(API_KEY_ACTIONS)}")
    project_id = optional_uuid(opts, "project_id")
    if project_id is not None:
        await require_project(ctx, project_id, "write")
    name = optional_string(opts, "name", max_length=db_keys.MAX_NAME_LENGTH)
    expire = time_option(opts, "expire")
    key_id = int_option(opts, "id", default=None, minimum=1, maximum=2**31 - 1)
    try:
        if action == "get":
            return await db_keys.list_api_keys(ctx.db, account_id, project_id, key_id)
        if action == "create":
            if expire is not None and expire.timestamp() <= time.time():
                raise ApiError("'expire' must be in the future")
            key = await db_keys.create_api_key(
                ctx.db, account_id, project_id=project_id, name=name or "", expire=expire
            )
            created = await db_keys.list_api_keys(
                ctx.db, account_id, project_id, db_keys.key_id_of(key)
            )
            return [{**created[0], "secret": key}]
        if key_id is None:
            raise ApiError(f"'id' (the key's id) is needed to {action} a key")
        if action == "delete":
            await db_keys.delete_api_key(ctx.db, account_id, key_id, project_id=project_id)
        else:
            await db_keys.edit_api_key(
                ctx.db,
                account_id,
                key_id,
                project_id=project_id,
                name=name,
                expire=expire,
                clear_expire="expire" in opts and opts["expire"] is None,
            )
            if "expire" not in opts:
                return None  # only the name changed: nobody loses access
    except NotFound as e:
        raise ApiError(str(e), 404) from e
    except PermissionDenied as e:
        raise ApiError(str(e), 403) from e
    except (DBError, ValueError) as e:
        raise ApiError(str(e)) from e
    # The key is gone or expires at another time: routers re-check connections made with it.
    await ctx.notify(PERMISSIONS_CHANGED, {"account_id": account_id})
    if project_id is not None:
        await ctx.notify(PERMISSIONS_CHANGED, {"project_id": project_id})
    return None


async def user_search(ctx: Context, *args: Any) -> list[dict[str, Any]]:
    """Search accounts by name, or by exact email address (admins: any part of it)."""
    ctx.caller.require_account()
    opts = options(args)
    query = string_option(opts, "query", max_length=500, required=True)
    limit = int_option(opts, "limit", default=20, minimum=1, maximum=100) or 20
    admin = bool_option(opts, "admin") and await is_admin(ctx)
    return await db_accounts.user_search(ctx.db, query, limit=limit, admin=admin)


async def get_names(ctx: Context, *args: Any) -> dict[str, dict[str, str]]:
    """First and last names of a list of accounts."""
    ctx.caller.require_account()
    ids = args[0] if args else None
    if isinstance(ids, dict):  # {account_ids: [...]} is accepted too
        ids = ids.get("account_ids")
    if not isinstance(ids, list) or not all(is_uuid(i) for i in ids):
        raise ApiError("getNames takes a list of account ids (UUIDs)")
    if len(ids) > MAX_NAMES:
        raise ApiError(f"getNames takes at most {MAX_NAMES} account ids")
    return await db_accounts.get_names(ctx.db, ids)


async def ban_user(ctx: Context, *args: Any) -> None:
    """Admins only: ban (``banned``: true, the default) or unban an account (``account_id``).

    A ban ends every remember_me session of the account. Its API keys stay but are refused
    while it is banned (db.api_keys checks), so an unban gives them back. Routers are told at
    once, so open Conat connections of the account are checked again and closed now, not at
    the next periodic re-authentication."""
    caller = ctx.caller.require_account()
    if not await is_admin(ctx):
        raise ApiError("only admins may ban or unban accounts", 403)
    opts = options(args)
    account_id = uuid_option(opts, "account_id")
    banned = bool_option(opts, "banned", default=True)
    if banned and account_id == caller:
        raise ApiError("you cannot ban yourself; ask another admin")
    if await db_accounts.get_account(ctx.db, account_id) is None:
        raise ApiError(f"no account with id {account_id}", 404)
    await db_accounts.set_banned(ctx.db, account_id, banned)
    if banned:
        await ctx.notify(PERMISSIONS_CHANGED, {"account_id": account_id})


FUNCTIONS: dict[str, ApiFunction] = {
    "ping": ping,
    "test": test,
    "getCustomize": get_customize,
    "manageApiKeys": manage_api_keys,
    "userSearch": user_search,
    "getNames": get_names,
    "banUser": ban_user,
}
