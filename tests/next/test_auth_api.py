"""/api/v2 sign-up, sign-in and sign-out against a real server."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest

from tests.conftest import Server, sign_up


def post(server: Server, path: str, body: object, **kw: object) -> httpx.Response:
    return httpx.post(server.url + "/api/v2/" + path, json=body, **kw)  # type: ignore[arg-type]


def test_sign_up_sets_a_strict_http_only_cookie(server: Server) -> None:
    email = f"New-{uuid.uuid4().hex[:8]}@Example.com "
    r = post(server, "auth/sign-up", {"email": email, "password": "password123", "terms": True})
    assert r.status_code == 200, r.text
    uuid.UUID(r.json()["account_id"])
    header = r.headers["set-cookie"].lower()
    assert header.startswith("remember_me=")
    assert "httponly" in header and "samesite=strict" in header and "path=/" in header
    # the email was trimmed and lower-cased: signing in with the clean form works
    r2 = post(server, "auth/sign-in", {"email": email.strip().lower(), "password": "password123"})
    assert r2.status_code == 200 and r2.json()["account_id"] == r.json()["account_id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"email": "x@example.com", "password": "password123"}, "terms"),
        ({"email": "x@example.com", "password": "password123", "terms": "yes"}, "terms"),
        ({"email": "not-an-email", "password": "password123", "terms": True}, "email"),
        ({"email": "x@example.com", "password": "short", "terms": True}, "8 to 64"),
        ({"email": "x@example.com", "password": "p" * 65, "terms": True}, "8 to 64"),
        ({"email": ["x"], "password": "password123", "terms": True}, "email"),
        ({"password": "password123", "terms": True}, "email"),
    ],
)
def test_sign_up_rules(server: Server, body: dict, message: str) -> None:
    r = post(server, "auth/sign-up", body)
    assert r.status_code == 400
    assert message in r.json()["error"]


def test_duplicate_email_is_refused(server: Server) -> None:
    user = sign_up(server)
    r = post(
        server, "auth/sign-up", {"email": user.email, "password": "password123", "terms": True}
    )
    assert r.status_code == 400 and "already exists" in r.json()["error"]


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[1,2]", b'"string"', b"\xff\xfe", b"{" * 10_000]
)
def test_malformed_bodies_get_clear_errors(server: Server, raw: bytes) -> None:
    for path in ("auth/sign-up", "auth/sign-in"):
        r = httpx.post(server.url + "/api/v2/" + path, content=raw)
        assert r.status_code == 400, r.text
        assert r.json()["error"]


def test_oversized_body_is_refused(server: Server) -> None:
    r = httpx.post(server.url + "/api/v2/auth/sign-in", content=b"x" * 2_000_000)
    assert r.status_code == 413


def test_get_is_not_allowed(server: Server) -> None:
    r = httpx.get(server.url + "/api/v2/auth/sign-in?email=a&password=b")
    assert r.status_code == 405


def test_sign_in_failures(server: Server) -> None:
    user = sign_up(server)
    wrong = post(server, "auth/sign-in", {"email": user.email, "password": "wrong password"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    long = post(server, "auth/sign-in", {"email": user.email, "password": "p" * 65})
    assert long.status_code == 401
    unknown = post(server, "auth/sign-in", {"email": "nobody@example.com", "password": "password1"})
    assert unknown.status_code == 401


def test_sign_out_ends_the_session(server: Server) -> None:
    user = sign_up(server)
    cookies = {"remember_me": user.cookie}
    r = post(server, "accounts/sign-out", {}, cookies=cookies)
    assert r.status_code == 200
    assert (
        'remember_me=""' in r.headers["set-cookie"]
        or "max-age=0" in r.headers["set-cookie"].lower()
    )
    again = post(server, "accounts/sign-out", {}, cookies=cookies)
    assert again.status_code == 401  # the old cookie is signed out everywhere


def test_sign_out_all_sessions(server: Server) -> None:
    user = sign_up(server)
    second = post(server, "auth/sign-in", {"email": user.email, "password": user.password})
    other_cookie = second.cookies["remember_me"]
    r = post(server, "accounts/sign-out", {"all": True}, cookies={"remember_me": user.cookie})
    assert r.status_code == 200
    assert (
        post(server, "accounts/sign-out", {}, cookies={"remember_me": other_cookie}).status_code
        == 401
    )


def test_session_cookie_is_stored_only_as_a_hash(server: Server) -> None:
    import sqlalchemy as sa

    from cohub.db.engine import sync_url

    user = sign_up(server)
    engine = sa.create_engine(sync_url(server.db_url))
    try:
        with engine.connect() as conn:
            hashes = [row[0] for row in conn.execute(sa.text("SELECT hash FROM remember_me"))]
    finally:
        engine.dispose()
    assert user.cookie not in hashes
    assert hashlib.sha256(user.cookie.encode()).hexdigest() in hashes
