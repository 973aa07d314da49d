"""Site settings (the ``server_settings`` table) and registration tokens.

Settings that matter here (values are text):

- ``site_name``, ``site_description``, ``help_email``, ``terms_of_service_url``: public, shown
  by ``system.getCustomize``;
- ``email_signup``: ``"no"`` (or false/0/off) switches sign-up with email and password off;
- ``email_smtp_server``, ``email_smtp_port``, ``email_smtp_login``, ``email_smtp_password``,
  ``email_smtp_from``, ``email_smtp_secure`` (``"tls"`` for implicit TLS, ``"starttls"``, or
  empty for plain): outgoing email; these are never shown by getCustomize.

Sign-up requires a registration token while at least one row of ``registration_tokens`` is not
disabled, even when every such token is expired or used up: running out of tokens must not open
sign-up to everyone. Disabling the last token (or deleting the rows) opens it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cohub.db.engine import Database
from cohub.db.errors import DBError
from cohub.db.models import registration_tokens, server_settings

PUBLIC_SETTINGS: dict[str, str] = {
    "site_name": "cohub",
    "site_description": "Collaborative computing",
    "help_email": "",
    "terms_of_service_url": "",
    "email_signup": "yes",
}
SMTP_SETTINGS = (
    "email_smtp_server",
    "email_smtp_port",
    "email_smtp_login",
    "email_smtp_password",
    "email_smtp_from",
    "email_smtp_secure",
)
_FALSE = {"no", "false", "0", "off", ""}


class RegistrationTokenError(DBError):
    """The registration token is missing or not usable."""


def _now() -> datetime:
    return datetime.now(UTC)


def is_true(value: str | None, default: bool = True) -> bool:
    if value is None:
        return default
    return value.strip().lower() not in _FALSE


async def get_settings(db: Database, names: list[str] | None = None) -> dict[str, str]:
    """Settings as {name: value}; only the named ones when ``names`` is given."""
    query = sa.select(server_settings.c.name, server_settings.c.value)
    if names is not None:
        query = query.where(server_settings.c.name.in_(names))
    async with db.connect() as conn:
        return {row.name: row.value or "" for row in await conn.execute(query)}


async def get_setting(db: Database, name: str) -> str | None:
    async with db.connect() as conn:
        return await conn.scalar(
            sa.select(server_settings.c.value).where(server_settings.c.name == name)
        )


async def set_setting(db: Database, name: str, value: str | None) -> None:
    """Set (or, with None, remove) one setting."""
    async with db.begin() as conn:
        await conn.execute(server_settings.delete().where(server_settings.c.name == name))
        if value is not None:
            await conn.execute(server_settings.insert().values(name=name, value=value))


async def public_settings(db: Database) -> dict[str, str]:
    """What anyone may see: the public settings with their defaults filled in."""
    stored = await get_settings(db, list(PUBLIC_SETTINGS))
    return {name: stored.get(name, default) for name, default in PUBLIC_SETTINGS.items()}


async def sign_up_enabled(db: Database) -> bool:
    return is_true(await get_setting(db, "email_signup"), default=True)


# --- registration tokens -------------------------------------------------------------------


def _usable() -> sa.ColumnElement[bool]:
    return sa.and_(
        registration_tokens.c.disabled.is_(False),
        sa.or_(registration_tokens.c.expire.is_(None), registration_tokens.c.expire > _now()),
        sa.or_(
            registration_tokens.c.limit.is_(None),
            registration_tokens.c.counter < registration_tokens.c.limit,
        ),
    )


async def create_registration_token(
    db: Database,
    token: str,
    *,
    descr: str = "",
    expire: datetime | None = None,
    limit: int | None = None,
) -> None:
    async with db.begin() as conn:
        await conn.execute(
            registration_tokens.insert().values(
                token=token, descr=descr, expire=expire, limit=limit, counter=0
            )
        )


async def disable_registration_token(db: Database, token: str) -> None:
    async with db.begin() as conn:
        await conn.execute(
            registration_tokens.update()
            .where(registration_tokens.c.token == token)
            .values(disabled=True)
        )


async def token_required(db: Database) -> bool:
    """True while any registration token that is not disabled exists (usable or not)."""
    async with db.connect() as conn:
        found = await conn.scalar(
            sa.select(registration_tokens.c.token)
            .where(registration_tokens.c.disabled.is_(False))
            .limit(1)
        )
    return found is not None


async def redeem_registration_token(conn: AsyncConnection, token: str) -> None:
    """Use up one sign-up of ``token`` inside the caller's transaction; the error says why
    a token cannot be used (unknown, disabled, expired, used up)."""
    result = await conn.execute(
        registration_tokens.update()
        .where(registration_tokens.c.token == token, _usable())
        .values(counter=registration_tokens.c.counter + 1)
    )
    if result.rowcount == 1:
        return
    row = (
        await conn.execute(
            sa.select(registration_tokens).where(registration_tokens.c.token == token)
        )
    ).first()
    if row is None:
        why = "is not valid (no such token)"
    elif row.disabled:
        why = "has been disabled"
    elif row.expire is not None and row.expire <= _now():
        why = f"expired on {row.expire.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    else:
        why = f"is used up (all {row.limit} sign-ups with it are taken)"
    raise RegistrationTokenError(
        f"the registration token {why}; ask the site administrator for a new one"
    )


async def registration_token_info(db: Database, token: str) -> dict[str, Any] | None:
    async with db.connect() as conn:
        row = (
            await conn.execute(
                sa.select(registration_tokens).where(registration_tokens.c.token == token)
            )
        ).first()
    return dict(row._mapping) if row else None
