"""The call signature shared by every hub API function, and argument checks."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ..config import Settings
from ..db.engine import Database
from ..ids import is_uuid


class ApiError(Exception):
    """An error whose message is shown to the caller as ``{error, code}``.

    ``code`` follows HTTP: 400 bad arguments, 401 not signed in, 403 not allowed, 404 no such
    thing, 409 conflict, 429 too many, 503 a needed service is not available.
    """

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Caller:
    kind: Literal["account", "project"]
    id: str

    def require_account(self) -> str:
        if self.kind != "account":
            raise ApiError("must be signed in as an account (not a project) to do this", 403)
        return self.id


Notify = Callable[[str, Any], Awaitable[None]]
"""Publish a fact on a subject (fire and forget)."""

Request = Callable[[str, Any, float], Awaitable[Any]]
"""Send a request on a subject and return the reply data; raises cohub.conat.errors."""


async def _no_notify(subject: str, data: Any) -> None:
    return None


async def _no_request(subject: str, data: Any, timeout: float) -> Any:
    from ..conat.errors import NoSubscribers

    raise NoSubscribers(f"no Conat connection to reach '{subject}'")


@dataclass(frozen=True, slots=True)
class Context:
    db: Database
    caller: Caller
    notify: Notify = _no_notify
    request: Request = _no_request
    settings: Settings | None = None


ApiFunction = Callable[..., Awaitable[Any]]
"""``async def fn(ctx: Context, *args) -> result``"""


def options(args: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
    """The first argument as an options object (``{}`` when absent).

    The reference nests some options as ``{account_id, opts: {...}}`` (the hub injects the
    caller's account_id at the top); both that form and the flat form are accepted. Whatever
    a caller puts in ``account_id`` at the top never decides who is calling.
    """
    if not args or args[0] is None:
        return {}
    if not isinstance(args[0], dict):
        raise ApiError("the first argument must be an object of options")
    first: dict[str, Any] = args[0]
    nested = first.get("opts")
    if isinstance(nested, dict):
        return nested
    return first


def string_option(
    opts: dict[str, Any],
    name: str,
    *,
    max_length: int = 1024,
    default: str | None = None,
    required: bool = False,
) -> str:
    value = opts.get(name, default)
    if value is None:
        if required or default is None:
            raise ApiError(f"'{name}' must be given (a string)")
        value = default
    if not isinstance(value, str):
        raise ApiError(f"'{name}' must be a string")
    if len(value) > max_length:
        raise ApiError(f"'{name}' is longer than {max_length} characters")
    if "\x00" in value:
        raise ApiError(f"'{name}' must not contain NUL characters")
    return value


def optional_string(opts: dict[str, Any], name: str, *, max_length: int = 1024) -> str | None:
    if opts.get(name) is None:
        return None
    return string_option(opts, name, max_length=max_length)


def int_option(
    opts: dict[str, Any], name: str, *, default: int | None, minimum: int, maximum: int
) -> int | None:
    value = opts.get(name, default)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or value != int(value)
    ):
        raise ApiError(f"'{name}' must be an integer")
    if not minimum <= value <= maximum:
        raise ApiError(f"'{name}' must be between {minimum} and {maximum}")
    return int(value)


def bool_option(opts: dict[str, Any], name: str, default: bool = False) -> bool:
    value = opts.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(f"'{name}' must be true or false")
    return value


def uuid_option(opts: dict[str, Any], name: str) -> str:
    value = opts.get(name)
    if not is_uuid(value):
        raise ApiError(f"'{name}' must be a valid UUID")
    assert isinstance(value, str)
    return value


def optional_uuid(opts: dict[str, Any], name: str) -> str | None:
    if opts.get(name) is None:
        return None
    return uuid_option(opts, name)


def time_option(opts: dict[str, Any], name: str) -> datetime | None:
    """A time as an ISO 8601 string or milliseconds since the epoch; None when absent."""
    value = opts.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value / 1000, UTC)
        if isinstance(value, str) and len(value) <= 64:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise ApiError(
        f"'{name}' must be a time: an ISO 8601 string (e.g. 2030-01-01T00:00:00Z) "
        "or milliseconds since 1970"
    )
