"""Throttling of failed attempts (sign-in, password-reset requests), stored in the database.

The counts live in ``auth_attempts`` so that every hub process, on every machine, sees the
same numbers: a limit held only in one process's memory would multiply with the replicas.
Rows expire after the longest window and are swept by hub-maintenance-expired; old rows of a
key are also trimmed whenever that key is checked.

:func:`attempt` is the one to use on a request path. It counts and records in one transaction
that runs alone per key (an advisory lock per key on PostgreSQL, the database write lock on
SQLite), so concurrent requests, in one process or in several hub replicas on one database,
cannot all pass a check that ran before any of them was recorded. The attempt is recorded as a
failure up front; :func:`forget` takes it back when it succeeded (a correct sign-in is not a
failure), and a refused attempt is not recorded. :func:`check` and :func:`record` are the
read-only and write-only halves, for tools and tests; checking and then recording on a request
path would be racy.
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


@dataclass(frozen=True, slots=True)
class Key:
    """One thing attempts are counted against, e.g. ("email", "a@x.org", SIGN_IN_EMAIL)."""

    kind: str
    key: str
    limits: Sequence[Limit]
    label: str  # "email address", "IP address": for the error message


def _refusal(limit: Limit, label: str) -> TooManyAttempts:
    return TooManyAttempts(
        f"too many attempts for this {label}: at most {limit.count} failures in "
        f"{limit.what}; wait and try again later"
    )


async def attempt(db: Database, *keys: Key) -> list[int]:
    """Record one attempt against every key, or raise TooManyAttempts (and record nothing)
    when one more would go over a limit. Returns the ids of the recorded rows, for
    :func:`forget` when the attempt turns out fine."""
    now = _now()
    ids: list[int] = []
    async with db.begin() as conn:
        if conn.dialect.name == "postgresql":
            # One transaction at a time per key, across every hub process: whoever holds the
            # lock sees every attempt committed before it. Sorted, so two requests locking the
            # same pair of keys cannot deadlock. (SQLite: the DELETE below takes the database
            # write lock, which already serializes this transaction with every other writer.)
            for name in sorted({f"{k.kind}:{k.key[:_MAX_KEY]}" for k in keys}):
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(name))))
        for k in keys:
            key = k.key[:_MAX_KEY]
            longest = max(limit.window for limit in k.limits)
            where = (auth_attempts.c.kind == k.kind, auth_attempts.c.key == key)
            await conn.execute(
                auth_attempts.delete().where(*where, auth_attempts.c.time <= now - longest)
            )
            row_id = await conn.scalar(
                auth_attempts.insert()
                .values(kind=k.kind, key=key, time=now, expire=now + longest)
                .returning(auth_attempts.c.id)
            )
            ids.append(int(row_id))
            for limit in k.limits:
                recent = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(auth_attempts)
                    .where(*where, auth_attempts.c.time > now - limit.window)
                )
                if int(recent or 0) > limit.count:  # this one included
                    raise _refusal(limit, k.label)  # rolls back: a refusal is not counted
    return ids


async def forget(db: Database, ids: Sequence[int]) -> None:
    """Take back attempts recorded by :func:`attempt` (a sign-in that succeeded)."""
    if not ids:
        return
    async with db.begin() as conn:
        await conn.execute(auth_attempts.delete().where(auth_attempts.c.id.in_(list(ids))))


async def check(db: Database, kind: str, key: str, limits: Sequence[Limit], label: str) -> None:
    """Raise TooManyAttempts when ``key`` already used up one of ``limits`` (read only)."""
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
            raise _refusal(limit, label)


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
