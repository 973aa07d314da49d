"""Accounts, passwords and remember-me sessions (API keys: api_keys.py)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cohub.db.engine import Database
from cohub.db.errors import AccountExists, AuthError, NotFound
from cohub.db.models import accounts, password_resets, remember_me
from cohub.db.settings import redeem_registration_token

MAX_PASSWORD_LENGTH = 64
SESSION_TTL = timedelta(days=183)
PASSWORD_RESET_TTL = timedelta(hours=1)
MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()  # argon2id with the RFC 9106 low-memory parameters
_LEGACY_MAX_ITERATIONS = 100_000  # a stored hash must not be able to stall sign-in
_SESSION_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,200}")
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
    registration_token: str | None = None,
) -> str:
    """Create an account and return its id. ``password=None`` makes an account that cannot
    sign in with a password. Raises AccountExists when the email address is taken, and
    RegistrationTokenError when ``registration_token`` is given but not usable (it is used up
    in the same transaction, so a failed sign-up does not spend it)."""
    email = normalize_email(email)
    if "@" not in email:
        raise ValueError(f"not an email address: {email!r}")
    password_hash = await asyncio.to_thread(hash_password, password) if password else None
    account_id = str(uuid.uuid4())
    try:
        async with db.begin() as conn:
            if registration_token is not None:
                await redeem_registration_token(conn, registration_token)
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


# --- passwords: set, reset ----------------------------------------------------------------


def check_new_password(password: object) -> str:
    """A new password must be a string of 8 to 64 characters."""
    if not isinstance(password, str) or not (
        MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH
    ):
        raise ValueError(
            f"the password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )
    return password


async def set_password(db: Database, account_id: str, password: str) -> None:
    """Replace the password and end every session of the account."""
    password_hash = await asyncio.to_thread(hash_password, check_new_password(password))
    async with db.begin() as conn:
        result = await conn.execute(
            accounts.update()
            .where(accounts.c.account_id == account_id)
            .values(password_hash=password_hash)
        )
        if result.rowcount == 0:
            raise NotFound(f"no account with id {account_id}")
        await conn.execute(remember_me.delete().where(remember_me.c.account_id == account_id))


async def create_password_reset(
    db: Database, email: str, ttl: timedelta = PASSWORD_RESET_TTL
) -> tuple[str, str] | None:
    """A one-time reset token for the account with this email: (account_id, token), or None
    when there is no such (usable) account. Only the token's sha256 is stored."""
    account = await get_account_by_email(db, email)
    if account is None or account["deleted"] or account["banned"]:
        return None
    token = secrets.token_urlsafe(32)
    async with db.begin() as conn:
        await conn.execute(
            password_resets.insert().values(
                hash=_sha256(token), account_id=account["account_id"], expire=_now() + ttl
            )
        )
    return str(account["account_id"]), token


async def redeem_password_reset(db: Database, token: object, password: str) -> str:
    """Set a new password with a reset token; the token is used up (also every other reset
    token of the account) and every session ends. Returns the account id."""
    check_new_password(password)
    invalid = AuthError(
        "this password reset link is not valid (unknown, already used or expired); "
        "request a new one"
    )
    if not isinstance(token, str) or not _SESSION_TOKEN.fullmatch(token):
        raise invalid
    password_hash = await asyncio.to_thread(hash_password, password)
    async with db.begin() as conn:
        row = (
            await conn.execute(
                password_resets.delete()
                .where(password_resets.c.hash == _sha256(token))
                .returning(password_resets.c.account_id, password_resets.c.expire)
            )
        ).first()
        if row is None or row.expire <= _now():
            raise invalid
        account_id = str(row.account_id)
        await conn.execute(
            password_resets.delete().where(password_resets.c.account_id == account_id)
        )
        await conn.execute(
            accounts.update()
            .where(accounts.c.account_id == account_id)
            .values(password_hash=password_hash)
        )
        await conn.execute(remember_me.delete().where(remember_me.c.account_id == account_id))
    return account_id


# --- admins ---------------------------------------------------------------------------------


async def ensure_admin(db: Database, email: str, password: str) -> str:
    """Make sure an admin account with this email exists; idempotent.

    A new account gets the password; an existing one keeps its password and gains the
    "admin" group (so restarting with the same variables changes nothing).
    """
    existing = await get_account_by_email(db, email)
    if existing is None:
        try:
            return await create_account(
                db, email=email, password=check_new_password(password), groups=["admin"]
            )
        except AccountExists:  # another process created it just now
            existing = await get_account_by_email(db, email)
            assert existing is not None
    groups = list(existing["groups"] or [])
    if "admin" not in groups:
        async with db.begin() as conn:
            await conn.execute(
                accounts.update()
                .where(accounts.c.account_id == existing["account_id"])
                .values(groups=[*groups, "admin"])
            )
    return str(existing["account_id"])


async def set_banned(db: Database, account_id: str, banned: bool) -> None:
    """Ban (and sign out everywhere) or unban an account."""
    async with db.begin() as conn:
        await conn.execute(
            accounts.update().where(accounts.c.account_id == account_id).values(banned=banned)
        )
        if banned:
            await conn.execute(remember_me.delete().where(remember_me.c.account_id == account_id))


# --- names and search -----------------------------------------------------------------------


async def touch_account(db: Database, account_id: str) -> None:
    async with db.begin() as conn:
        await conn.execute(
            accounts.update().where(accounts.c.account_id == account_id).values(last_active=_now())
        )


async def get_names(db: Database, account_ids: list[str]) -> dict[str, dict[str, str]]:
    """{account_id: {first_name, last_name}} for the accounts that exist and are not deleted."""
    if not account_ids:
        return {}
    query = sa.select(accounts.c.account_id, accounts.c.first_name, accounts.c.last_name).where(
        accounts.c.account_id.in_(account_ids), accounts.c.deleted.is_(False)
    )
    async with db.connect() as conn:
        return {
            str(r.account_id): {"first_name": r.first_name, "last_name": r.last_name}
            for r in await conn.execute(query)
        }


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def user_search(
    db: Database, query: str, *, limit: int = 20, admin: bool = False
) -> list[dict[str, Any]]:
    """Accounts matching ``query``: an exact email address, or words that start first or last
    names. Email addresses are shown only to admins, or for an exact email match."""
    query = query.strip().lower()
    if not query:
        return []
    columns = [
        accounts.c.account_id,
        accounts.c.first_name,
        accounts.c.last_name,
        accounts.c.email_address,
        accounts.c.last_active,
        accounts.c.created,
    ]
    base = sa.select(*columns).where(accounts.c.deleted.is_(False))
    results: dict[str, dict[str, Any]] = {}
    async with db.connect() as conn:
        if "@" in query:
            for row in await conn.execute(base.where(accounts.c.email_address == query)):
                results[str(row.account_id)] = dict(row._mapping)
        words = [w for w in query.replace("@", " ").split() if w][:5] if "@" not in query else []
        if admin and "@" in query:
            pattern = "%" + _escape_like(query) + "%"
            admin_query = base.where(accounts.c.email_address.like(pattern, escape="\\")).limit(
                limit
            )
            for row in await conn.execute(admin_query):
                results.setdefault(str(row.account_id), dict(row._mapping))
        if words:
            cond = sa.and_(
                *(
                    sa.or_(
                        sa.func.lower(accounts.c.first_name).like(
                            _escape_like(w) + "%", escape="\\"
                        ),
                        sa.func.lower(accounts.c.last_name).like(
                            _escape_like(w) + "%", escape="\\"
                        ),
                    )
                    for w in words
                )
            )
            ordered = base.where(cond).order_by(
                accounts.c.last_active.desc().nulls_last(), accounts.c.account_id
            )
            for row in await conn.execute(ordered.limit(limit)):
                results.setdefault(str(row.account_id), dict(row._mapping))
    found = list(results.values())[:limit]
    for item in found:
        if not admin and item["email_address"] != query:
            item.pop("email_address")
    return found
