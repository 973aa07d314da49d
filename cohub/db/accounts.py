"""Accounts, passwords, remember-me sessions and API keys."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection

from cohub.db.engine import Database
from cohub.db.errors import AccountExists, AuthError, PermissionDenied
from cohub.db.models import accounts, api_keys, project_users, remember_me

MAX_PASSWORD_LENGTH = 64
SESSION_TTL = timedelta(days=183)

_hasher = PasswordHasher()  # argon2id with the RFC 9106 low-memory parameters
_LEGACY_MAX_ITERATIONS = 100_000  # a stored hash must not be able to stall sign-in
_SESSION_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,200}")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KEY_RANDOM_LEN = 24
_KEY_ID_LEN = 6
_API_KEY = re.compile(rf"sk-[0-9A-Za-z]{{{_KEY_RANDOM_LEN + _KEY_ID_LEN}}}")
_PUBLIC_COLUMNS = [c for c in accounts.c if c.name != "password_hash"]


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_email(email: str) -> str:
    """Emails are compared trimmed and lower-cased."""
    return email.strip().lower()


# --- passwords ---------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """A new argon2id hash."""
    return _hasher.hash(password)


def _verify_legacy(password: str, stored: str) -> bool:
    # Node's `password-hash` module: `algorithm$salt$iterations$hex`, where the hex digest is
    # HMAC(key=salt, msg=previous hex digest) applied `iterations` times, starting from the
    # password. (This is iterated HMAC, not PBKDF2.) Three parts mean one iteration.
    parts = stored.split("$")
    if len(parts) == 3:
        parts.insert(2, "1")
    if len(parts) != 4:
        return False
    algorithm, salt, iterations_text, expected = parts
    if algorithm not in hashlib.algorithms_guaranteed or not iterations_text.isdigit():
        return False
    iterations = int(iterations_text)
    if not 1 <= iterations <= _LEGACY_MAX_ITERATIONS:
        return False
    digest = password
    for _ in range(iterations):
        digest = hmac.new(salt.encode(), digest.encode(), algorithm).hexdigest()
    return hmac.compare_digest(digest, expected.lower())


def verify_password(password: str, stored: str | None) -> bool:
    """Check a password against an argon2 hash or a legacy `sha512$salt$1000$hex` hash."""
    if not stored:
        return False
    if stored.startswith("$argon2"):
        try:
            return _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
    return _verify_legacy(password, stored)


def needs_rehash(stored: str) -> bool:
    """True for legacy hashes and argon2 hashes made with weaker parameters."""
    if not stored.startswith("$argon2"):
        return True
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


# --- accounts ----------------------------------------------------------------------------


async def create_account(
    db: Database,
    *,
    email: str,
    password: str | None,
    first_name: str = "",
    last_name: str = "",
    groups: list[str] | None = None,
) -> str:
    """Create an account and return its id. ``password=None`` makes an account that cannot
    sign in with a password. Raises AccountExists when the email address is taken."""
    email = normalize_email(email)
    if "@" not in email:
        raise ValueError(f"not an email address: {email!r}")
    password_hash = await asyncio.to_thread(hash_password, password) if password else None
    account_id = str(uuid.uuid4())
    try:
        async with db.begin() as conn:
            await conn.execute(
                accounts.insert().values(
                    account_id=account_id,
                    email_address=email,
                    password_hash=password_hash,
                    created=_now(),
                    groups=list(groups or []),
                    first_name=first_name,
                    last_name=last_name,
                )
            )
    except sa.exc.IntegrityError:
        raise AccountExists(
            f"an account with email address {email} already exists; sign in instead, "
            "or reset its password"
        ) from None
    return account_id


async def _account_where(db: Database, condition: sa.ColumnElement[bool]) -> dict[str, Any] | None:
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(*_PUBLIC_COLUMNS).where(condition))).first()
    return dict(row._mapping) if row else None


async def get_account(db: Database, account_id: str) -> dict[str, Any] | None:
    """The account's columns (without the password hash), or None."""
    return await _account_where(db, accounts.c.account_id == account_id)


async def get_account_by_email(db: Database, email: str) -> dict[str, Any] | None:
    return await _account_where(db, accounts.c.email_address == normalize_email(email))


async def is_admin(db: Database, account_id: str) -> bool:
    account = await get_account(db, account_id)
    return bool(
        account
        and not account["banned"]
        and not account["deleted"]
        and "admin" in (account["groups"] or [])
    )


async def authenticate(db: Database, email: str, password: str) -> str:
    """Check an email and password; return the account id or raise AuthError.

    A legacy password hash is replaced by an argon2id hash on success.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AuthError(f"passwords are at most {MAX_PASSWORD_LENGTH} characters long")
    email = normalize_email(email)
    query = sa.select(
        accounts.c.account_id, accounts.c.password_hash, accounts.c.banned, accounts.c.deleted
    ).where(accounts.c.email_address == email)
    async with db.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.deleted or not row.password_hash:
        # Spend the same time as a real check so the answer does not reveal which emails exist.
        await asyncio.to_thread(verify_password, password, _dummy_hash())
        raise AuthError("incorrect email address or password")
    if not await asyncio.to_thread(verify_password, password, row.password_hash):
        raise AuthError("incorrect email address or password")
    if row.banned:
        raise AuthError("account is banned")
    values: dict[str, Any] = {"last_active": _now()}
    if needs_rehash(row.password_hash):
        values["password_hash"] = await asyncio.to_thread(hash_password, password)
    async with db.begin() as conn:
        # Guard on the old hash so a concurrent password change is not overwritten.
        await conn.execute(
            accounts.update()
            .where(accounts.c.account_id == row.account_id)
            .where(accounts.c.password_hash == row.password_hash)
            .values(**values)
        )
    return str(row.account_id)


# --- remember-me sessions ----------------------------------------------------------------


async def create_session(db: Database, account_id: str, ttl: timedelta = SESSION_TTL) -> str:
    """A new session token for the remember_me cookie; only its sha256 is stored."""
    token = secrets.token_urlsafe(32)
    async with db.begin() as conn:
        await conn.execute(
            remember_me.insert().values(
                hash=_sha256(token), account_id=account_id, expire=_now() + ttl
            )
        )
    return token


async def account_for_session(db: Database, token: str) -> str | None:
    """The signed-in account for a session token, or None (unknown, expired, malformed, or
    the account is banned or deleted)."""
    if not isinstance(token, str) or not _SESSION_TOKEN.fullmatch(token):
        return None
    digest = _sha256(token)
    query = (
        sa.select(remember_me.c.expire, accounts.c.account_id, accounts.c.banned)
        .add_columns(accounts.c.deleted)
        .join(accounts, accounts.c.account_id == remember_me.c.account_id)
        .where(remember_me.c.hash == digest)
    )
    async with db.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    if row.expire <= _now():
        await delete_session(db, token)
        return None
    if row.banned or row.deleted:
        return None
    return str(row.account_id)


async def delete_session(db: Database, token: str) -> None:
    async with db.begin() as conn:
        await conn.execute(remember_me.delete().where(remember_me.c.hash == _sha256(token)))


async def delete_all_sessions(db: Database, account_id: str) -> None:
    """Sign the account out everywhere (e.g. after a password change or a ban)."""
    async with db.begin() as conn:
        await conn.execute(remember_me.delete().where(remember_me.c.account_id == account_id))


# --- API keys ----------------------------------------------------------------------------


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
    """Create a key and return it; this is the only time the full key is visible.

    Format: ``sk-`` + 24 random base62 characters + the row id in 6 base62 characters.
    A project key (``project_id`` set) acts as that project, and only while its creator
    is still an owner or collaborator of it.
    """
    async with db.begin() as conn:
        if project_id is not None and not await _can_use_project(conn, project_id, account_id):
            raise PermissionDenied(
                "only an owner or collaborator of the project can create an API key for it"
            )
        # Insert first: the key embeds the row id.
        result = await conn.execute(
            api_keys.insert().returning(api_keys.c.id).values(
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


async def account_or_project_for_api_key(
    db: Database, key: str
) -> tuple[Literal["account", "project"], str] | None:
    """Who a key acts as: ("account", account_id) or ("project", project_id); None if the
    key is unknown, expired or no longer allowed (expired and orphaned keys are deleted)."""
    if not isinstance(key, str) or not _API_KEY.fullmatch(key):
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
        await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_active=now))
    if row.project_id is not None:
        return ("project", str(row.project_id))
    return ("account", str(row.account_id))
