"""API keys: create, list, edit, delete, and who a presented key acts as.

Format: ``sk-`` + 24 random base62 characters + the row id in 6 base62 characters. Only the
sha256 of a key is stored, with ``trunc`` (``sk-…`` and the last six characters) for display.
A key is an account key, or a project key that acts as one project, and only while its creator
is still an owner or collaborator of that project.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cohub.db.engine import Database
from cohub.db.errors import NotFound, PermissionDenied
from cohub.db.models import accounts, api_keys, project_users, projects

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KEY_RANDOM_LEN = 24
_KEY_ID_LEN = 6
_API_KEY = re.compile(rf"sk-[0-9A-Za-z]{{{_KEY_RANDOM_LEN + _KEY_ID_LEN}}}")
MAX_KEYS_PER_ACCOUNT = 1000
MAX_NAME_LENGTH = 255
# What list/edit return: never the hash.
_PUBLIC = (
    api_keys.c.id,
    api_keys.c.account_id,
    api_keys.c.project_id,
    api_keys.c.name,
    api_keys.c.trunc,
    api_keys.c.created,
    api_keys.c.expire,
    api_keys.c.last_active,
)


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _base62(value: int, width: int) -> str:
    digits, n = [], value
    while n:
        n, r = divmod(n, 62)
        digits.append(_BASE62[r])
    text = "".join(reversed(digits)).rjust(width, "0")
    if len(text) > width:
        raise OverflowError(f"{value} does not fit in {width} base62 digits")
    return text


def _from_base62(text: str) -> int:
    n = 0
    for ch in text:
        n = n * 62 + _BASE62.index(ch)
    return n


def looks_like_key(value: object) -> bool:
    """True when ``value`` has the shape of an API key (says nothing about validity)."""
    return isinstance(value, str) and bool(_API_KEY.fullmatch(value))


async def _can_use_project(conn: AsyncConnection, project_id: str, account_id: str) -> bool:
    group = await conn.scalar(
        sa.select(project_users.c.group).where(
            project_users.c.project_id == project_id, project_users.c.account_id == account_id
        )
    )
    return group in ("owner", "collaborator")


async def create_api_key(
    db: Database,
    account_id: str,
    project_id: str | None = None,
    name: str = "",
    expire: datetime | None = None,
) -> str:
    """Create a key and return it; this is the only time the full key is visible."""
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"the key name is longer than {MAX_NAME_LENGTH} characters")
    async with db.begin() as conn:
        if project_id is not None and not await _can_use_project(conn, project_id, account_id):
            raise PermissionDenied(
                "only an owner or collaborator of the project can create an API key for it"
            )
        count = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(api_keys)
            .where(api_keys.c.account_id == account_id)
        )
        if (count or 0) >= MAX_KEYS_PER_ACCOUNT:
            raise PermissionDenied(
                f"an account can have at most {MAX_KEYS_PER_ACCOUNT} API keys; delete some first"
            )
        # Insert first: the key embeds the row id.
        result = await conn.execute(
            api_keys.insert()
            .returning(api_keys.c.id)
            .values(
                account_id=account_id,
                project_id=project_id,
                hash="",
                trunc="",
                name=name,
                created=_now(),
                expire=expire,
            )
        )
        key_id: int = result.scalar_one()
        random_part = "".join(secrets.choice(_BASE62) for _ in range(_KEY_RANDOM_LEN))
        key = f"sk-{random_part}{_base62(key_id, _KEY_ID_LEN)}"
        await conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id)
            .values(hash=_sha256(key), trunc=f"{key[:3]}…{key[-6:]}")
        )
    return key


def _owned(account_id: str, project_id: str | None) -> sa.ColumnElement[bool]:
    # Project keys are managed per project (any collaborator sees the project's keys, as in
    # the reference); account keys only by their creator.
    if project_id is not None:
        return api_keys.c.project_id == project_id
    return sa.and_(api_keys.c.account_id == account_id, api_keys.c.project_id.is_(None))


async def list_api_keys(
    db: Database, account_id: str, project_id: str | None = None, key_id: int | None = None
) -> list[dict[str, Any]]:
    """The account's keys (or the project's keys), newest first; never the hash."""
    query = sa.select(*_PUBLIC).where(_owned(account_id, project_id))
    if key_id is not None:
        query = query.where(api_keys.c.id == key_id)
    query = query.order_by(api_keys.c.created.desc(), api_keys.c.id.desc())
    async with db.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def edit_api_key(
    db: Database,
    account_id: str,
    key_id: int,
    *,
    project_id: str | None = None,
    name: str | None = None,
    expire: datetime | None = None,
    clear_expire: bool = False,
) -> None:
    """Rename a key or change when it expires. NotFound when it is not the caller's key."""
    values: dict[str, Any] = {}
    if name is not None:
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"the key name is longer than {MAX_NAME_LENGTH} characters")
        values["name"] = name
    if expire is not None or clear_expire:
        values["expire"] = expire
    async with db.begin() as conn:
        found = await conn.scalar(
            sa.select(api_keys.c.id).where(_owned(account_id, project_id), api_keys.c.id == key_id)
        )
        if found is None:
            raise NotFound(f"you have no API key with id {key_id}")
        if values:
            await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(**values))


async def delete_api_key(
    db: Database, account_id: str, key_id: int, *, project_id: str | None = None
) -> None:
    """Delete a key (revoke it at once). NotFound when it is not the caller's key."""
    async with db.begin() as conn:
        result = await conn.execute(
            api_keys.delete().where(_owned(account_id, project_id), api_keys.c.id == key_id)
        )
    if result.rowcount == 0:
        raise NotFound(f"you have no API key with id {key_id}")


async def account_or_project_for_api_key(
    db: Database, key: str
) -> tuple[Literal["account", "project"], str] | None:
    """Who a key acts as: ("account", account_id) or ("project", project_id); None if the
    key is unknown, expired or no longer allowed (expired and orphaned keys are deleted).
    A key of a banned or deleted account, or for a deleted project, is refused."""
    if not looks_like_key(key):
        return None
    key_id = _from_base62(key[-_KEY_ID_LEN:])
    query = (
        sa.select(api_keys, accounts.c.banned, accounts.c.deleted)
        .join(accounts, accounts.c.account_id == api_keys.c.account_id)
        .where(api_keys.c.id == key_id)
    )
    async with db.begin() as conn:
        row = (await conn.execute(query)).first()
        if row is None or not hmac.compare_digest(row.hash, _sha256(key)):
            return None
        now = _now()
        stale = row.expire is not None and row.expire <= now
        if not stale and row.project_id is not None:
            stale = not await _can_use_project(conn, row.project_id, row.account_id)
        if stale:
            await conn.execute(api_keys.delete().where(api_keys.c.id == key_id))
            return None
        if row.banned or row.deleted:
            return None
        if row.project_id is not None:
            deleted = await conn.scalar(
                sa.select(projects.c.deleted).where(projects.c.project_id == row.project_id)
            )
            if deleted:
                return None
        await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_active=now))
    if row.project_id is not None:
        return ("project", str(row.project_id))
    return ("account", str(row.account_id))


async def creator_of_key(db: Database, key: str) -> str | None:
    """The account that created a (valid-looking) key, or None."""
    if not looks_like_key(key):
        return None
    async with db.connect() as conn:
        row = (
            await conn.execute(
                sa.select(api_keys.c.account_id, api_keys.c.hash).where(
                    api_keys.c.id == _from_base62(key[-_KEY_ID_LEN:])
                )
            )
        ).first()
    if row is None or not hmac.compare_digest(row.hash, _sha256(key)):
        return None
    return str(row.account_id)


def key_id_of(key: str) -> int | None:
    """The row id embedded in a (well-formed) key."""
    return _from_base62(key[-_KEY_ID_LEN:]) if looks_like_key(key) else None
