"""Wire compatibility: a stock JavaScript socket.io-client (npm) against the router.

``tests/js/conat_wire.mjs`` speaks Conat with nothing but ``socket.io-client`` and
``@msgpack/msgpack``, the packages CoCalc's own client is built on, and prints one JSON line
of what it saw. These tests run it against the session's real ``cohub serve`` and check that
line, and they exchange messages between it and the Python client in both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cohub.conat.client import Client
from tests.conftest import Server, User, sign_up

pytestmark = pytest.mark.asyncio

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS_DIR / "conat_wire.mjs"
NODE_TIMEOUT_S = 60.0
_NEEDED = ("socket.io-client", "@msgpack/msgpack")


def _node_deps_ready() -> bool:
    return all((JS_DIR / "node_modules" / name / "package.json").is_file() for name in _NEEDED)


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, after making sure tests/js/node_modules is installed."""
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not on PATH; the JavaScript wire-compatibility test needs Node.js")
    if not _node_deps_ready():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("tests/js/node_modules is missing and npm is not on PATH")
        try:
            r = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"tests/js/node_modules is missing and npm install failed: {e}")
        if r.returncode != 0 or not _node_deps_ready():
            pytest.skip(
                "tests/js/node_modules is missing and npm install failed "
                f"(exit {r.returncode}): {r.stderr.strip()[-500:]}"
            )
    return exe


async def run_node(node: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run conat_wire.mjs with ``config``; return its results, failing with its output."""
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        json.dumps(config),
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        pytest.fail(f"conat_wire.mjs did not finish within {NODE_TIMEOUT_S} s")
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, f"conat_wire.mjs printed nothing (exit {proc.returncode}); stderr:\n{stderr}"
    report = json.loads(lines[-1])
    assert proc.returncode == 0 and report.get("ok") is True, (
        f"conat_wire.mjs failed (exit {proc.returncode}) at step {report.get('step')!r}: "
        f"{report.get('error')}\nstderr:\n{stderr}"
    )
    return report["results"]


def base_config(server: Server, user: User, **extra: Any) -> dict[str, Any]:
    return {
        "url": server.url,
        "cookies": {"remember_me": user.cookie},
        "account_id": user.account_id,
        "hub_password": server.hub_password,
        "timeout_ms": 45_000,
        **extra,
    }


async def test_stock_socketio_client_speaks_conat(server: Server, node: str) -> None:
    user, other = sign_up(server), sign_up(server)
    r = await run_node(node, base_config(server, user, other_account_id=other.account_id))
    a = user.account_id

    # info, acked with no arguments
    assert r["info"] == {
        "user": {"account_id": a},
        "max_payload": 8_000_000,
        "id": r["info"]["id"],
        "acked": 1,
    }

    # msgpack publish -> delivery under the pattern's event name, headers as a plain object
    p = r["pubsub"]
    assert p["subscribe"] == {"status": "added"}
    assert p["resubscribe"] == {"status": "already-added"}
    assert p["publish"] == {"count": 1}
    d = p["delivered"]
    assert d["id_matches"] and (d["seq"], d["done"], d["encoding"]) == (0, 1, 0)
    assert d["headers"] == {"hdr": "x"}
    assert d["data"] == {
        "hello": "from node",
        "n": 42,
        "f": 1.5,
        "nested": {"a": [1, 2, 3], "t": True, "z": None},
        "bin": {"bytes": "0001feff"},
    }

    # a list subscribe; one delivery per matching pattern
    w = r["wildcard"]
    assert w["subscribe"] == [{"status": "added"}, {"status": "added"}]
    assert w["publish"] == {"count": 2}
    assert w["event_names"] == [f"account.{a}.w.*", f"account.{a}.w.>"]

    # encoding 1
    assert r["json"]["publish"] == {"count": 1}
    assert r["json"]["encoding"] == 1
    assert r["json"]["headers"] == {"kind": "json"}
    assert r["json"]["data"] == {
        "enc": "json",
        "list": [1, "two", {"three": 3}],
        "unicode": "héllo ✓",
    }

    # a message over one chunk (7.9 MB chunks, 8 MB socket.io buffer)
    c = r["chunked"]
    assert c["chunks"] == 2 and c["bytes"] > 7_900_000
    assert c["acks"] == [{"count": 1}, {"count": 1}]
    assert c["reassembled"] is True

    # request/reply to the hub API through a hand-made inbox and CN-Reply header
    h = r["hub_api"]
    assert isinstance(h["ping"]["now"], int) and h["ping"]["now"] > 1_600_000_000_000
    assert h["test"]["account_id"] == a
    assert h["listed"]["group"] == "owner" and h["listed"]["title"].startswith("js wire ")
    assert "unknown function" in h["unknown"]["error"]
    async with Client(server.url, cookies={"remember_me": user.cookie}) as py:
        listed = await py.call(f"hub.account.{a}.api", "projects.list")
    assert any(proj["project_id"] == h["project_id"] for proj in listed)

    # subscriptions / unsubscribe
    s = r["subscriptions"]
    inbox = next(x for x in s["before"] if x.startswith(f"_INBOX.account-{a}."))
    assert set(s["before"]) == {
        f"account.{a}.js",
        f"account.{a}.w.*",
        f"account.{a}.w.>",
        f"account.{a}.json",
        f"account.{a}.big",
        inbox,
    }
    assert set(s["after"]) == set(s["before"]) - {f"account.{a}.w.*"}
    assert s["count_after_unsubscribe"] == 1

    # permissions: 403 acks plus `permission` events
    pm = r["permission"]
    other_sub = f"account.{other.account_id}.>"
    assert pm["subscribe"]["code"] == 403 and other_sub in pm["subscribe"]["error"]
    assert pm["publish"]["code"] == 403
    assert pm["hub_api_subscribe"]["code"] == 403
    events = {(e["type"], e["subject"]) for e in pm["events"]}
    assert ("sub", other_sub) in events
    assert ("pub", f"account.{other.account_id}.x") in events
    assert ("sub", f"hub.account.{a}.api") in events
    assert pm["inbox_publish"] == {"count": 0}

    # malformed requests are answered with errors, not disconnects
    b = r["bad_requests"]
    assert "invalid subject" in b["invalid_subject"]["error"]
    assert "queue" in b["no_queue"]["error"]
    assert b["nobody"] == {"count": 0}

    # wait-for-interest: true at once, false at timeout 0, true once a subscriber appears
    assert r["wait_for_interest"] == {"subscribed": True, "none": False, "later": True}

    # the hub_password cookie, and traffic between a hub socket and an account socket
    assert r["hub_identity"] == {
        "user": {"hub_id": "hub"},
        "to_hub": {"count": 1},
        "from_hub": {"count": 1},
    }

    # no cookie / a bad cookie: info with user.error, then a server-side disconnect
    assert r["no_cookie"]["user"]["code"] == 401
    assert "no auth cookie" in r["no_cookie"]["user"]["error"]
    assert r["no_cookie"]["disconnect"] == "io server disconnect"
    assert "error" in r["bad_cookie"]["user"]
    assert r["bad_cookie"]["disconnect"] == "io server disconnect"


async def test_js_and_python_clients_exchange_messages(server: Server, node: str) -> None:
    user = sign_up(server)
    a = user.account_id
    to_py, from_py, echo = f"account.{a}.from-js", f"account.{a}.to-js", f"account.{a}.js-echo"
    when_py = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    async with Client(server.url, cookies={"remember_me": user.cookie}) as py:
        sub = await py.subscribe(to_py)
        node_run = asyncio.ensure_future(
            run_node(node, base_config(server, user, to_py=to_py, from_py=from_py, echo=echo))
        )
        # Python -> node: both wait until the node script has subscribed
        publish = asyncio.ensure_future(
            py.publish(
                from_py,
                {"from": "python", "when": when_py, "blob": b"\x00\xff"},
                headers={"via": "python"},
                wait_for_interest=30.0,
            )
        )
        request = asyncio.ensure_future(
            py.request(echo, {"q": "from python"}, wait_for_interest=True, timeout=30)
        )
        try:
            results = await node_run
            published = await asyncio.wait_for(publish, 5)
            reply = await asyncio.wait_for(request, 5)
        finally:
            for task in (node_run, publish, request):
                task.cancel()
            for task in (node_run, publish, request):
                with contextlib.suppress(BaseException):
                    await task
        # node -> Python, msgpack (a Date and a Uint8Array) then JSON
        first = await sub.next(timeout=5)
        second = await sub.next(timeout=5)

    inter = results["python_interop"]
    assert inter["to_py"] == [{"count": 1}, {"count": 1}]
    assert first.subject == to_py and first.encoding == 0
    assert first.headers == {"via": "node"}
    assert first.data == {
        "from": "node",
        "n": 1,
        "when": datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "bin": b"\x01\x02\x03",
    }
    assert second.encoding == 1 and second.headers is None
    assert second.data == {"from": "node", "n": 2, "json": True}

    # Python -> node
    assert published.count == 1
    got = inter["from_py"]
    assert got["encoding"] == 0 and got["headers"] == {"via": "python"}
    assert got["when_is_date"] is True and got["when_iso"] == "2024-05-06T07:08:09.123Z"
    assert got["blob_is_binary"] is True
    assert got["data"]["from"] == "python" and got["data"]["blob"] == {"bytes": "00ff"}

    # a Python request answered by node through the Python client's inbox
    assert inter["echo"]["request"] == {"q": "from python"}
    assert inter["echo"]["reply_to"].startswith(f"_INBOX.account-{a}.")
    assert inter["echo"]["reply_ack"] == {"count": 1}
    assert reply.data == {"echo": {"q": "from python"}, "by": "node"}
    assert reply.headers == {"answered": "node"}
