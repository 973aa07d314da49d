"""``wait-for-interest`` under abuse, on a real router in this process: a per-socket cap on
pending waits (429 past it), waits cancelled when their socket goes, a new subscription waking
only the waits it matches (wildcards included), and other users unaffected meanwhile."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from cohub.conat.client import Client
from cohub.conat.router import Router
from cohub.db.engine import Database
from tests.conat import inprocess
from tests.conat.inprocess import make_router
from tests.conat.test_bad_input import RawSocket
from tests.conftest import Server, User, sign_up


@pytest.fixture
async def db(server: Server) -> AsyncIterator[Database]:
    async with Database(server.db_url) as database:
        yield database


async def _raw(url: str, user: User) -> RawSocket:
    port = urlsplit(url).port
    return await RawSocket.open(
        SimpleNamespace(port=port), f"remember_me={quote(user.cookie, safe='')}"
    )


async def _send_waits(raw: RawSocket, subjects: list[str], timeout_ms: int = 90_000) -> list[int]:
    ids = []
    for subject in subjects:
        ack_id = raw.next_id()
        ids.append(ack_id)
        payload = json.dumps(["wait-for-interest", {"subject": subject, "timeout": timeout_ms}])
        await raw.send(f"42{ack_id}{payload}")
    return ids


async def _acks(raw: RawSocket, ids: set[int], timeout: float = 10) -> dict[int, Any]:
    """Collect the acks with these ids (other frames are skipped)."""
    got: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while not ids <= got.keys():
        frame = await raw.recv(max(0.01, deadline - time.monotonic()))
        m = re.match(r"43(\d+)(\[.*)$", frame, re.S) if isinstance(frame, str) else None
        if m and int(m.group(1)) in ids:
            args = json.loads(m.group(2))
            got[int(m.group(1))] = args[0] if len(args) == 1 else args
    return got


def _wait_tasks(router: Router) -> list[asyncio.Task[Any]]:
    """The router's tasks running a wait-for-interest (every wait runs as one)."""
    return [t for t in router._tasks if t.get_coro().__qualname__.endswith("_run_and_ack")]


async def _until(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def _round_trips(client: Client, user: User, n: int) -> None:
    for i in range(n):
        subject = f"account.{user.account_id}.rt.{uuid.uuid4().hex[:8]}"
        sub = await client.subscribe(subject)
        assert (await client.publish(subject, i)).count == 1
        assert (await sub.next(timeout=5)).data == i
        sub.close()


def test_the_production_cap_is_100() -> None:
    router = make_router(None, hub_password="x")  # type: ignore[arg-type]
    assert router.max_waits_per_socket == 100


async def test_waits_past_the_cap_get_429_and_end_with_their_socket(
    server: Server, db: Database
) -> None:
    router = make_router(db, hub_password="hub-secret", max_waits_per_socket=5)
    waiter, other = sign_up(server), sign_up(server)
    async with inprocess.serve(router) as url:
        raw = await _raw(url, waiter)
        try:
            never = [f"account.{waiter.account_id}.never.{i}" for i in range(8)]
            ids = await _send_waits(raw, never)
            refused = await _acks(raw, set(ids[5:]))
            for ack_id in ids[5:]:
                assert refused[ack_id]["code"] == 429, refused
                assert "at most 5 pending wait-for-interest" in refused[ack_id]["error"]
            assert router.pending_waits() == 5
            assert len(_wait_tasks(router)) == 5
            # while this socket holds the most waits it may, others are served as usual
            async with Client(url, cookies={"remember_me": other.cookie}) as client:
                await _round_trips(client, other, 20)
            # and so is this socket itself: subscriptions answer, a wait wakes
            sub_ack = await raw.call("subscribe", {"subject": never[0], "queue": "q"})
            assert sub_ack == {"status": "added"}
            assert (await _acks(raw, {ids[0]}))[ids[0]] is True
            await _until(lambda: router.pending_waits() == 4)
            # a freed place can be taken again
            await _send_waits(raw, [f"account.{waiter.account_id}.later"])
            await _until(lambda: router.pending_waits() == 5)
        finally:
            await raw.close()
        # gone with the socket, long before their 90 s
        await _until(lambda: router.connection_count == 0)
        await _until(lambda: not _wait_tasks(router))
        assert router.pending_waits() == 0


async def test_a_flood_of_waits_holds_at_most_the_cap(server: Server, db: Database) -> None:
    """The QA report: thousands of waits on one socket at the production cap."""
    router = make_router(db, hub_password="hub-secret")
    waiter, other = sign_up(server), sign_up(server)
    async with inprocess.serve(router) as url:
        raw = await _raw(url, waiter)
        try:
            subject = f"account.{waiter.account_id}.never"
            ids = await _send_waits(raw, [subject] * 2000)
            acks = await _acks(raw, set(ids[100:]), timeout=60)
            assert all(a["code"] == 429 for a in acks.values())
            assert router.pending_waits() == 100
            async with Client(url, cookies={"remember_me": other.cookie}) as client:
                await _round_trips(client, other, 20)
        finally:
            await raw.close()
        await _until(lambda: not _wait_tasks(router))


async def test_a_subscription_wakes_only_the_waits_it_matches(server: Server, db: Database) -> None:
    router = make_router(db, hub_password="hub-secret", max_waits_per_socket=300)
    user = sign_up(server)
    base = f"account.{user.account_id}"
    async with inprocess.serve(router) as url:
        raw = await _raw(url, user)
        try:
            async with Client(url, cookies={"remember_me": user.cookie}) as subscriber:
                subjects = [f"{base}.a.leaf", f"{base}.b.c.d", f"{base}.z"]
                subjects += [f"{base}.idle.{i}" for i in range(200)]
                ids = await _send_waits(raw, subjects)
                star, deep, literal = ids[:3]
                await _until(lambda: router.pending_waits() == len(subjects))

                checks = 0
                real_check = router.has_counted_interest

                def counting(subject: str) -> bool:
                    nonlocal checks
                    checks += 1
                    return real_check(subject)

                router.has_counted_interest = counting  # type: ignore[method-assign]
                # subscriptions matching none of the waits wake none of them
                for i in range(20):
                    await subscriber.subscribe(f"{base}.unrelated.{i}")
                await subscriber.subscribe(f"{base}.*.other")
                await subscriber.subscribe(f"{base}.q.>")
                assert checks == 0
                assert router.pending_waits() == len(subjects)
                # '*' matches one token: a.leaf, not b.c.d
                await subscriber.subscribe(f"{base}.*.leaf")
                assert (await _acks(raw, {star}))[star] is True
                await _until(lambda: router.pending_waits() == len(subjects) - 1)
                # '>' matches one or more tokens below its prefix
                await subscriber.subscribe(f"{base}.b.>")
                assert (await _acks(raw, {deep}))[deep] is True
                # a literal subscription wakes its own subject
                await subscriber.subscribe(f"{base}.z")
                assert (await _acks(raw, {literal}))[literal] is True
                await _until(lambda: router.pending_waits() == 200)
                # a wait whose subject already has interest answers at once; one with a short
                # timeout and no subscriber answers false
                (now,) = await _send_waits(raw, [f"{base}.z"])
                (short,) = await _send_waits(raw, [f"{base}.nobody"], timeout_ms=100)
                assert await _acks(raw, {now, short}) == {now: True, short: False}
                assert router.pending_waits() == 200
        finally:
            await raw.close()
        await _until(lambda: not _wait_tasks(router))
        assert router.pending_waits() == 0


async def test_the_silent_tap_does_not_end_a_wait(server: Server, db: Database) -> None:
    """A hub's '>' tap is never counted, so it must not answer a wait with true."""
    router = make_router(db, hub_password="hub-secret")
    user = sign_up(server)
    async with inprocess.serve(router) as url:
        raw = await _raw(url, user)
        try:
            async with Client(url, cookies={"hub_password": "hub-secret"}) as hub:
                (wait,) = await _send_waits(raw, [f"account.{user.account_id}.t"], 500)
                await _until(lambda: router.pending_waits() == 1)
                await hub.subscribe(">")
                assert (await _acks(raw, {wait}))[wait] is False
        finally:
            await raw.close()
