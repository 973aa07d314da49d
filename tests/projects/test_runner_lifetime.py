"""The runner over a server's lifetime, each test on a `cohub serve` of its own: idle projects
are stopped, and neither a clean shutdown nor a killed server leaves project servers behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Server, User, sign_up, start_server, stop_server
from tests.projects.conftest import alive


def _api(server: Server, user: User, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v2/{path}", json=body, cookies={"remember_me": user.cookie}, timeout=60
    )


def _state(server: Server, user: User, pid: str) -> dict[str, Any]:
    r = _api(server, user, "projects/get", {"project_id": pid})
    assert r.status_code == 200, r.text
    return dict(r.json()[0]["state"] or {})


def _wait(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def _start(server: Server, user: User, title: str) -> tuple[str, int]:
    pid = _api(server, user, "projects/create", {"title": title}).json()["project_id"]
    r = _api(server, user, "projects/start", {"project_id": pid})
    assert r.status_code == 200, r.text
    state = _state(server, user, pid)
    assert state["state"] == "running"
    return pid, int(state["pid"])


def test_idle_projects_are_stopped(tmp_path: Path, db_url: str) -> None:
    server = start_server(tmp_path / "idle", db_url, "--project-idle-timeout-s", "2")
    try:
        user = sign_up(server)
        pid, process = _start(server, user, "idle")
        state = _wait(
            lambda: (s := _state(server, user, pid))["state"] == "opened" and s,
            "the idle project to be stopped",
        )
        assert state["reason"] == "idle for more than 2 s"
        _wait(lambda: not alive(process), "the idle project server to end")
        r = _api(server, user, "exec", {"project_id": pid, "command": "true"})
        assert r.status_code == 503 and "not running" in r.json()["error"]
    finally:
        stop_server(server)


def test_a_busy_project_is_not_idle(tmp_path: Path, db_url: str) -> None:
    server = start_server(tmp_path / "busy", db_url, "--project-idle-timeout-s", "2")
    try:
        user = sign_up(server)
        pid, _ = _start(server, user, "busy")
        # a command running longer than the idle timeout keeps the project running
        r = _api(server, user, "exec", {"project_id": pid, "command": "sleep", "args": ["4"]})
        assert r.status_code == 200, r.text
        assert _state(server, user, pid)["state"] == "running"
    finally:
        stop_server(server)


def test_shutdown_and_a_killed_server_leave_no_project_servers(tmp_path: Path, db_url: str) -> None:
    data = tmp_path / "restart"
    server = start_server(data, db_url)
    user = sign_up(server)
    try:
        (a, pa), (b, pb) = _start(server, user, "a"), _start(server, user, "b")
    finally:
        stop_server(server)
    assert server.process.returncode in (0, -15), server.log()[-2000:]
    _wait(lambda: not alive(pa) and not alive(pb), "the project servers to end with the runner")

    server = start_server(data, db_url)
    try:
        state = _state(server, user, a)
        assert state["state"] == "opened", (state, server.log()[-3000:])
        assert state["reason"] == "the project runner stopped", (state, server.log()[-3000:])
        _, pa = _start(server, user, "a again")
        server.process.kill()  # no shutdown at all: the kernel tells the project server
        server.process.wait(10)
        _wait(lambda: not alive(pa), "the project server to die with the killed runner")
    finally:
        stop_server(server)

    server = start_server(data, db_url)
    try:
        # the pid file the killed runner left is read at start: that project is reset
        states = [
            _state(server, user, p["project_id"])
            for p in _api(server, user, "projects/get", {}).json()
        ]
        assert all(s.get("state") == "opened" for s in states), states
        assert any(s.get("reason") == "the project runner restarted" for s in states), states
        assert list((data / "run").glob("project-*.pid")) == []
        r = _api(server, user, "projects/start", {"project_id": b})
        assert r.status_code == 200, r.text
        r = _api(server, user, "exec", {"project_id": b, "command": "echo", "args": ["back"]})
        assert r.json()["stdout"] == "back\n"
    finally:
        stop_server(server)


def test_project_runner_none_keeps_the_honest_503(tmp_path: Path, db_url: str) -> None:
    server = start_server(tmp_path / "none", db_url, "--project-runner", "none")
    try:
        user = sign_up(server)
        pid = _api(server, user, "projects/create", {"title": "n"}).json()["project_id"]
        r = _api(server, user, "projects/start", {"project_id": pid})
        assert r.status_code == 503 and "no project runner" in r.json()["error"]
        assert "no project runner" in _state(server, user, pid)["error"]
        assert not (tmp_path / "none" / "projects" / pid).exists()
    finally:
        stop_server(server)
