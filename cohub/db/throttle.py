"""Throttling of failed attempts (sign-in, password-reset requests), stored in the database.

The counts live in ``auth_attempts`` so that every hub process, on every machine, sees the
same numbers: a limit held only in one process's memory would multiply with the replicas.
Rows expire after the longest window and are swept by hub-maintenance-expired; old rows of a
key are also trimmed whenever that key is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from cohub.db.engine import Database
from cohub.db.errors import DBError
from cohub.db.models import auth_attempts


class TooManyAttempts(DBError):
    """Too many recent attempts; the message says how long to wait."""


@dataclass(frozen=True, slots=True)
class Limit:
    count: int  # more than this many attempts within `window` is refused
    window: timedelta
    what: str  # "a minute", "an hour"


SIGN_IN_EMAIL: tuple[Limit, ...] = (
    Limit(5, timedelta(minutes=1), "a minute"),
    Limit(50, timedelta(hours=1), "an hour"),
)
SIGN_IN_IP: tuple[Limit, ...] = (
    Limit(30, timedelta(minutes=1), "a minute"),
    Limit(200, timedelta(hours=1), "an hour"),
)
PASSWORD_RESET_EMAIL: tuple[Limit, ...] = (
    Limit(1, timedelta(minutes=1), "a minute"),
    Limit(10, timedelta(hours=1), "an hour"),
)
PASSWORD_RESET_IP: tuple[Limit, ...] = (
    Limit(10, timedelta(minutes=1), "a minute"),
    Limit(100, timedelta(hours=1), "an hour"),
)

_MAX_KEY = 254


def _now() -> datetime:
    return datetime.now(UTC)


async def check(db: Database, kind: str, key: str, limits: Sequence[Limit], label: str) -> None:
    """Raise TooManyAttempts when ``key`` already used up one of ``limits``."""
    key = key[:_MAX_KEY]
    now = _now()
    longest = max(limit.window for limit in limits)
    where = (auth_attempts.c.kind == kind, auth_attempts.c.key == key)
    async with db.connect() as conn:
        times = [
            row.time
            for row in await conn.execute(
                sa.select(auth_attempts.c.time).where(*where, auth_attempts.c.time > now - longest)
            )
        ]
    for limit in limits:
        recent = sum(1 for t in times if t > now - limit.window)
        if recent >= limit.count:
            raise TooManyAttempts(
                f"too many attempts for this {label}: at most {limit.count} failures in "
                f"{limit.what}; wait and try again later"
            )


async def record(db: Database, kind: str, key: str, limits: Sequence[Limit]) -> None:
    """Count one attempt against ``key`` (and forget its attempts older than every window)."""
    key = key[:_MAX_KEY]
    now = _now()
    longest = max(limit.window for limit in limits)
    async with db.begin() as conn:
        await conn.execute(
            auth_attempts.delete().where(
                auth_attempts.c.kind == kind,
                auth_attempts.c.key == key,
                auth_attempts.c.time <= now - longest,
            )
        )
        await conn.execute(
            auth_attempts.insert().values(kind=kind, key=key, time=now, expire=now + longest)
        )
