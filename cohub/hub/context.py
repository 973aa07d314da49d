"""The call signature shared by every hub API function."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..db.engine import Database


class ApiError(Exception):
    """An error whose message is shown to the caller as ``{error}``."""


@dataclass(frozen=True, slots=True)
class Caller:
    kind: Literal["account", "project"]
    id: str

    def require_account(self) -> str:
        if self.kind != "account":
            raise ApiError("must be signed in as an account to do this")
        return self.id


Notify = Callable[[str, Any], Awaitable[None]]
"""Publish a fact on a subject (fire and forget)."""


async def _no_notify(subject: str, data: Any) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Context:
    db: Database
    caller: Caller
    notify: Notify = _no_notify


ApiFunction = Callable[..., Awaitable[Any]]
"""``async def fn(ctx: Context, opts: dict) -> result``"""


def options(args: list[Any]) -> dict[str, Any]:
    """The first argument as an options object (``{}`` when absent)."""
    if not args or args[0] is None:
        return {}
    if not isinstance(args[0], dict):
        raise ApiError("the first argument must be an object of options")
    return args[0]


def string_option(
    opts: dict[str, Any], name: str, *, max_length: int = 1024, default: str | None = None
) -> str:
    value = opts.get(name, default)
    if not isinstance(value, str):
        raise ApiError(f"'{name}' must be a string")
    if len(value) > max_length:
        raise ApiError(f"'{name}' is longer than {max_length} characters")
    return value
