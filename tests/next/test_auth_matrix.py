"""Every /api/v2 endpoint with every kind of caller: nobody gets what they should not.

Expected outcomes: "ok" (200), "run" (passed every check and then ran, or got the honest 503
of a project that is not running), or an error status. A denied call's body is exactly
{"error": ...}: never project data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cohub.db.engine import sync_url
from tests.next.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Site, api, bearer, new_email

COOKIE = "%2Fhubremember_me"
TITLE = "matrix-secret-title"
IDENTITIES = (
    "none",
    "stranger",
    "viewer",
    "collaborator",
    "owner",
    "admin",
    "banned",
    "expired",
    "project_key",
    "revoked_key",
)


@dataclass
class World:
    site: Site
    pid: str
    owner_id: str
    outsider_id: str  # an account on no project
    owner_key_id: int  # an API key of the owner's
    outsider_key_id: int  # an API key of the outsider's
    auth: dict[str, dict[str, Any]]  # identity -> httpx kwargs (cookies / headers)


def _account(site: Site) -> tuple[str, str]:
    r = api(
        site.base, "auth/sign-up", {"email": new_email(), "password": "password123", "terms": True}
    )
    assert r.status_code == 200, r.text
    return r.json()["account_id"], r.cookies[COOKIE]


@pytest.fixture(scope="module")
def world(site: Site) -> Iterator[World]:
    owner, owner_cookie = _account(site)
    collab, collab_cookie = _account(site)
    viewer, viewer_cookie = _account(site)
    _stranger, stranger_cookie = _account(site)
    banned, banned_cookie = _account(site)
    outsider, outsider_cookie = _account(site)
    admin = api(site.base, "auth/sign-in", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert admin.status_code == 200, admin.text
    as_owner = {"cookies": {COOKIE: owner_cookie}}
    pid = api(site.base, "projects/create", {"title": TITLE}, **as_owner).json()["project_id"]
    for member in (collab, banned):
        r = api(
            site.base,
            "projects/collaborators/add",
            {"project_id": pid, "account_id": member},
            **as_owner,
        )
        assert r.status_code == 200, r.text
    key = api(site.base, "api-keys", {"action": "create", "project_id": pid}, **as_owner)
    project_key = key.json()["response"][0]["secret"]
    revoked = api(site.base, "api-keys", {"action": "create", "name": "revoked"}, **as_owner)
    revoked_key, revoked_id = (revoked.json()["response"][0][k] for k in ("secret", "id"))
    assert (
        api(site.base, "api-keys", {"action": "delete", "id": revoked_id}, **as_owner).status_code
        == 200
    )
    owner_key_id = api(site.base, "api-keys", {"action": "create", "name": "kept"}, **as_owner)
    outsider_key_id = api(
        site.base,
        "api-keys",
        {"action": "create", "name": "outsider's"},
        cookies={COOKIE: outsider_cookie},
    )
    owner_key_id, outsider_key_id = (
        r.json()["response"][0]["id"] for r in (owner_key_id, outsider_key_id)
    )
    # a second session of the collaborator, then expired
    expired = api(site.base, "auth/sign-in", {"email": "x", "password": "y"})  # noise
    assert expired.status_code == 401
    engine = sa.create_engine(sync_url(site.server.db_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    'INSERT INTO project_users (project_id, account_id, "group") '
                    "VALUES (:p, :a, 'viewer')"
                ),
                {"p": pid, "a": viewer},
            )
            conn.execute(
                sa.text("UPDATE accounts SET banned = :t WHERE account_id = :a"),
                {"t": True, "a": banned},
            )
            conn.execute(sa.text("DELETE FROM auth_attempts"))
        collab_email = None
        with engine.connect() as conn:
            collab_email = conn.execute(
                sa.text("SELECT email_address FROM accounts WHERE account_id = :a"), {"a": collab}
            ).scalar_one()
        second = api(site.base, "auth/sign-in", {"email": collab_email, "password": "password123"})
        expired_cookie = second.cookies[COOKIE]
        import hashlib

        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE remember_me SET expire = :t WHERE hash = :h"),
                {
                    "t": datetime.now(UTC) - timedelta(minutes=1),
                    "h": hashlib.sha256(expired_cookie.encode()).hexdigest(),
                },
            )
    finally:
        engine.dispose()
    auth: dict[str, dict[str, Any]] = {
        "none": {},
        "stranger": {"cookies": {COOKIE: stranger_cookie}},
        "viewer": {"cookies": {COOKIE: viewer_cookie}},
        "collaborator": {"cookies": {COOKIE: collab_cookie}},
        "owner": as_owner,
        "admin": {"cookies": {COOKIE: admin.cookies[COOKIE]}},
        "banned": {"cookies": {COOKIE: banned_cookie}},
        "expired": {"cookies": {COOKIE: expired_cookie}},
        "project_key": {"headers": bearer(project_key)},
        "revoked_key": {"headers": bearer(revoked_key)},
    }
    yield World(site, pid, owner, outsider, owner_key_id, outsider_key_id, auth)


# identity order: none stranger viewer collaborator owner admin banned expired project_key revoked
def _row(*outcomes: str | int) -> dict[str, str | int]:
    assert len(outcomes) == len(IDENTITIES)
    return dict(zip(IDENTITIES, outcomes, strict=True))


U = 401
MATRIX: list[tuple[str, str, dict[str, Any], dict[str, str | int]]] = [
    (
        "get",
        "projects/get",
        {"project_id": "{pid}"},
        _row(U, 403, "ok", "ok", "ok", "ok", U, U, "ok", U),
    ),
    (
        "list",
        "projects/collaborators/list",
        {"project_id": "{pid}"},
        _row(U, 403, "ok", "ok", "ok", "ok", U, U, "ok", U),
    ),
    (
        "start",
        "projects/start",
        {"project_id": "{pid}"},
        _row(U, 403, 403, "run", "run", "run", U, U, "run", U),
    ),
    (
        "stop",
        "projects/stop",
        {"project_id": "{pid}"},
        _row(U, 403, 403, "ok", "ok", "ok", U, U, "ok", U),
    ),
    (
        "exec",
        "exec",
        {"project_id": "{pid}", "command": "id"},
        _row(U, 403, 403, "run", "run", "run", U, U, "run", U),
    ),
    (
        "write",
        "projects/write-text-file",
        {"project_id": "{pid}", "path": "a", "content": "x"},
        _row(U, 403, 403, "run", "run", "run", U, U, "run", U),
    ),
    (
        "add",
        "projects/collaborators/add",
        {"project_id": "{pid}", "account_id": "{owner}"},
        _row(U, 403, 403, "ok", "ok", "ok", U, U, 403, U),
    ),
    (
        "remove",
        "projects/collaborators/remove",
        {"project_id": "{pid}", "account_id": "{outsider}"},
        _row(U, 403, 403, 404, 404, 404, U, U, 403, U),
    ),
    (
        "remove-owner",
        "projects/collaborators/remove",
        {"project_id": "{pid}", "account_id": "{owner}"},
        _row(U, 403, 403, 403, 403, 403, U, U, 403, U),
    ),
    ("keys", "api-keys", {"action": "get"}, _row(U, "ok", "ok", "ok", "ok", "ok", U, U, 403, U)),
    (
        "project-keys",
        "api-keys",
        {"action": "get", "project_id": "{pid}"},
        _row(U, 403, 403, "ok", "ok", "ok", U, U, 403, U),
    ),
    (
        "create",
        "projects/create",
        {"title": "t"},
        _row(U, "ok", "ok", "ok", "ok", "ok", U, U, 403, U),
    ),
    ("mine", "projects/get", {}, _row(U, "ok", "ok", "ok", "ok", "ok", U, U, "ok", U)),
    (
        "key-create",
        "api-keys",
        {"action": "create", "name": "matrix"},
        _row(U, "ok", "ok", "ok", "ok", "ok", U, U, 403, U),
    ),
    (
        "key-edit-owners",
        "api-keys",
        {"action": "edit", "id": "{owner_key}", "name": "renamed"},
        _row(U, 404, 404, 404, "ok", 404, U, U, 403, U),
    ),
    (
        "key-delete-outsiders",
        "api-keys",
        {"action": "delete", "id": "{outsider_key}"},
        _row(U, 404, 404, 404, 404, 404, U, U, 403, U),
    ),
    (
        "bridge",
        "api/conat/hub",
        {"name": "projects.state", "args": [{"project_id": "{pid}"}]},
        _row(U, U, U, U, U, U, U, U, "ok", U),
    ),
    (
        "other-account",
        "projects/get",
        {"account_id": "{owner}"},
        _row(U, 403, 403, 403, "ok", "ok", U, U, "ok", U),
    ),
]


def _fill(value: Any, world: World) -> Any:
    if isinstance(value, str):
        if value in ("{owner_key}", "{outsider_key}"):
            return world.owner_key_id if value == "{owner_key}" else world.outsider_key_id
        return value.format(pid=world.pid, owner=world.owner_id, outsider=world.outsider_id)
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, world) for v in value]
    return value


@pytest.mark.parametrize(("name", "path", "body", "expected"), MATRIX, ids=[m[0] for m in MATRIX])
def test_matrix(world: World, name: str, path: str, body: dict, expected: dict) -> None:
    failures = []
    for identity in IDENTITIES:
        r = api(world.site.base, path, _fill(body, world), **world.auth[identity])
        want = expected[identity]
        data = r.json()
        if want == "ok":
            good = r.status_code == 200
        elif want == "run":
            error = data.get("error", "")
            good = r.status_code == 200 or (
                r.status_code == 503 and ("not running" in error or "project runner" in error)
            )
        else:
            good = r.status_code == want
            good = good and set(data) == {"error"} and TITLE not in r.text
            if want == 401:
                good = (good and data["error"].startswith("must be signed in")) or (
                    good and "API key" in data["error"]
                )
        if not good:
            failures.append(f"{identity}: wanted {want}, got {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


def test_keys_survive_everyone_but_their_owner(world: World) -> None:
    """After the matrix: the outsider's key is still there, the owner's renamed only by him."""
    base = world.site.base
    owner_keys = api(base, "api-keys", {"action": "get"}, **world.auth["owner"]).json()["response"]
    kept = [k for k in owner_keys if k["id"] == world.owner_key_id]
    assert len(kept) == 1 and kept[0]["name"] in ("kept", "renamed")
    for identity in ("stranger", "viewer", "collaborator", "admin"):
        r = api(
            base, "api-keys", {"action": "delete", "id": world.owner_key_id}, **world.auth[identity]
        )
        assert r.status_code == 404 and set(r.json()) == {"error"}, identity
    owner_keys = api(base, "api-keys", {"action": "get"}, **world.auth["owner"]).json()["response"]
    assert any(k["id"] == world.owner_key_id for k in owner_keys)


def test_sign_out_needs_an_account_session(world: World) -> None:
    for identity in ("none", "banned", "expired", "project_key", "revoked_key"):
        r = api(world.site.base, "accounts/sign-out", {"all": True}, **world.auth[identity])
        assert r.status_code == 401 and set(r.json()) == {"error"}, (identity, r.text)
    # nothing was ended by those calls: the owner is still signed in
    r = api(world.site.base, "projects/get", {"project_id": world.pid}, **world.auth["owner"])
    assert r.status_code == 200


def test_reads_return_only_what_the_caller_may_see(world: World) -> None:
    base = world.site.base
    for identity in ("stranger", "viewer", "collaborator", "admin"):
        mine = api(base, "projects/get", {}, **world.auth[identity]).json()
        ids = [p["project_id"] for p in mine]
        if identity in ("viewer", "collaborator"):
            assert world.pid in ids
        else:  # not on it: not listed (admins see it by id only)
            assert world.pid not in ids
        keys = api(base, "api-keys", {"action": "get"}, **world.auth[identity]).json()["response"]
        assert all(k["account_id"] != world.owner_id for k in keys), identity


def test_delete_is_for_the_owner_and_admins(world: World) -> None:
    base = world.site.base
    for identity in (
        "none",
        "stranger",
        "viewer",
        "collaborator",
        "banned",
        "expired",
        "project_key",
        "revoked_key",
    ):
        r = api(base, "projects/delete", {"project_id": world.pid}, **world.auth[identity])
        assert r.status_code in (401, 403) and set(r.json()) == {"error"}, identity
    spare = api(base, "projects/create", {"title": "spare"}, **world.auth["owner"]).json()[
        "project_id"
    ]
    assert (
        api(base, "projects/delete", {"project_id": spare}, **world.auth["admin"]).status_code
        == 200
    )
    assert (
        api(base, "projects/delete", {"project_id": world.pid}, **world.auth["owner"]).status_code
        == 200
    )
    # deleted: gone for everyone but admins, and the project key stops working
    assert (
        api(
            base, "projects/get", {"project_id": world.pid}, **world.auth["collaborator"]
        ).status_code
        == 403
    )
    assert (
        api(
            base, "projects/get", {"project_id": world.pid}, **world.auth["project_key"]
        ).status_code
        == 401
    )
    assert (
        api(base, "projects/get", {"project_id": world.pid}, **world.auth["admin"]).status_code
        == 200
    )


def test_hub_api_over_conat_follows_the_same_rules(world: World) -> None:
    import asyncio

    from cohub.conat.client import Client

    async def run() -> None:
        cookie = world.auth["stranger"]["cookies"][COOKIE]
        async with Client(world.site.base, cookies={COOKIE: cookie}, reconnect=False) as nc:
            me = nc.info["user"]["account_id"]  # type: ignore[index]
            reply = await nc.request(
                f"hub.account.{me}.api",
                {"name": "projects.get", "args": [{"project_id": world.pid}]},
                timeout=10,
            )
            assert reply.data["code"] == 403 and TITLE not in str(reply.data)

    asyncio.run(run())
    _ = httpx  # the module talks HTTP elsewhere
