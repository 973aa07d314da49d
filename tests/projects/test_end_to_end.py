"""A project through /api/v2 only, as an API user would: sign up, create, start, exec,
write a file and read it back with exec, stop, and a clear error afterwards."""

from __future__ import annotations

import httpx

from tests.conftest import Server, sign_up


def test_project_through_api_v2(server: Server) -> None:
    user = sign_up(server)

    def api(path: str, body: dict) -> httpx.Response:
        return httpx.post(
            f"{server.url}/api/v2/{path}",
            json=body,
            cookies={"remember_me": user.cookie},
            timeout=60,
        )

    pid = api("projects/create", {"title": "e2e"}).json()["project_id"]
    r = api("projects/start", {"project_id": pid})
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    r = api("exec", {"project_id": pid, "command": "echo", "args": ["hi"]})
    assert r.status_code == 200, r.text
    assert r.json()["stdout"] == "hi\n" and r.json()["exit_code"] == 0
    r = api(
        "projects/write-text-file", {"project_id": pid, "path": "notes/a.md", "content": "# A\n"}
    )
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    r = api("exec", {"project_id": pid, "command": "cat", "args": ["notes/a.md"]})
    assert r.json()["stdout"] == "# A\n"
    r = api("exec", {"project_id": pid, "command": "ls", "path": "notes"})
    assert r.json()["stdout"] == "a.md\n"
    r = api("exec", {"project_id": pid, "command": "echo $((6*7))", "bash": True})
    assert r.json()["stdout"] == "42\n"
    r = api("exec", {"project_id": pid, "command": "ls", "path": "../"})
    assert r.status_code == 400 and "inside the project" in r.json()["error"]
    state = api("projects/get", {"project_id": pid}).json()[0]["state"]
    assert state["state"] == "running"
    r = api("projects/stop", {"project_id": pid})
    assert r.status_code == 200 and r.json()["state"]["state"] == "opened"
    r = api("exec", {"project_id": pid, "command": "echo", "args": ["hi"]})
    assert r.status_code == 503
    assert "is not running" in r.json()["error"] and "start it first" in r.json()["error"]
