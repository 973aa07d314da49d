"""The hub API service on ``hub.*.*.api`` (queue "0").

The caller's identity comes from subject tokens 1 and 2: the router lets only that account
or project publish there, so the subject proves who is calling. Requests are
``{name: "group.fn", args: [...]}``; the reply is the result, or ``{error, code}`` where
``code`` follows HTTP (400 bad arguments, 401, 403, 404, 409, 429, 503 not available).
Banned or deleted accounts get 401 even if a connection of theirs is still open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

from ..conat.client import Client
from ..conat.codec import Message
from ..conat.errors import ConatError
from ..config import Settings
from ..db import accounts as db_accounts
from ..db.engine import Database
from ..ids import is_uuid
from . import dbapi, lifecycle, messages, projects, system
from .context import ApiError, ApiFunction, Caller, Context, Notify, Request

log = logging.getLogger("cohub.hub.api")

SUBJECT = "hub.*.*.api"
MAX_ARGS = 10

GROUPS: dict[str, dict[str, ApiFunction]] = {
    "system": system.FUNCTIONS,
    "projects": {**projects.FUNCTIONS, **lifecycle.FUNCTIONS},
    "db": dbapi.FUNCTIONS,
    "messages": messages.FUNCTIONS,
}
# Functions anyone may call, even an account that is banned meanwhile.
NO_AUTH = {"system.ping", "system.getCustomize"}


class RecentCallers:
    """The distinct accounts and projects that called the hub API lately (for hub_servers)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def saw(self, subject: str) -> None:
        self._seen[subject] = time.monotonic()

    def count(self, window_s: float) -> int:
        """How many called within the last ``window_s``; older ones are forgotten."""
        cutoff = time.monotonic() - window_s
        self._seen = {k: t for k, t in self._seen.items() if t > cutoff}
        return len(self._seen)


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
        raise ApiError(f"unknown function '{name[:200]}'", 404)
    return found


def plain(value: Any) -> Any:
    """Times as ISO 8601 strings, so results encode as JSON and MessagePack alike."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


async def call(ctx: Context, name: object, args: object) -> Any:
    """Run one hub API function for ``ctx.caller``; raises ApiError."""
    if args is None:
        args = []
    if not isinstance(args, list):
        raise ApiError("'args' must be a list")
    if len(args) > MAX_ARGS:
        raise ApiError(f"at most {MAX_ARGS} arguments")
    fn = lookup(name)
    if name not in NO_AUTH and ctx.caller.kind == "account":
        account = await db_accounts.get_account(ctx.db, ctx.caller.id)
        if account is None or account["banned"] or account["deleted"]:
            raise ApiError("must be signed in", 401)
    return plain(await fn(ctx, *args))


async def handle(
    db: Database,
    msg: Message,
    notify: Notify | None = None,
    request: Request | None = None,
    settings: Settings | None = None,
) -> Any:
    """Answer one request; every failure becomes ``{error, code}``."""
    try:
        caller = caller_from_subject(msg.subject)
        data = msg.data
        if isinstance(data, list) and len(data) == 2:  # [name, args] is accepted too
            data = {"name": data[0], "args": data[1]}
        if not isinstance(data, dict):
            raise ApiError("a hub API request must be {name, args}")
        extra: dict[str, Any] = {}
        if notify is not None:
            extra["notify"] = notify
        if request is not None:
            extra["request"] = request
        ctx = Context(db, caller, settings=settings, **extra)
        return await call(ctx, data.get("name"), data.get("args", []))
    except ApiError as e:
        return {"error": e.message, "code": e.code}
    except ConatError as e:
        return {"error": e.message, "code": e.code}
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("hub API call failed on %s", msg.subject)
        return {"error": "internal error in the hub API (logged on the server)", "code": 500}


async def serve(
    client: Client,
    db: Database,
    settings: Settings | None = None,
    callers: RecentCallers | None = None,
) -> asyncio.Task[None]:
    """Subscribe to the hub API subject and answer requests until cancelled; ``callers``
    notes who called."""

    async def notify(subject: str, data: Any) -> None:
        await client.publish_sync(subject, data)

    async def request(subject: str, data: Any, timeout: float) -> Any:
        return (await client.request(subject, data, timeout=timeout)).data

    async def handler(msg: Message) -> Any:
        if callers is not None:
            callers.saw(msg.subject)
        return await handle(db, msg, notify, request, settings)

    return await client.service(SUBJECT, handler)
