"""`cohub serve` role selection, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import start_server, stop_server


def test_unbuilt_role_says_so_and_does_not_run(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cohub",
            "serve",
            "--role",
            "hub-proxy",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "hub-proxy is not built yet" in r.stderr
    assert "nothing to start" in r.stderr


def test_unknown_role_is_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cohub", "serve", "--role", "hub-nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_selected_roles_only(tmp_path: Path, db_url: str) -> None:
    srv = start_server(tmp_path / "d", db_url, "--role", "hub-next", "--role", "hub-stats")
    try:
        assert httpx.get(srv.url + "/stats").status_code == 200
        assert httpx.get(srv.url + "/").status_code == 200
        # the router is not running in this process
        assert httpx.get(srv.url + "/conat/?EIO=4&transport=websocket").status_code == 404
    finally:
        stop_server(srv)
    assert "serving hub-next, hub-stats" in srv.log()


def test_base_path(tmp_path: Path, db_url: str) -> None:
    srv = start_server(tmp_path / "d", db_url, "--base-path", "/hub")
    try:
        assert httpx.get(srv.url + "/hub/alive").status_code == 200
        r = httpx.post(
            srv.url + "/hub/api/v2/auth/sign-up",
            json={"email": "bp@example.com", "password": "password123", "terms": True},
        )
        assert r.status_code == 200
        assert r.headers["set-cookie"].startswith("%2Fhubremember_me=")
        assert "Path=/hub/" in r.headers["set-cookie"]
    finally:
        stop_server(srv)


def test_db_upgrade_command(tmp_path: Path, db_url: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cohub", "db", "upgrade", "--db-url", db_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stdout
