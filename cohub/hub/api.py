"""The hub API service on ``hub.*.*.api`` (queue "0").

The caller's identity comes from subject tokens 1 and 2: the router lets only that account
or project publish there, so the subject proves who is calling. Requests are
``{name: "group.fn", args: [...]}``; the reply is the result, or ``{error}``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..conat.client import Client
from ..conat.codec import Message
from ..conat.errors import ConatError
from ..db.engine import Database
from ..ids import is_uuid
from . import projects, system
from .context import ApiError, ApiFunction, Caller, Context, Notify

log = logging.getLogger("cohub.hub.api")

SUBJECT = "hub.*.*.api"

GROUPS: dict[str, dict[str, ApiFunction]] = {
    "system": system.FUNCTIONS,
    "projects": projects.FUNCTIONS,
}


def caller_from_subject(subject: str) -> Caller:
    tokens = subject.split(".")
    if len(tokens) != 4 or tokens[1] not in ("account", "project"):
        raise ApiError("the hub API subject must be hub.<account|project>.<id>.api")
    if not is_uuid(tokens[2]):
        raise ApiError(f"invalid uuid '{tokens[2][:64]}'")
    return Caller(tokens[1], tokens[2])  # type: ignore[arg-type]


def lookup(name: object) -> ApiFunction:
    if not isinstance(name, str) or name.count(".") != 1:
        raise ApiError("'name' must be a string of the form 'group.function'")
    group, fn = name.split(".")
    found = GROUPS.get(group, {}).get(fn)
    if found is None:
        raise ApiError(f"unknown function '{name[:200]}'")
    return found


async def handle(db: Database, msg: Message, notify: Notify | None = None) -> Any:
    """Answer one request; every failure becomes ``{error}``."""
    try:
        caller = caller_from_subject(msg.subject)
        request = msg.data
        if not isinstance(request, dict):
            raise ApiError("a hub API request must be {name, args}")
        args = request.get("args", [])
        if args is None:
            args = []
        if not isinstance(args, list):
            raise ApiError("'args' must be a list")
        fn = lookup(request.get("name"))
        ctx = Context(db, caller) if notify is None else Context(db, caller, notify)
        return await fn(ctx, *args)
    except (ApiError, ConatError) as e:
        return {"error": str(e)}
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.exception("hub API call failed on %s", msg.subject)
        return {"error": f"internal error: {e}"}


async def serve(client: Client, db: Database) -> asyncio.Task[None]:
    """Subscribe to the hub API subject and answer requests until cancelled."""

    async def notify(subject: str, data: Any) -> None:
        await client.publish_sync(subject, data)

    async def handler(msg: Message) -> Any:
        return await handle(db, msg, notify)

    return await client.service(SUBJECT, handler)
