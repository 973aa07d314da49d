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
    srv = start_server(tmp_path / "d", db_url, "--role", "hub-stats")
    try:
        assert httpx.get(srv.url + "/stats").status_code == 200
        # neither the pages nor the router run in this process
        assert httpx.get(srv.url + "/").status_code == 404
        assert httpx.get(srv.url + "/conat/?EIO=4&transport=websocket").status_code == 404
    finally:
        stop_server(srv)
    assert "serving hub-stats on" in srv.log()


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


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cohub", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_up_errors_say_what_to_do(tmp_path: Path) -> None:
    missing = _serve("--config", str(tmp_path / "missing.toml"))
    assert missing.returncode == 2 and "cannot read the configuration file" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1\n")
    bad_toml = _serve("--config", str(broken))
    assert bad_toml.returncode == 2 and "configuration file" in bad_toml.stderr
    no_db = _serve("--data-dir", str(tmp_path / "d"), "--db-url", "postgresql://x@127.0.0.1:1/db")
    assert no_db.returncode == 1
    assert "does not answer" in no_db.stderr and "--db-url" in no_db.stderr
    for output in (missing, bad_toml, no_db):
        assert "Traceback" not in output.stderr


def test_a_router_client_role_alone_needs_a_router_address(tmp_path: Path) -> None:
    r = _serve("--role", "hub-conat-api", "--data-dir", str(tmp_path))
    assert r.returncode == 2
    assert "--role hub-conat-router" in r.stderr and "--conat-url" in r.stderr


def test_forwarded_for_is_not_trusted(tmp_path: Path, db_url: str) -> None:
    """A client cannot choose the address that sign-in throttling counts."""
    srv = start_server(tmp_path / "d", db_url, "--role", "hub-next", "--role", "hub-conat-router")
    try:
        codes = [
            httpx.post(
                srv.url + "/api/v2/auth/sign-in",
                json={"email": f"xff{i}@example.com", "password": "wrong password"},
                headers={"X-Forwarded-For": f"10.0.0.{i}"},
            ).status_code
            for i in range(32)
        ]
    finally:
        stop_server(srv)
    assert 429 in codes, codes
