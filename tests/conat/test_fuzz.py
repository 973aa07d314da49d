"""Property-based fuzzing of the router over every event and payload shape.

Each example opens a real connection, fires a random sequence of events with random payloads
(random subjects, chunk sequences, huge headers, wrong types, subscribe/unsubscribe floods),
then checks that every acked event got an answer, the server still routes for a
well-behaved client, and nothing leaked once the connections closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cohub.conat.client import Client
from tests.conftest import Server, sign_up

EVENTS = ["publish", "subscribe", "unsubscribe", "subscriptions", "wait-for-interest", "stats"]

tokens = st.one_of(
    st.sampled_from(["a", "b", "*", ">", "", " ", "x.y", "_INBOX", "hub", "account", "é", "\n"]),
    st.text(max_size=12),
)
subjects = st.one_of(
    st.lists(tokens, min_size=0, max_size=6).map(".".join),
    st.integers(),
    st.none(),
    st.text(max_size=200),
)
json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
headers = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=20), json_values, max_size=5),
    st.just({"big": "x" * 100_000}),
    json_values,
)
chunks = st.one_of(st.binary(max_size=2000), st.text(max_size=50), st.integers(), st.none())


def publish_payloads(own: str) -> st.SearchStrategy[Any]:
    subject = st.one_of(subjects, st.just(own), st.builds(lambda t: f"{own}.{t}", tokens))
    frame = st.tuples(
        subject,
        st.one_of(st.text(max_size=20), st.integers(), st.none()),
        st.one_of(st.integers(min_value=-2, max_value=5), st.text(max_size=3)),
        st.one_of(st.sampled_from([0, 1, True, 2, "1"]), st.none()),
        st.one_of(st.sampled_from([0, 1, 2, -1, "0"]), st.none()),
        chunks,
        headers,
    ).map(list)
    return st.one_of(frame, frame.map(lambda f: f[: len(f) - 2]), json_values)


def subscribe_payloads(own: str) -> st.SearchStrategy[Any]:
    item = st.fixed_dictionaries(
        {
            "subject": st.one_of(subjects, st.builds(lambda t: f"{own}.{t}", tokens)),
            "queue": st.one_of(st.text(max_size=12), st.integers(), st.none()),
        }
    )
    return st.one_of(item, st.lists(item, max_size=30), json_values)


def actions(own: str) -> st.SearchStrategy[list[tuple[str, Any]]]:
    action = st.one_of(
        st.tuples(st.just("publish"), publish_payloads(own)),
        st.tuples(st.just("subscribe"), subscribe_payloads(own)),
        st.tuples(st.just("unsubscribe"), st.one_of(subscribe_payloads(own), json_values)),
        st.tuples(st.sampled_from(EVENTS), json_values),
        st.tuples(st.text(max_size=30), json_values),
    )
    return st.lists(action, min_size=1, max_size=25)


async def _fire(server: Server, cookie: str, sequence: list[tuple[str, Any]]) -> None:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(
        server.url,
        headers={"Cookie": cookie},
        transports=["websocket"],
        socketio_path="conat",
        wait_timeout=10,
    )
    try:
        for event, payload in sequence:
            if event in ("connect", "disconnect", "connect_error", "message") or not event:
                continue  # names python-socketio refuses to send (tested raw elsewhere)
            if event == "wait-for-interest" and isinstance(payload, dict):
                payload = {**payload, "timeout": 0}
            try:
                ack = await sio.call(event, payload, timeout=10)
            except (socketio.exceptions.BadNamespaceError, socketio.exceptions.DisconnectedError):
                return  # the router may close a socket that sent nonsense; that is allowed
            assert ack is None or isinstance(ack, dict | list | bool), ack
            if isinstance(ack, dict) and "error" in ack:
                assert isinstance(ack["error"], str) and ack["error"]
                assert ack.get("code") in (400, 403, 404, 429), ack
    finally:
        await sio.disconnect()


def _metric(server: Server, name: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(name)


def _settled(server: Server) -> tuple[float, float]:
    """Subscriptions and connections once the server's own roles have all connected."""
    last = (-1.0, -1.0)
    for _ in range(100):
        now = (
            _metric(server, "cohub_conat_subscriptions"),
            _metric(server, "cohub_conat_connections"),
        )
        if now == last and now[1] > 0:
            return now
        last = now
        asyncio.run(asyncio.sleep(0.5))
    raise AssertionError("the server's own connections did not settle")


def _rss_kb(server: Server) -> int:
    with open(f"/proc/{server.process.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.timeout(300)
def test_fuzz_every_event(server: Server) -> None:
    user = sign_up(server)
    cookie = f"remember_me={user.cookie}"
    own = f"account.{user.account_id}"
    baseline_subs, baseline_conns = _settled(server)
    baseline_rss = _rss_kb(server)

    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(sequence=actions(own))
    def run(sequence: list[tuple[str, Any]]) -> None:
        asyncio.run(_fire(server, cookie, sequence))

    run()

    async def still_routes() -> None:
        async with Client(server.url, cookies={"remember_me": user.cookie}) as client:
            sub = await client.subscribe(f"{own}.after")
            assert (await client.publish(f"{own}.after", "ok")).count == 1
            assert (await sub.next(timeout=5)).data == "ok"

    asyncio.run(still_routes())

    # nothing leaked: every fuzzed socket's subscriptions went away with it
    for _ in range(50):
        if (
            _metric(server, "cohub_conat_subscriptions") == baseline_subs
            and _metric(server, "cohub_conat_connections") == baseline_conns
        ):
            break
        asyncio.run(asyncio.sleep(0.1))
    assert _metric(server, "cohub_conat_subscriptions") == baseline_subs
    assert _metric(server, "cohub_conat_connections") == baseline_conns

    # memory returns to what it was before any fuzzing, even after a second round. The
    # slack covers the router's bounded caches (validated subjects, rule outcomes, matches:
    # 10,000 entries each, a few MB) and allocator noise; a round has measured under 1 MB.
    run()
    assert _rss_kb(server) < baseline_rss + 16_000, (baseline_rss, _rss_kb(server))
