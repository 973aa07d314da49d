"""Crash safety: kill -9 a persist process mid-stream; acknowledged writes survive and open
changefeeds resume with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
import uuid

import pytest

from cohub.conat.client import Client
from cohub.persist.client import Entry, PersistStream, Storage
from cohub.persist.load_balancer import pick
from tests.conftest import Server

pytestmark = pytest.mark.asyncio

IDS = ["test-0", "test-1"]


def persist_pid(server: Server, server_id: str, timeout: float = 20.0) -> int:
    """The pid of a running persist process (from its pid file)."""
    pid_file = server.data_dir / "run" / f"persist-{server_id}.pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError):
            time.sleep(0.05)
    raise AssertionError(f"no running persist process {server_id}")


def kill_persist(server: Server, server_id: str) -> int:
    pid = persist_pid(server, server_id)
    os.kill(pid, signal.SIGKILL)
    return pid


async def hub_client(server: Server) -> Client:
    return await Client(server.url, cookies={"hub_password": server.hub_password}).connect()


async def test_acknowledged_sets_survive_kill_9(persist_server: Server) -> None:
    nc = await hub_client(persist_server)
    try:
        owner = pick(IDS, "hub")
        before = persist_pid(persist_server, owner)
        acked: list[tuple[int, int]] = []
        storage = Storage(f"hub/durable-{secrets.token_hex(3)}", sync=True)
        async with PersistStream(
            nc, storage, timeout=20, attempt_timeout=2, reconnect_delay=0.1
        ) as s:
            hundred = asyncio.Event()

            async def writer() -> None:
                for i in range(300):
                    result = await s.append(i)
                    acked.append((result.seq, i))
                    if len(acked) == 100:
                        hundred.set()

            task = asyncio.ensure_future(writer())
            await asyncio.wait_for(hundred.wait(), 30)
            kill_persist(persist_server, owner)  # mid-stream
            await asyncio.wait_for(task, 60)
            assert persist_pid(persist_server, owner) != before  # the supervisor restarted it
            stored = {e.seq: e.data for e in await s.get_all()}
        assert len(acked) == 300
        for seq, value in acked:
            assert stored.get(seq) == value, (seq, value)
        # a set retried after the kill (its reply lost) carries the same msgID: the restarted
        # process finds it in the file and answers the original seq instead of storing twice
        assert sorted(stored.values()) == list(range(300))
        assert len({seq for seq, _ in acked}) == 300
        assert s.reconnects >= 1
    finally:
        await nc.close()


async def test_fifty_changefeeds_resume_after_kill_9(persist_server: Server) -> None:
    nc = await hub_client(persist_server)
    writer_nc = await hub_client(persist_server)
    streams: list[PersistStream] = []
    try:
        storage = Storage(f"hub/feeds-{secrets.token_hex(3)}")
        owner = pick(IDS, "hub")
        feeds = []
        for _ in range(50):
            s = PersistStream(
                nc, storage, timeout=20, attempt_timeout=2, ping_interval=0.5, reconnect_delay=0.1
            )
            streams.append(s)
            await s.open()
            feeds.append(await s.changefeed())
        received: list[list[int]] = [[] for _ in feeds]

        async def drain(n: int) -> None:
            async for updates in feeds[n]:
                received[n].extend(u.seq for u in updates if isinstance(u, Entry))

        readers = [asyncio.ensure_future(drain(n)) for n in range(len(feeds))]
        async with PersistStream(
            writer_nc, storage, timeout=20, attempt_timeout=2, reconnect_delay=0.1
        ) as w:
            for i in range(80):
                await w.append(i)
                if i == 40:
                    kill_persist(persist_server, owner)
            final = [e.seq for e in await w.get_all()]
        deadline = asyncio.get_running_loop().time() + 40
        while any(len(r) < len(final) for r in received):
            assert asyncio.get_running_loop().time() < deadline, [len(r) for r in received]
            await asyncio.sleep(0.1)
        for r in received:
            assert r == final  # every update once, in order
        assert all(s.reconnects >= 1 for s in streams)
        for task in readers:
            task.cancel()
    finally:
        for s in streams:
            await s.close()
        await nc.close()
        await writer_nc.close()


async def test_msg_id_dedupe_survives_kill_9(persist_server: Server) -> None:
    nc = await hub_client(persist_server)
    try:
        owner = pick(IDS, "hub")
        storage = Storage(f"hub/msgid-{secrets.token_hex(3)}")
        async with PersistStream(
            nc, storage, timeout=20, attempt_timeout=2, reconnect_delay=0.1
        ) as s:
            first = await s.append("original", msg_id="once")
            before = kill_persist(persist_server, owner)
            again = await s.append("retry", msg_id="once")  # answered by the new process
            assert persist_pid(persist_server, owner) != before
            assert again == first
            assert [e.data for e in await s.get_all()] == ["original"]
    finally:
        await nc.close()


async def test_load_balancer_with_two_servers_matches_pick(persist_server: Server) -> None:
    """Every client gets ids[abs(java_hash(scope)) % 2] for a scope, every time."""
    first, second = await hub_client(persist_server), await hub_client(persist_server)
    try:
        scopes = ["hub"] + [f"account-{uuid.UUID(int=i)}" for i in range(150)]
        scopes += [f"project-{uuid.UUID(int=i << 64)}" for i in range(150)]

        async def ask(nc: Client, scope: str) -> str:
            reply = await nc.request(f"persist.{scope}.id", None, timeout=20)
            return str(reply.data)

        answers = await asyncio.gather(*(ask(first, s) for s in scopes))
        assert answers == [pick(IDS, s) for s in scopes]
        assert set(answers) == set(IDS)  # both servers own some scopes
        assert await asyncio.gather(*(ask(second, s) for s in scopes)) == answers
        # and the picked server is the one that serves the scope's streams
        for scope in ("hub", scopes[1], scopes[2], scopes[-1]):
            owner = pick(IDS, scope)
            kind, _, owner_id = scope.partition("-")
            p = "hub/lb" if scope == "hub" else f"{kind}s/{owner_id}/lb"
            async with PersistStream(first, p, scope=scope, timeout=20) as s:
                await s.append(scope)
                assert s.server_id == owner
    finally:
        await first.close()
        await second.close()
