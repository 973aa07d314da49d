"""Throttling, password resets, registration tokens, the first admin and API key management."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cohub.db import accounts as acc
from cohub.db import api_keys as keys
from cohub.db import settings as site
from cohub.db import throttle
from cohub.db.engine import Database
from cohub.db.errors import AccountExists, AuthError, NotFound
from cohub.db.models import auth_attempts, password_resets
from cohub.db.projects import create_project, mark_deleted


async def test_sign_in_throttle_per_email_minute(db: Database) -> None:
    for _ in range(5):
        await throttle.check(db, "email", "a@x.org", throttle.SIGN_IN_EMAIL, "email address")
        await throttle.record(db, "email", "a@x.org", throttle.SIGN_IN_EMAIL)
    with pytest.raises(throttle.TooManyAttempts, match="5 failures in a minute"):
        await throttle.check(db, "email", "a@x.org", throttle.SIGN_IN_EMAIL, "email address")
    # other keys and kinds are not affected
    await throttle.check(db, "email", "b@x.org", throttle.SIGN_IN_EMAIL, "email address")
    await throttle.check(db, "ip", "a@x.org", throttle.SIGN_IN_IP, "IP address")


async def _backdate(db: Database, minutes: float) -> None:
    async with db.begin() as conn:
        rows = (await conn.execute(sa.select(auth_attempts.c.id, auth_attempts.c.time))).all()
        for row in rows:
            await conn.execute(
                auth_attempts.update()
                .where(auth_attempts.c.id == row.id)
                .values(time=row.time - timedelta(minutes=minutes))
            )


async def test_sign_in_throttle_per_email_hour_and_window(db: Database) -> None:
    for _ in range(5):
        await throttle.record(db, "email", "a@x.org", throttle.SIGN_IN_EMAIL)
    await _backdate(db, 2)  # out of the minute window, still inside the hour
    await throttle.check(db, "email", "a@x.org", throttle.SIGN_IN_EMAIL, "email address")
    async with db.begin() as conn:
        now = datetime.now(UTC) - timedelta(minutes=5)
        await conn.execute(
            auth_attempts.insert(),
            [{"kind": "email", "key": "a@x.org", "time": now, "expire": now} for _ in range(45)],
        )
    with pytest.raises(throttle.TooManyAttempts, match="50 failures in an hour"):
        await throttle.check(db, "email", "a@x.org", throttle.SIGN_IN_EMAIL, "email address")


async def test_sign_in_throttle_per_ip(db: Database) -> None:
    for _ in range(30):
        await throttle.record(db, "ip", "10.0.0.1", throttle.SIGN_IN_IP)
    with pytest.raises(throttle.TooManyAttempts, match="30 failures in a minute"):
        await throttle.check(db, "ip", "10.0.0.1", throttle.SIGN_IN_IP, "IP address")
    await _backdate(db, 61)  # older than every window: forgotten, and trimmed on record
    await throttle.check(db, "ip", "10.0.0.1", throttle.SIGN_IN_IP, "IP address")
    await throttle.record(db, "ip", "10.0.0.1", throttle.SIGN_IN_IP)
    async with db.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(auth_attempts)) == 1


async def test_ip_hour_limit(db: Database) -> None:
    async with db.begin() as conn:
        t = datetime.now(UTC) - timedelta(minutes=10)
        await conn.execute(
            auth_attempts.insert(),
            [{"kind": "ip", "key": "10.0.0.2", "time": t, "expire": t} for _ in range(200)],
        )
    with pytest.raises(throttle.TooManyAttempts, match="200 failures in an hour"):
        await throttle.check(db, "ip", "10.0.0.2", throttle.SIGN_IN_IP, "IP address")


EMAIL_KEY = throttle.Key("email", "a@x.org", throttle.SIGN_IN_EMAIL, "email address")


async def test_attempt_counts_first_and_refuses_the_sixth(db: Database) -> None:
    for _ in range(5):
        await throttle.attempt(db, EMAIL_KEY)
    with pytest.raises(throttle.TooManyAttempts, match="5 failures in a minute"):
        await throttle.attempt(db, EMAIL_KEY)
    # the refused attempt took its row back: still five
    async with db.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(auth_attempts)) == 5
    await throttle.attempt(db, throttle.Key("email", "b@x.org", throttle.SIGN_IN_EMAIL, "e"))


async def test_forgotten_attempts_do_not_count(db: Database) -> None:
    for _ in range(10):  # e.g. ten correct sign-ins
        await throttle.forget(db, await throttle.attempt(db, EMAIL_KEY))
    await throttle.attempt(db, EMAIL_KEY)


async def test_a_refusal_on_one_key_counts_on_none(db: Database) -> None:
    ip = throttle.Key("ip", "10.0.0.9", throttle.SIGN_IN_IP, "IP address")
    for _ in range(5):
        await throttle.attempt(db, EMAIL_KEY, ip)
    with pytest.raises(throttle.TooManyAttempts, match="email address"):
        await throttle.attempt(db, EMAIL_KEY, ip)
    async with db.connect() as conn:
        count = sa.select(sa.func.count()).select_from(auth_attempts)
        assert await conn.scalar(count.where(auth_attempts.c.kind == "ip")) == 5


async def test_concurrent_attempts_from_several_hubs(migrated_url: str) -> None:
    """Four engines stand for four hub replicas on one database; of 20 attempts at once
    exactly 5 get through (check-then-record let all 20 through)."""
    hubs = [Database(migrated_url) for _ in range(4)]
    try:

        async def one(i: int) -> bool:
            try:
                ids = await throttle.attempt(hubs[i % 4], EMAIL_KEY)
            except throttle.TooManyAttempts:
                return False
            await asyncio.sleep(0.05)  # the password check; nothing is taken back (a failure)
            return bool(ids)

        passed = await asyncio.gather(*(one(i) for i in range(20)))
    finally:
        for hub in hubs:
            await hub.close()
    assert sum(passed) == 5, passed  # and no more refused than needed


async def test_password_reset_is_one_time(db: Database, account_id: str) -> None:
    session = await acc.create_session(db, account_id)
    created = await acc.create_password_reset(db, "OWNER@example.com ")
    assert created is not None
    found, token = created
    assert found == account_id
    async with db.connect() as conn:
        stored = await conn.scalar(sa.select(password_resets.c.hash))
    assert stored != token and len(stored) == 64  # only a hash is stored
    assert await acc.redeem_password_reset(db, token, "brand new password") == account_id
    assert await acc.authenticate(db, "owner@example.com", "brand new password") == account_id
    assert await acc.account_for_session(db, session) is None  # every session ended
    with pytest.raises(AuthError, match="not valid"):
        await acc.redeem_password_reset(db, token, "another password")


async def test_password_reset_expires_and_checks_input(db: Database, account_id: str) -> None:
    assert await acc.create_password_reset(db, "nobody@example.com") is None
    created = await acc.create_password_reset(db, "owner@example.com", ttl=timedelta(seconds=-1))
    assert created is not None
    with pytest.raises(AuthError, match="expired"):
        await acc.redeem_password_reset(db, created[1], "brand new password")
    ok = await acc.create_password_reset(db, "owner@example.com")
    assert ok is not None
    with pytest.raises(ValueError, match="8 to 64"):
        await acc.redeem_password_reset(db, ok[1], "short")
    for junk in ("", "x", None, 5, "a" * 500, "../../etc"):
        with pytest.raises(AuthError):
            await acc.redeem_password_reset(db, junk, "brand new password")
    await acc.set_banned(db, account_id, True)
    assert await acc.create_password_reset(db, "owner@example.com") is None


async def test_first_admin_is_idempotent(db: Database) -> None:
    first = await acc.ensure_admin(db, "Admin@Example.com", "admin password")
    again = await acc.ensure_admin(db, "admin@example.com", "a different password")
    assert first == again
    assert await acc.is_admin(db, first)
    # the password given the second time did not replace the first one
    assert await acc.authenticate(db, "admin@example.com", "admin password") == first
    # an existing non-admin account gains the admin group, keeping its password
    user = await acc.create_account(db, email="u@example.com", password="user password")
    assert await acc.ensure_admin(db, "u@example.com", "ignored password") == user
    assert await acc.is_admin(db, user)
    with pytest.raises(ValueError):
        await acc.ensure_admin(db, "new@example.com", "short")


async def test_registration_tokens(db: Database) -> None:
    assert not await site.token_required(db)
    await site.create_registration_token(db, "tok", limit=1)
    await site.create_registration_token(db, "old", expire=datetime.now(UTC) - timedelta(days=1))
    assert await site.token_required(db)
    with pytest.raises(site.RegistrationTokenError, match="token expired on"):
        await acc.create_account(
            db, email="a@x.org", password="password1", registration_token="old"
        )
    with pytest.raises(site.RegistrationTokenError, match="no such token"):
        await acc.create_account(db, email="a@x.org", password="password1", registration_token="no")
    await acc.create_account(db, email="a@x.org", password="password1", registration_token="tok")
    assert (await site.registration_token_info(db, "tok"))["counter"] == 1
    # used up: and the failed sign-up below does not create the account
    with pytest.raises(site.RegistrationTokenError, match="used up"):
        await acc.create_account(
            db, email="b@x.org", password="password1", registration_token="tok"
        )
    assert await acc.get_account_by_email(db, "b@x.org") is None
    # every token is used up or expired: a token is still required (the gate stays shut)
    assert await site.token_required(db)
    # a duplicate email does not spend a token
    await site.create_registration_token(db, "two")
    with pytest.raises(AccountExists):
        await acc.create_account(
            db, email="a@x.org", password="password1", registration_token="two"
        )
    assert (await site.registration_token_info(db, "two"))["counter"] == 0
    await site.disable_registration_token(db, "two")
    with pytest.raises(site.RegistrationTokenError, match="disabled"):
        await acc.create_account(
            db, email="c@x.org", password="password1", registration_token="two"
        )
    assert await site.token_required(db)  # "tok" and "old" are not disabled
    await site.disable_registration_token(db, "tok")
    await site.disable_registration_token(db, "old")
    assert not await site.token_required(db)  # only disabled tokens left: sign-up is open


async def test_sign_up_switch(db: Database) -> None:
    assert await site.sign_up_enabled(db)
    await site.set_setting(db, "email_signup", "no")
    assert not await site.sign_up_enabled(db)
    await site.set_setting(db, "email_signup", None)
    assert await site.sign_up_enabled(db)


async def test_api_key_management(db: Database, account_id: str) -> None:
    other = await acc.create_account(db, email="other@example.com", password="password1")
    key = await keys.create_api_key(db, account_id, name="a")
    key_id = keys.key_id_of(key)
    assert key_id is not None
    (listed,) = await keys.list_api_keys(db, account_id)
    assert listed["id"] == key_id and "hash" not in listed
    assert await keys.list_api_keys(db, other) == []
    with pytest.raises(NotFound):
        await keys.delete_api_key(db, other, key_id)
    with pytest.raises(NotFound):
        await keys.edit_api_key(db, other, key_id, name="mine now")
    past = datetime.now(UTC) - timedelta(seconds=1)
    await keys.edit_api_key(db, account_id, key_id, expire=past)
    assert await keys.account_or_project_for_api_key(db, key) is None  # expired: deleted
    assert await keys.list_api_keys(db, account_id) == []


async def test_project_key_of_deleted_project(db: Database, account_id: str) -> None:
    project_id = await create_project(db, owner_id=account_id, title="p")
    key = await keys.create_api_key(db, account_id, project_id=project_id)
    assert await keys.account_or_project_for_api_key(db, key) == ("project", project_id)
    await mark_deleted(db, project_id)
    assert await keys.account_or_project_for_api_key(db, key) is None
