"""The landing page, /alive and /stats."""

from __future__ import annotations

import httpx

from cohub.config import Settings
from cohub.db.engine import Database
from cohub.roles import RoleContext, compose
from tests.conftest import Server, sign_up


def test_landing_page(server: Server) -> None:
    r = httpx.get(server.url + "/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "cohub" in r.text and "/api/v2/auth/sign-up" in r.text


def test_landing_page_shows_the_signed_in_account(server: Server) -> None:
    user = sign_up(server)
    r = httpx.get(server.url + "/", cookies={"remember_me": user.cookie})
    assert user.email in r.text


def test_alive(server: Server) -> None:
    r = httpx.get(server.url + "/alive")
    assert r.status_code == 200 and r.text == "alive"


async def test_alive_fails_when_the_database_does_not_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database("postgresql://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    app = compose(RoleContext(Settings(data_dir=tmp_path), db, "pw"), [])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/alive")
    await db.close()
    assert r.status_code == 503


def test_stats_serves_the_newest_row(server: Server) -> None:
    r = httpx.get(server.url + "/stats")
    assert r.status_code == 200
    assert "no-cache" in r.headers["cache-control"]
    data = r.json()
    assert data is not None  # computed at start
    assert {"accounts", "projects", "time"} <= data.keys()
    assert isinstance(data["accounts"], int)
    # the snapshot taken at start already lists this process's hub API (interval 300 s: the
    # row served here is that first one)
    assert any(h.get("port") == server.port for h in data["hub_servers"]), data["hub_servers"]


def test_unknown_paths_are_json_404(server: Server) -> None:
    r = httpx.get(server.url + "/no/such/page")
    assert r.status_code == 404 and "not found" in r.json()["error"]


async def test_http_errors_are_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    app = compose(RoleContext(Settings(data_dir=tmp_path), db, "pw"), [])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/metrics")
    await db.close()
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/json"
    allow = r.headers["allow"]
    assert "GET" in allow
    assert r.json() == {"error": f"method POST is not allowed on /metrics; allowed: {allow}"}


async def test_stats_is_null_before_any_snapshot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cohub.db.engine import migrate
    from cohub.services import stats as stats_role

    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    migrate(url)
    db = Database(url)
    ctx = RoleContext(Settings(data_dir=tmp_path), db, "pw")
    app = compose(ctx, [stats_role.role(ctx)])  # the role is not started: no snapshot yet
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/stats")
    await db.close()
    assert r.status_code == 200 and r.json() is None
    assert "no-cache" in r.headers["cache-control"]


def test_stats_are_taken_again_every_interval(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    from tests.conftest import start_server, stop_server

    server = start_server(
        tmp_path,
        f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "--role", "hub-stats", "--role", "hub-next", "--role", "hub-conat-router",
        "--role", "hub-conat-api", "--stats-interval-s", "0.5",
    )  # fmt: skip
    try:
        first = httpx.get(server.url + "/stats").json()
        sign_up(server)
        deadline = time.monotonic() + 30
        newer = first
        while time.monotonic() < deadline:
            newer = httpx.get(server.url + "/stats").json()
            if newer["time"] != first["time"] and newer["accounts"] == first["accounts"] + 1:
                break
            time.sleep(0.2)
        assert newer["time"] > first["time"], "no new snapshot after the interval"
        assert newer["accounts"] == first["accounts"] + 1  # it is computed afresh, not copied
    finally:
        stop_server(server)
