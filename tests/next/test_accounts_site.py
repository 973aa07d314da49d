"""Accounts on a server with a base path (/hub/), a first admin from the environment and a real
SMTP server on loopback: cookies, sign-up switches, throttling, password reset."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from cohub.db.engine import sync_url
from tests.next.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Site, api, new_email

COOKIE = "%2Fhubremember_me"


@pytest.fixture
def sql(site: Site) -> Iterator[sa.Engine]:
    engine = sa.create_engine(sync_url(site.server.db_url))
    try:
        yield engine
    finally:
        engine.dispose()


def _sign_up(site: Site, email: str | None = None, **extra: object) -> httpx.Response:
    body = {"email": email or new_email(), "password": "password123", "terms": True, **extra}
    return api(site.base, "auth/sign-up", body)


def test_remember_me_cookie_details(site: Site, sql: sa.Engine) -> None:
    r = _sign_up(site)
    assert r.status_code == 200, r.text
    header = r.headers["set-cookie"]
    assert header.startswith(COOKIE + "=")
    lower = header.lower()
    assert "httponly" in lower and "samesite=strict" in lower and "path=/hub/" in lower
    max_age = int(re.search(r"max-age=(\d+)", lower).group(1))  # type: ignore[union-attr]
    assert 180 * 86400 <= max_age <= 184 * 86400
    token = r.cookies[COOKIE]
    with sql.connect() as conn:
        expire = conn.execute(
            sa.text("SELECT expire FROM remember_me WHERE account_id = :a"),
            {"a": r.json()["account_id"]},
        ).scalar_one()
    expire = expire if isinstance(expire, datetime) else datetime.fromisoformat(expire)
    expire = expire.replace(tzinfo=UTC) if expire.tzinfo is None else expire
    assert timedelta(days=180) < expire - datetime.now(UTC) < timedelta(days=184)
    signed_in = api(site.base, "projects/get", {}, cookies={COOKIE: token})
    assert signed_in.status_code == 200
    # the unprefixed name means nothing on this server
    assert api(site.base, "projects/get", {}, cookies={"remember_me": token}).status_code == 401


@pytest.mark.parametrize("state", ["expired", "unknown", "malformed", "banned"])
def test_bad_sessions_are_signed_out(site: Site, sql: sa.Engine, state: str) -> None:
    r = _sign_up(site)
    token, account_id = r.cookies[COOKIE], r.json()["account_id"]
    with sql.begin() as conn:
        if state == "expired":
            conn.execute(
                sa.text("UPDATE remember_me SET expire = :t WHERE account_id = :a"),
                {"t": datetime.now(UTC) - timedelta(seconds=1), "a": account_id},
            )
        elif state == "banned":
            conn.execute(
                sa.text("UPDATE accounts SET banned = :b WHERE account_id = :a"),
                {"b": True, "a": account_id},
            )
    if state == "unknown":
        token = "A" * 43
    elif state == "malformed":
        token = "not a session token!"
    for path in ("projects/get", "api-keys", "accounts/sign-out"):
        r = api(site.base, path, {"action": "get"}, cookies={COOKIE: token})
        assert r.status_code == 401 and r.json() == {"error": "must be signed in"}, path
    page = httpx.get(site.base, cookies={COOKIE: token})
    assert "not signed in" in page.text


def test_sign_up_can_be_disabled_or_need_a_token(site: Site, sql: sa.Engine) -> None:
    def setting(value: str | None) -> None:
        with sql.begin() as conn:
            conn.execute(sa.text("DELETE FROM server_settings WHERE name = 'email_signup'"))
            if value is not None:
                conn.execute(
                    sa.text(
                        "INSERT INTO server_settings (name, value) VALUES ('email_signup', :v)"
                    ),
                    {"v": value},
                )

    setting("no")
    try:
        r = _sign_up(site)
        assert r.status_code == 403 and "sign-up is disabled" in r.json()["error"]
    finally:
        setting(None)
    with sql.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO registration_tokens (token, descr, "limit", counter, disabled) '
                "VALUES ('letmein', '', 1, 0, :f)"
            ),
            {"f": False},
        )
    try:
        r = _sign_up(site)
        assert r.status_code == 403 and "registration token" in r.json()["error"]
        r = _sign_up(site, registrationToken="wrong")
        assert r.status_code == 403 and "not valid" in r.json()["error"]
        assert _sign_up(site, registrationToken="letmein").status_code == 200
        # the token had one use: it is spent, and sign-up stays closed without a token
        r = _sign_up(site)
        assert r.status_code == 403 and "requires a registration token" in r.json()["error"]
        r = _sign_up(site, registrationToken="letmein")
        assert r.status_code == 403 and "used up" in r.json()["error"], r.text
    finally:
        with sql.begin() as conn:
            conn.execute(sa.text("DELETE FROM registration_tokens"))


def test_sign_in_failures_are_throttled_per_email(site: Site, sql: sa.Engine) -> None:
    email = new_email()
    assert _sign_up(site, email).status_code == 200
    try:
        for _ in range(5):
            r = api(site.base, "auth/sign-in", {"email": email, "password": "wrong password"})
            assert r.status_code == 401
        r = api(site.base, "auth/sign-in", {"email": email.upper(), "password": "password123"})
        assert r.status_code == 429 and "too many" in r.json()["error"]
        assert "a minute" in r.json()["error"]
        # another email from the same address is not affected (yet)
        other = new_email()
        _sign_up(site, other)
        assert (
            api(site.base, "auth/sign-in", {"email": other, "password": "password123"}).status_code
            == 200
        )
        # per IP: 30 failures a minute, whatever the emails
        for i in range(30 - 5):
            api(site.base, "auth/sign-in", {"email": f"x{i}@example.com", "password": "password1"})
        r = api(site.base, "auth/sign-in", {"email": other, "password": "password123"})
        assert r.status_code == 429 and "IP address" in r.json()["error"]
    finally:
        with sql.begin() as conn:
            conn.execute(sa.text("DELETE FROM auth_attempts"))


def test_password_reset_by_email(site: Site) -> None:
    email = new_email()
    old = _sign_up(site, email)
    old_cookie = old.cookies[COOKIE]
    before = len(site.mailbox.messages)
    r = api(site.base, "auth/password-reset", {"email": email})
    assert r.status_code == 200 and "on its way" in r.json()["success"]
    assert len(site.mailbox.messages) == before + 1
    mail = site.mailbox.messages[-1]
    assert mail["To"] == email
    text = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert f"{site.base}auth/password-reset#" in text
    token = re.search(r"#([A-Za-z0-9_-]+)", text).group(1)  # type: ignore[union-attr]
    # no email for unknown accounts, and the same answer
    r2 = api(site.base, "auth/password-reset", {"email": new_email()})
    assert r2.json()["success"].endswith("on its way") and len(site.mailbox.messages) == before + 1
    # asking again at once is throttled
    assert api(site.base, "auth/password-reset", {"email": email}).status_code == 429
    r = api(site.base, "auth/redeem-password-reset", {"passwordResetId": token, "password": "x"})
    assert r.status_code == 400 and "8 to 64" in r.json()["error"]
    r = api(
        site.base,
        "auth/redeem-password-reset",
        {"passwordResetId": token, "password": "a new password"},
    )
    assert r.status_code == 200 and r.json()["account_id"] == old.json()["account_id"]
    assert COOKIE in r.cookies
    again = api(
        site.base,
        "auth/redeem-password-reset",
        {"passwordResetId": token, "password": "another one"},
    )
    assert again.status_code == 400 and "not valid" in again.json()["error"]
    assert api(site.base, "projects/get", {}, cookies={COOKIE: old_cookie}).status_code == 401
    ok = api(site.base, "auth/sign-in", {"email": email, "password": "a new password"})
    assert ok.status_code == 200


def test_first_admin_from_the_environment(site: Site) -> None:
    r = api(site.base, "auth/sign-in", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    admin = {COOKIE: r.cookies[COOKIE]}
    someone = _sign_up(site)
    # only an admin may list another account's projects
    r = api(site.base, "projects/get", {"account_id": someone.json()["account_id"]}, cookies=admin)
    assert r.status_code == 200
    r = api(
        site.base,
        "projects/get",
        {"account_id": r.request and someone.json()["account_id"]},
        cookies={COOKIE: someone.cookies[COOKIE]},
    )
    assert r.status_code == 200  # one's own id is fine
    other = _sign_up(site)
    r = api(
        site.base,
        "projects/get",
        {"account_id": other.json()["account_id"]},
        cookies={COOKIE: someone.cookies[COOKIE]},
    )
    assert r.status_code == 403 and "admin" in r.json()["error"]


def test_invite_collaborator_sends_an_email(site: Site) -> None:
    owner, invitee = _sign_up(site), _sign_up(site)
    cookie = {COOKIE: owner.cookies[COOKIE]}
    pid = api(site.base, "projects/create", {"title": "Invited"}, cookies=cookie).json()[
        "project_id"
    ]
    key = api(site.base, "api-keys", {"action": "create"}, cookies=cookie).json()["response"][0][
        "secret"
    ]
    before = len(site.mailbox.messages)
    r = api(
        site.base,
        "api/conat/hub",
        {
            "name": "projects.inviteCollaborator",
            "args": [{"project_id": pid, "account_id": invitee.json()["account_id"]}],
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200 and r.json() == {"added": True, "email": "sent"}, r.text
    assert len(site.mailbox.messages) == before + 1
    mail = site.mailbox.messages[-1]
    assert "Invited" in mail["Subject"]
    assert f"{site.base}projects/{pid}" in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    listed = api(site.base, "projects/collaborators/list", {"project_id": pid}, cookies=cookie)
    assert invitee.json()["account_id"] in [c["account_id"] for c in listed.json()]
