from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cohub.db import accounts as acc
from cohub.db import api_keys as keys
from cohub.db.engine import Database
from cohub.db.errors import AccountExists, AuthError, PermissionDenied
from cohub.db.models import accounts, api_keys, remember_me
from cohub.db.projects import add_collaborator, create_project, remove_collaborator

# Produced by node: crypto.createHmac("sha512", salt) applied 1000 times, as the
# `password-hash` npm module does; this is the format of a migrated reference database.
NODE_LEGACY_HASH = (
    "sha512$Xy9aB2$1000$e4c20b2ff366dfcca77eedfdfffa795d66404187b8189e62cfd24570714a7438"
    "ffd6c59d87c1c94c0da28534a8967cf56531dd4819ab3883a76fcbceb8e64a5a"
)


def legacy_hash(password: str, salt: str, iterations: int = 1000) -> str:
    digest = password
    for _ in range(iterations):
        digest = hmac.new(salt.encode(), digest.encode(), hashlib.sha512).hexdigest()
    return f"sha512${salt}${iterations}${digest}"


async def _set(db: Database, account_id: str, **values: object) -> None:
    async with db.begin() as conn:
        await conn.execute(
            accounts.update().where(accounts.c.account_id == account_id).values(**values)
        )


async def _password_hash(db: Database, account_id: str) -> str:
    async with db.connect() as conn:
        return str(
            await conn.scalar(
                sa.select(accounts.c.password_hash).where(accounts.c.account_id == account_id)
            )
        )


# --- passwords ---------------------------------------------------------------------------


def test_argon2_roundtrip() -> None:
    stored = acc.hash_password("s3cret-pass")
    assert stored.startswith("$argon2id$")
    assert acc.verify_password("s3cret-pass", stored)
    assert not acc.verify_password("s3cret-pasS", stored)
    assert not acc.needs_rehash(stored)


def test_legacy_hash_from_node_verifies() -> None:
    assert acc.verify_password("correct horse", NODE_LEGACY_HASH)
    assert not acc.verify_password("correct horsE", NODE_LEGACY_HASH)
    assert acc.needs_rehash(NODE_LEGACY_HASH)
    assert legacy_hash("correct horse", "Xy9aB2") == NODE_LEGACY_HASH


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "garbage",
        "$argon2id$broken",
        "sha512$salt$notanumber$abc",
        "sha512$salt$0$abc",
        "nosuchalgo$salt$1$abc",
        "sha512$salt$99999999$abc",  # would stall sign-in
    ],
)
def test_malformed_stored_hashes_do_not_verify(stored: str | None) -> None:
    assert not acc.verify_password("whatever", stored)


# --- accounts ----------------------------------------------------------------------------


async def test_duplicate_email_is_refused_case_insensitively(db: Database) -> None:
    account_id = await acc.create_account(db, email=" Alice@Example.COM ", password="pw123456")
    with pytest.raises(AccountExists, match="already exists"):
        await acc.create_account(db, email="alice@example.com", password="other-pw")
    account = await acc.get_account_by_email(db, "ALICE@example.com  ")
    assert account is not None
    assert account["account_id"] == account_id
    assert account["email_address"] == "alice@example.com"
    assert "password_hash" not in account
    assert account["groups"] == []
    assert account["created"].tzinfo is not None


async def test_get_account_unknown(db: Database) -> None:
    assert await acc.get_account(db, "00000000-0000-0000-0000-000000000000") is None
    assert await acc.get_account_by_email(db, "nobody@example.com") is None


async def test_authenticate(db: Database) -> None:
    account_id = await acc.create_account(db, email="bob@example.com", password="right-password")
    assert await acc.authenticate(db, "  BOB@example.com", "right-password") == account_id
    account = await acc.get_account(db, account_id)
    assert account is not None and account["last_active"] is not None
    with pytest.raises(AuthError, match="incorrect email address or password"):
        await acc.authenticate(db, "bob@example.com", "wrong-password")
    with pytest.raises(AuthError, match="incorrect email address or password"):
        await acc.authenticate(db, "nobody@example.com", "right-password")
    with pytest.raises(AuthError, match="at most 64"):
        await acc.authenticate(db, "bob@example.com", "x" * 65)


async def test_banned_account_cannot_sign_in(db: Database, account_id: str) -> None:
    await _set(db, account_id, banned=True)
    with pytest.raises(AuthError, match="account is banned"):
        await acc.authenticate(db, "owner@example.com", "owner-password")


async def test_deleted_account_cannot_sign_in(db: Database, account_id: str) -> None:
    await _set(db, account_id, deleted=True)
    with pytest.raises(AuthError):
        await acc.authenticate(db, "owner@example.com", "owner-password")


async def test_legacy_hash_is_rehashed_on_sign_in(db: Database) -> None:
    account_id = await acc.create_account(db, email="old@example.com", password=None)
    await _set(db, account_id, password_hash=legacy_hash("from-2015", "aB3dE5fG"))

    assert await acc.authenticate(db, "old@example.com", "from-2015") == account_id

    stored = await _password_hash(db, account_id)
    assert stored.startswith("$argon2id$")
    assert await acc.authenticate(db, "old@example.com", "from-2015") == account_id


async def test_wrong_password_keeps_legacy_hash(db: Database) -> None:
    account_id = await acc.create_account(db, email="old@example.com", password=None)
    await _set(db, account_id, password_hash=NODE_LEGACY_HASH)
    with pytest.raises(AuthError):
        await acc.authenticate(db, "old@example.com", "not it")
    assert await _password_hash(db, account_id) == NODE_LEGACY_HASH


async def test_is_admin(db: Database, account_id: str) -> None:
    admin_id = await acc.create_account(
        db, email="root@example.com", password="pw123456", groups=["admin"]
    )
    assert await acc.is_admin(db, admin_id)
    assert not await acc.is_admin(db, account_id)
    assert not await acc.is_admin(db, "00000000-0000-0000-0000-000000000000")
    await _set(db, admin_id, banned=True)
    assert not await acc.is_admin(db, admin_id)


# --- sessions ----------------------------------------------------------------------------


async def test_session_roundtrip_stores_only_a_hash(db: Database, account_id: str) -> None:
    token = await acc.create_session(db, account_id)
    assert await acc.account_for_session(db, token) == account_id
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(remember_me))).one()
    assert row.hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in row.hash
    assert timedelta(days=182) < row.expire - datetime.now(UTC) <= timedelta(days=183)


@pytest.mark.parametrize(
    "token", ["", "short", "has spaces in it and is long enough", "é" * 40, "a" * 5000, None, 42]
)
async def test_malformed_session_tokens(db: Database, account_id: str, token: object) -> None:
    await acc.create_session(db, account_id)
    assert await acc.account_for_session(db, token) is None  # type: ignore[arg-type]


async def test_unknown_session(db: Database) -> None:
    assert await acc.account_for_session(db, "A" * 43) is None


async def test_expired_session_is_signed_out_and_removed(db: Database, account_id: str) -> None:
    token = await acc.create_session(db, account_id, ttl=timedelta(seconds=-1))
    assert await acc.account_for_session(db, token) is None
    async with db.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(remember_me)) == 0


@pytest.mark.parametrize("flag", ["banned", "deleted"])
async def test_session_of_banned_or_deleted_account(
    db: Database, account_id: str, flag: str
) -> None:
    token = await acc.create_session(db, account_id)
    await _set(db, account_id, **{flag: True})
    assert await acc.account_for_session(db, token) is None


async def test_delete_sessions(db: Database, account_id: str) -> None:
    first, second, third = [await acc.create_session(db, account_id) for _ in range(3)]
    await acc.delete_session(db, first)
    assert await acc.account_for_session(db, first) is None
    assert await acc.account_for_session(db, second) == account_id
    await acc.delete_all_sessions(db, account_id)
    assert await acc.account_for_session(db, second) is None
    assert await acc.account_for_session(db, third) is None


# --- API keys ----------------------------------------------------------------------------


async def test_account_api_key(db: Database, account_id: str) -> None:
    key = await keys.create_api_key(db, account_id, name="laptop")
    assert re.fullmatch(r"sk-[0-9A-Za-z]{24}[0-9A-Za-z]{6}", key)
    assert await keys.account_or_project_for_api_key(db, key) == ("account", account_id)
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(api_keys))).one()
    assert row.hash == hashlib.sha256(key.encode()).hexdigest()
    assert row.trunc == f"sk-…{key[-6:]}"
    assert row.name == "laptop"
    assert row.last_active is not None


async def test_api_key_with_wrong_secret_part(db: Database, account_id: str) -> None:
    key = await keys.create_api_key(db, account_id)
    forged = "sk-" + ("A" if key[3] != "A" else "B") + key[4:]
    assert await keys.account_or_project_for_api_key(db, forged) is None
    for junk in ["", "sk-", key + "x", key[:-1], "pk-" + key[3:]]:
        assert await keys.account_or_project_for_api_key(db, junk) is None
    assert await keys.account_or_project_for_api_key(db, key) == ("account", account_id)


async def test_expired_api_key_is_rejected_and_deleted(db: Database, account_id: str) -> None:
    key = await keys.create_api_key(db, account_id, expire=datetime.now(UTC) - timedelta(minutes=1))
    assert await keys.account_or_project_for_api_key(db, key) is None
    async with db.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(api_keys)) == 0


async def test_api_key_of_banned_account(db: Database, account_id: str) -> None:
    key = await keys.create_api_key(db, account_id)
    await _set(db, account_id, banned=True)
    assert await keys.account_or_project_for_api_key(db, key) is None


async def test_project_api_key(db: Database, account_id: str) -> None:
    project_id = await create_project(db, owner_id=account_id, title="p")
    other = await acc.create_account(db, email="collab@example.com", password="pw123456")
    await add_collaborator(db, project_id, other)
    key = await keys.create_api_key(db, other, project_id=project_id)
    assert await keys.account_or_project_for_api_key(db, key) == ("project", project_id)

    await remove_collaborator(db, project_id, other)

    assert await keys.account_or_project_for_api_key(db, key) is None
    async with db.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(api_keys)) == 0


async def test_project_api_key_needs_collaborator(db: Database, account_id: str) -> None:
    project_id = await create_project(db, owner_id=account_id, title="p")
    viewer = await acc.create_account(db, email="viewer@example.com", password="pw123456")
    await add_collaborator(db, project_id, viewer, group="viewer")
    with pytest.raises(PermissionDenied):
        await keys.create_api_key(db, viewer, project_id=project_id)
