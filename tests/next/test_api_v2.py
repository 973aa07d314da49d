"""/api/v2 end to end on real servers: API keys, projects, the bridge, OpenAPI and docs."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cohub.conat.client import Client
from tests.conftest import Server, User, sign_up
from tests.next.conftest import api, bearer


def _key(server: Server, user: User, **opts: object) -> str:
    r = api(
        server.url + "/",
        "api-keys",
        {"action": "create", **opts},
        cookies={"remember_me": user.cookie},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["response"][0]["secret"])


def _project(server: Server, user: User, title: str = "p") -> str:
    r = api(
        server.url + "/", "projects/create", {"title": title}, cookies={"remember_me": user.cookie}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["project_id"])


def test_openapi_describes_every_route_and_docs_render_it(server: Server) -> None:
    r = httpx.get(server.url + "/api/v2/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/v2/auth/sign-in",
        "/api/v2/auth/sign-up",
        "/api/v2/accounts/sign-out",
        "/api/v2/api-keys",
        "/api/v2/projects/create",
        "/api/v2/projects/get",
        "/api/v2/projects/start",
        "/api/v2/projects/stop",
        "/api/v2/projects/delete",
        "/api/v2/projects/collaborators/add",
        "/api/v2/projects/collaborators/remove",
        "/api/v2/projects/collaborators/list",
        "/api/v2/exec",
        "/api/v2/projects/write-text-file",
        "/api/conat/hub",
    ):
        assert set(spec["paths"][path]) == {"post"}, path
        # every documented route exists and answers POST with JSON
        answer = httpx.post(server.url + path, json={})
        assert answer.headers["content-type"] == "application/json", path
    docs = httpx.get(server.url + "/api/v2/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    for path in spec["paths"]:
        assert f"<code>{path}</code>" in docs.text
    assert "<script" not in docs.text and "cdn" not in docs.text.lower()  # self-contained


def test_unauthenticated_calls_get_must_be_signed_in(server: Server) -> None:
    spec = httpx.get(server.url + "/api/v2/openapi.json").json()
    protected = [p for p, item in spec["paths"].items() if item["post"]["security"]]
    assert len(protected) >= 12
    pid = str(uuid.uuid4())
    for path in protected:
        r = httpx.post(server.url + path, json={"project_id": pid, "action": "get"})
        assert r.status_code == 401, path
        assert r.json() == {"error": "must be signed in"}, path


def test_only_post_with_json(server: Server, user: User) -> None:
    base = server.url + "/api/v2/"
    assert httpx.get(base + "projects/get?project_id=x").status_code == 405
    r = httpx.post(
        base + "projects/create",
        data={"title": "form"},
        cookies={"remember_me": user.cookie},
    )
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    # GET parameters are ignored: the body decides
    r = httpx.post(
        base + "projects/create?title=fromquery",
        json={"title": "frombody"},
        cookies={"remember_me": user.cookie},
    )
    pid = r.json()["project_id"]
    r = httpx.post(
        base + "projects/get", json={"project_id": pid}, cookies={"remember_me": user.cookie}
    )
    assert r.json()[0]["title"] == "frombody"
    deep = b'{"a":' * 200 + b"1" + b"}" * 200
    r = httpx.post(
        base + "projects/get", content=deep, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400


def test_api_key_as_bearer_basic_and_conat_cookie(server: Server, user: User) -> None:
    key = _key(server, user, name="laptop")
    base = server.url + "/"
    pid = api(base, "projects/create", {"title": "via key"}, headers=bearer(key)).json()[
        "project_id"
    ]
    basic = base64.b64encode(f"{key}:".encode()).decode()
    r = api(base, "projects/get", {}, headers={"Authorization": f"Basic {basic}"})
    assert pid in [p["project_id"] for p in r.json()]
    r = httpx.post(base + "api/v2/projects/get", json={}, auth=(key, ""))
    assert r.status_code == 200
    for header in (
        "Bearer",
        "Basic !!!",
        "Basic " + base64.b64encode(b":password").decode(),
        "Token " + key,
    ):
        r = api(base, "projects/get", {}, headers={"Authorization": header})
        assert r.status_code == 401 and "Authorization header must be" in r.json()["error"]
    for header in (
        "Bearer sk-nope",
        "Bearer " + key[:-1] + ("A" if key[-1] != "A" else "B"),
        "Basic " + base64.b64encode(b"sk-nope:").decode(),
    ):
        r = api(base, "projects/get", {}, headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.json() == {"error": "invalid or expired API key"}, header
    # a bad Authorization header is not rescued by a good cookie
    r = api(
        base,
        "projects/get",
        {},
        headers={"Authorization": "Bearer sk-nope"},
        cookies={"remember_me": user.cookie},
    )
    assert r.status_code == 401

    async def conat() -> dict:
        async with Client(server.url, cookies={"api_key": key}, reconnect=False) as nc:
            assert nc.info is not None
            return nc.info["user"]

    import asyncio

    assert asyncio.run(conat()) == {"account_id": user.account_id}


def test_key_listing_shows_no_secret_and_revoked_key_is_refused(server: Server, user: User) -> None:
    key = _key(server, user, name="temp")
    base = server.url + "/"
    cookie = {"remember_me": user.cookie}
    listed = api(base, "api-keys", {"action": "get"}, cookies=cookie).json()["response"]
    assert all("secret" not in k and "hash" not in k for k in listed)
    assert key not in str(listed)
    (mine,) = [k for k in listed if k["trunc"].endswith(key[-6:])]
    assert api(base, "projects/get", {}, headers=bearer(key)).status_code == 200
    r = api(base, "api-keys", {"action": "delete", "id": mine["id"]}, cookies=cookie)
    assert r.status_code == 200 and r.json() == {"response": None}
    r = api(base, "projects/get", {}, headers=bearer(key))
    assert r.status_code == 401 and r.json() == {"error": "invalid or expired API key"}


def test_expired_key_is_refused_and_deleted(server: Server, user: User) -> None:
    key = _key(server, user, expire=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    base = server.url + "/"
    cookie = {"remember_me": user.cookie}
    (row,) = [
        k
        for k in api(base, "api-keys", {"action": "get"}, cookies=cookie).json()["response"]
        if k["trunc"].endswith(key[-6:])
    ]
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    r = api(base, "api-keys", {"action": "edit", "id": row["id"], "expire": past}, cookies=cookie)
    assert r.status_code == 200
    assert api(base, "projects/get", {}, headers=bearer(key)).status_code == 401
    listed = api(base, "api-keys", {"action": "get"}, cookies=cookie).json()["response"]
    assert row["id"] not in [k["id"] for k in listed]  # deleted when it was refused


def test_project_key_rules(server: Server, user: User, other_user: User) -> None:
    base = server.url + "/"
    pid = _project(server, user)
    other_pid = _project(server, user, "other")
    api(
        base,
        "projects/collaborators/add",
        {"project_id": pid, "account_id": other_user.account_id},
        cookies={"remember_me": user.cookie},
    )
    key = _key(server, other_user, project_id=pid)
    r = api(base, "projects/get", {"project_id": pid}, headers=bearer(key))
    assert r.status_code == 200 and r.json()[0]["project_id"] == pid
    assert [p["project_id"] for p in api(base, "projects/get", {}, headers=bearer(key)).json()] == [
        pid
    ]
    for path in ("projects/get", "projects/collaborators/list", "projects/stop"):
        r = api(base, path, {"project_id": other_pid}, headers=bearer(key))
        assert r.status_code == 403 and "only act on itself" in r.json()["error"], path
    r = api(base, "projects/create", {"title": "x"}, headers=bearer(key))
    assert r.status_code == 403 and "account" in r.json()["error"]
    # the creator leaves the project: the key stops working and is deleted
    r = api(
        base,
        "projects/collaborators/remove",
        {"project_id": pid, "account_id": other_user.account_id},
        cookies={"remember_me": other_user.cookie},
    )
    assert r.status_code == 200, r.text
    r = api(base, "projects/get", {"project_id": pid}, headers=bearer(key))
    assert r.status_code == 401 and r.json() == {"error": "invalid or expired API key"}


def test_collaborators_and_project_lifecycle(server: Server, user: User, other_user: User) -> None:
    base = server.url + "/"
    cookie = {"remember_me": user.cookie}
    pid = _project(server, user)
    r = api(
        base,
        "projects/collaborators/add",
        {"project_id": pid, "account_id": other_user.account_id},
        cookies=cookie,
    )
    assert r.json() == {"status": "ok"}
    listed = api(base, "projects/collaborators/list", {"project_id": pid}, cookies=cookie).json()
    assert [(c["account_id"], c["group"]) for c in listed] == [
        (user.account_id, "owner"),
        (other_user.account_id, "collaborator"),
    ]
    r = api(
        base,
        "projects/collaborators/remove",
        {"project_id": pid, "account_id": user.account_id},
        cookies={"remember_me": other_user.cookie},
    )
    assert r.status_code == 403 and "owner" in r.json()["error"]
    # the local project runner of `cohub serve` runs the project (tests/projects has more)
    r = api(base, "projects/start", {"project_id": pid}, cookies=cookie)
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    r = api(base, "exec", {"project_id": pid, "command": "echo", "args": ["hi"]}, cookies=cookie)
    assert r.status_code == 200 and r.json()["stdout"] == "hi\n", r.text
    r = api(
        base,
        "projects/write-text-file",
        {"project_id": pid, "path": "a.txt", "content": "hi"},
        cookies=cookie,
    )
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    r = api(base, "projects/stop", {"project_id": pid}, cookies=cookie)
    assert r.status_code == 200 and r.json()["state"]["state"] == "opened"
    r = api(base, "exec", {"project_id": pid, "command": "ls"}, cookies=cookie)
    assert r.status_code == 503 and "not running" in r.json()["error"]
    r = api(
        base, "projects/delete", {"project_id": pid}, cookies={"remember_me": other_user.cookie}
    )
    assert r.status_code == 403
    assert api(base, "projects/delete", {"project_id": pid}, cookies=cookie).json() == {
        "status": "ok"
    }
    assert pid not in [
        p["project_id"] for p in api(base, "projects/get", {}, cookies=cookie).json()
    ]


def test_bridge_calls_any_hub_function_with_a_key_only(
    server: Server, user: User, other_user: User
) -> None:
    base = server.url + "/"
    key = _key(server, user)
    r = api(
        base,
        "api/conat/hub",
        {"name": "system.getNames", "args": [[other_user.account_id]]},
        headers=bearer(key),
    )
    assert r.status_code == 200
    assert r.json() == {other_user.account_id: {"first_name": "Test", "last_name": "User"}}
    r = api(base, "api/conat/hub", {"name": "system.test"}, headers=bearer(key))
    assert r.json()["account_id"] == user.account_id
    r = api(base, "api/conat/hub", {"name": "system.ping"}, cookies={"remember_me": user.cookie})
    assert r.status_code == 401 and "API key" in r.json()["error"]
    r = api(base, "api/conat/hub", {"name": "nope.nothing"}, headers=bearer(key))
    assert r.status_code == 404 and "unknown function" in r.json()["error"]
    for bad in (
        {"name": 5},
        {"name": "system.ping", "args": {}},
        {"name": "system.ping", "timeout": "x"},
    ):
        assert api(base, "api/conat/hub", bad, headers=bearer(key)).status_code == 400


def test_sign_in_with_a_legacy_hash_rehashes(server: Server) -> None:
    import hashlib
    import hmac

    import sqlalchemy as sa

    from cohub.db.engine import sync_url

    person = sign_up(server)
    digest = "legacy password"
    for _ in range(1000):
        digest = hmac.new(b"salt", digest.encode(), hashlib.sha512).hexdigest()
    engine = sa.create_engine(sync_url(server.db_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE accounts SET password_hash = :h WHERE account_id = :a"),
                {"h": f"sha512$salt$1000${digest}", "a": person.account_id},
            )
        r = api(
            server.url + "/", "auth/sign-in", {"email": person.email, "password": "legacy password"}
        )
        assert r.status_code == 200, r.text
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT password_hash FROM accounts WHERE account_id = :a"),
                {"a": person.account_id},
            ).scalar_one()
    finally:
        engine.dispose()
    assert stored.startswith("$argon2id$")


def test_password_reset_without_email_configured(server: Server, user: User) -> None:
    r = api(server.url + "/", "auth/password-reset", {"email": user.email})
    assert r.status_code == 503 and "email is not configured" in r.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"project_id": "x"},
        {"project_id": None},
        {"project_id": ["a"]},
        {"project_id": "*"},
        {"project_id": "../../etc"},
        {"project_id": "\u0000"},
    ],
)
def test_hostile_project_ids(server: Server, user: User, body: dict) -> None:
    for path in ("projects/start", "projects/collaborators/list", "exec", "projects/delete"):
        r = api(server.url + "/", path, body, cookies={"remember_me": user.cookie})
        assert r.status_code == 400 and "project_id" in r.json()["error"], (path, r.text)


def test_invite_without_email_configured_says_so(
    server: Server, user: User, other_user: User
) -> None:
    pid = _project(server, user)
    key = _key(server, user)
    r = api(
        server.url + "/",
        "api/conat/hub",
        {
            "name": "projects.inviteCollaborator",
            "args": [{"project_id": pid, "account_id": other_user.account_id}],
        },
        headers=bearer(key),
    )
    assert r.json() == {"added": True, "email": "not sent: email is not configured on this server"}


@pytest.mark.parametrize(
    "raw",
    [b'{"limit": 1e400}', b'{"limit": 123456789012345678901234567890}', b'{"limit": NaN}'],
)
def test_numbers_out_of_range_are_refused(server: Server, user: User, raw: bytes) -> None:
    r = httpx.post(
        server.url + "/api/v2/projects/get",
        content=raw,
        headers={"content-type": "application/json"},
        cookies={"remember_me": user.cookie},
    )
    assert r.status_code == 400 and r.json()["error"]
