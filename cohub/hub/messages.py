"""The ``messages.*`` hub API functions: messages between accounts."""

from __future__ import annotations

from typing import Any, cast

from ..db import messages as db_messages
from ..db.errors import NotFound
from .context import (
    ApiError,
    ApiFunction,
    Context,
    int_option,
    options,
    string_option,
    time_option,
)

KINDS = ("received", "sent", "new")


async def send(ctx: Context, *args: Any) -> int:
    """Send a message to accounts (ids or email addresses); returns its id."""
    from_id = ctx.caller.require_account()
    opts = options(args)
    to_ids = opts.get("to_ids")
    if (
        not isinstance(to_ids, list)
        or not to_ids
        or not all(isinstance(t, str) and 0 < len(t) <= 254 for t in to_ids)
    ):
        raise ApiError("'to_ids' must be a non-empty list of account ids or email addresses")
    if len(to_ids) > db_messages.MAX_RECIPIENTS:
        raise ApiError(f"a message can go to at most {db_messages.MAX_RECIPIENTS} recipients")
    subject = string_option(opts, "subject", max_length=db_messages.MAX_SUBJECT, required=True)
    body = string_option(opts, "body", max_length=db_messages.MAX_BODY, default="")
    reply_id = int_option(opts, "reply_id", default=None, minimum=1, maximum=2**31 - 1)
    try:
        return await db_messages.send(ctx.db, from_id, to_ids, subject, body, reply_id)
    except NotFound as e:
        raise ApiError(str(e), 404) from e


async def get(ctx: Context, *args: Any) -> list[dict[str, Any]]:
    """The caller's messages, newest first: type received (default), sent or new."""
    account_id = ctx.caller.require_account()
    opts = options(args)
    kind = opts.get("type") or "received"
    if kind not in KINDS:
        raise ApiError(f"'type' must be one of {', '.join(KINDS)}")
    kind = cast(db_messages.MessageKind, kind)
    limit = int_option(opts, "limit", default=100, minimum=1, maximum=1000) or 100
    offset = int_option(opts, "offset", default=0, minimum=0, maximum=1_000_000) or 0
    return await db_messages.get(
        ctx.db,
        account_id,
        kind=kind,
        limit=limit,
        offset=offset,
        cutoff=time_option(opts, "cutoff"),
    )


FUNCTIONS: dict[str, ApiFunction] = {"send": send, "get": get}
