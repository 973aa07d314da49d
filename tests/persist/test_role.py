"""The hub-conat-persist role's wiring: server ids from the host (pod) name, and the archive
directory refreshed while streams stay open."""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cohub import config
from cohub.conat.client import Client
from cohub.persist.client import PersistStream
from cohub.persist.role import server_ids
from tests.conftest import Server, start_server, stop_server

ARCHIVE_INTERVAL_S = 0.3


def settings(*argv: str) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.load(parser.parse_args(list(argv)), environ={})


def test_server_ids_default_to_the_host_name() -> None:
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())
    assert server_ids(settings("--persist-count", "3")) == [f"{host}-0", f"{host}-1", f"{host}-2"]


def test_server_ids_with_a_prefix_are_made_valid() -> None:
    ids = server_ids(settings("--persist-count", "2", "--persist-server-id-prefix", "pod.a/b"))
    assert ids == ["pod-a-b-0", "pod-a-b-1"]  # '.' would split the subject persist.*.server.<id>
    with pytest.raises(SystemExit, match="at least 1"):
        server_ids(settings("--persist-count", "0"))


@pytest.fixture(scope="module")
def archived_server(
    pg_schema_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with no id prefix (so ids come from the host name) and an archive dir."""
    data_dir = tmp_path_factory.mktemp("persist-role")
    db = pg_schema_url or f"sqlite:///{data_dir / 'cohub.sqlite3'}"
    srv = start_server(
        data_dir,
        db,
        "--persist-archive-dir",
        str(data_dir / "archive"),
        "--persist-archive-interval-s",
        str(ARCHIVE_INTERVAL_S),
    )
    yield srv
    stop_server(srv)


async def hub_client(server: Server) -> Client:
    return await Client(server.url, cookies={"hub_password": server.hub_password}).connect()


@pytest.mark.asyncio
async def test_served_ids_carry_the_host_name(archived_server: Server) -> None:
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())
    nc = await hub_client(archived_server)
    try:
        # the role's load balancer connects a moment after /alive answers: wait for it
        reply = await nc.request("persist.hub.id", None, timeout=20, wait_for_interest=True)
        assert reply.data == f"{host}-0"
        assert (archived_server.data_dir / "run" / f"persist-{host}-0.pid").exists()
    finally:
        await nc.close()


def archived_rows(archive: Path) -> list[int]:
    if not archive.exists():
        return []
    conn = sqlite3.connect(f"file:{archive}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT seq FROM messages ORDER BY seq")]
    except sqlite3.Error:
        return []  # caught between the copy's creation and its rename: look again
    finally:
        conn.close()


async def wait_for_archive(archive: Path, seqs: list[int], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while archived_rows(archive) != seqs:
        assert loop.time() < deadline, (archived_rows(archive), seqs)
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_archive_dir_is_refreshed_while_the_stream_stays_open(
    archived_server: Server,
) -> None:
    archive = archived_server.data_dir / "archive" / "hub" / "archived.db"
    nc = await hub_client(archived_server)
    try:
        async with PersistStream(nc, "hub/archived") as s:
            first = await s.append("one")
            # the session keeps the stream open: only the periodic refresh can copy it
            await wait_for_archive(archive, [first.seq])
            second = await s.append("two")
            await wait_for_archive(archive, [first.seq, second.seq])
            assert (archived_server.data_dir / "sync" / "hub" / "archived.db").exists()
    finally:
        await nc.close()
