#!/usr/bin/env python3
"""Benchmark of the Conat router against two reference relays, in one run.

    .venv/bin/python bench/conat.py            # full run (10,000 idle connections), ~3 min
    .venv/bin/python bench/conat.py --quick    # smoke run (1,000 idle connections), ~1 min

It starts the real router (``cohub serve --role hub-conat-router --role hub-next``) on a
free port with a temporary SQLite data dir, signs up accounts through
``/api/v2/auth/sign-up`` and drives it with a lightweight load client that speaks the wire
protocol only (engine.io v4 / socket.io v4 over a raw websocket, see :class:`SioConn`), so
it keeps working when the router is replaced. The same load then runs against two minimal
reference relays started from this file: a plain python-socketio relay under uvicorn (same
event shapes, exact-subject routing) and a raw ``websockets`` + msgpack relay.

Figures: 1 KB one-to-one messages/s (acked publishes pipelined with a window, counted at
the subscribers), one-to-fifty fan-out deliveries/s, sequential request/reply p50/p99 in
microseconds, and the server's resident memory with 10,000 idle authenticated connections.
Client and server share the machine's cores, so the server's CPU time per message is
printed too. The last line of output is one JSON object with every figure.

Everything talks to 127.0.0.1 only, every loop is bounded in count and time, and every
subprocess is killed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import ctypes
import json
import multiprocessing as mp
import os
import queue as queue_mod
import random
import resource
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TARGETS = {
    "one_to_one_msgs_s": (">=", 25_000),
    "fanout_deliveries_s": (">=", 70_000),
    "rr_p50_us": ("<=", 400),
    "rr_p99_us": ("<=", 1_000),
    "idle_10k_rss_mb": ("<", 1_500),
}
# 1 KB payload: a msgpack-encoded binary blob of 1024 bytes in all.
PAYLOAD = msgpack.packb(random.Random(1).randbytes(1021))
assert len(PAYLOAD) == 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
_PROCS: list[Any] = []  # subprocesses and worker processes to kill on exit
_MAIN_PID = os.getpid()
LOADAVG = ""


def rand_id(n: int = 10) -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=n))


# ==== websocket framing (client side) ==========================================================


def ws_frame(op: int, payload: bytes) -> bytes:
    """One final client frame. The mask key is zero, so the payload goes out unchanged
    (valid per RFC 6455, and it keeps the load client cheap)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | op, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | op, 0xFE, n)
    else:
        head = struct.pack("!BBQ", 0x80 | op, 0xFF, n)
    return head + b"\0\0\0\0" + payload


PONG_EIO = ws_frame(1, b"3")


class WSConn(asyncio.Protocol):
    """A minimal websocket client over an asyncio transport (one per connection)."""

    path = "/"

    def __init__(self, port: int, cookie: str | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.port = port
        self.cookie = cookie
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.ready = self.loop.create_future()
        self.closed = self.loop.create_future()
        self.waiters: dict[int, asyncio.Future[Any]] = {}
        self.next_ack = 1
        self.frag_op = 0
        self.frag = bytearray()
        self.on_delivery: Callable[[WSConn, Any], None] | None = None
        self.on_pub_ack: Callable[[WSConn], None] | None = None
        self.after_batch: Callable[[WSConn], None] | None = None

    # -- transport --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {HOST}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.cookie:
            lines.append(f"Cookie: {self.cookie}")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(f"connection lost ({exc})")
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
        self.waiters.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def fail(self, message: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(message))
            if self.transport is not None:
                self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self.fail("oversized handshake response")
                return
            status = bytes(buf[: buf.find(b"\r\n")]).split()
            if len(status) < 2 or status[1] != b"101":
                self.fail(f"handshake refused: {bytes(buf[:200])!r}")
                return
            del buf[: end + 4]
            self.upgraded = True
            self.on_upgraded()
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            ln = buf[pos + 1] & 0x7F
            hl = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = (buf[pos + 2] << 8) | buf[pos + 3]
                hl = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hl = 10
            end = pos + hl + ln
            if end > n:
                break
            payload = bytes(buf[pos + hl : end])
            pos = end
            op = b0 & 0x0F
            if not b0 & 0x80 or op == 0:  # a fragmented message
                if op:
                    self.frag_op, self.frag = op, bytearray(payload)
                else:
                    self.frag += payload
                if not b0 & 0x80:
                    continue
                op, payload = self.frag_op, bytes(self.frag)
            if op == 1:
                self.on_text(payload)
            elif op == 2:
                self.on_binary(payload)
            elif op == 9:
                self.write(ws_frame(10, payload))
            elif op == 8:
                self.fail("closed by server")
                self.close()
                break
        if pos:
            del buf[:pos]
        if self.after_batch is not None:
            self.after_batch(self)

    # -- dialect hooks --
    def on_upgraded(self) -> None:
        raise NotImplementedError

    def on_text(self, payload: bytes) -> None:
        raise NotImplementedError

    def on_binary(self, payload: bytes) -> None:
        raise NotImplementedError

    async def subscribe(self, subject: str, queue: str) -> None:
        raise NotImplementedError

    def pub_frames(self, subject: str, headers: dict[str, Any] | None, ack: bool) -> bytes:
        raise NotImplementedError

    def reply_to(self, meta: Any) -> str:
        raise NotImplementedError

    def _waiter(self) -> tuple[int, asyncio.Future[Any]]:
        ack = self.next_ack
        self.next_ack += 1
        fut = self.loop.create_future()
        self.waiters[ack] = fut
        return ack, fut


class SioConn(WSConn):
    """engine.io v4 / socket.io v4 framing over the websocket, default namespace."""

    path = "/conat/?EIO=4&transport=websocket"

    def __init__(self, port: int, cookie: str | None) -> None:
        super().__init__(port, cookie)
        self.connected = False
        self.info_acked = False
        self.pending: bytes | None = None
        self.subj_json: dict[str, bytes] = {}

    def on_upgraded(self) -> None:
        pass

    def _check_ready(self) -> None:
        if self.connected and self.info_acked and not self.ready.done():
            self.ready.set_result(None)

    def on_text(self, p: bytes) -> None:
        c = p[:1]
        if c == b"4":  # socket.io packet
            t = p[1:2]
            if t == b"5":  # binary event: the attachment follows
                self.pending = p
            elif t == b"3":  # ack
                i = p.index(b"[")
                fut = self.waiters.pop(int(p[2:i]), None)
                if fut is None:
                    if self.on_pub_ack is not None:
                        self.on_pub_ack(self)
                elif not fut.done():
                    fut.set_result(json.loads(p[i:]))
            elif t == b"2":
                self._on_event(p)
            elif t == b"0":
                self.connected = True
                self._check_ready()
            elif t in (b"1", b"4"):
                self.fail(f"socket.io refused: {p[:300]!r}")
        elif c == b"2":  # engine.io ping
            self.write(PONG_EIO)
        elif c == b"0":  # engine.io open
            self.write(ws_frame(1, b"40"))
        elif c == b"1":
            self.fail("engine.io close")

    def _on_event(self, p: bytes) -> None:
        i = p.index(b"[")
        ack = p[2:i]
        event = json.loads(p[i:])
        if event and event[0] == "info":
            user = (event[1] or {}).get("user") or {}
            if user.get("error"):
                self.fail(f"sign-in failed: {user}")
                return
            if ack.isdigit():
                self.write(ws_frame(1, b"43" + ack + b"[]"))
            self.info_acked = True
            self._check_ready()

    def on_binary(self, payload: bytes) -> None:
        if self.on_delivery is not None:
            self.on_delivery(self, self.pending)
        self.pending = None

    def call(self, event: str, arg: Any) -> asyncio.Future[Any]:
        ack, fut = self._waiter()
        self.write(ws_frame(1, b"42%d" % ack + json.dumps([event, arg]).encode()))
        return fut

    async def subscribe(self, subject: str, queue: str) -> None:
        resp = await asyncio.wait_for(
            self.call("subscribe", {"subject": subject, "queue": queue}), 15
        )
        r = resp[0] if resp else None
        if isinstance(r, list):
            r = r[0]
        if not isinstance(r, dict) or r.get("error"):
            raise RuntimeError(f"subscribe {subject} failed: {r}")

    def pub_frames(self, subject: str, headers: dict[str, Any] | None, ack: bool) -> bytes:
        sj = self.subj_json.get(subject)
        if sj is None:
            sj = self.subj_json[subject] = json.dumps(subject).encode()
        tail = b"]]" if headers is None else b"," + json.dumps(headers).encode() + b"]]"
        prefix = b"451-%d" % self.next_ack if ack else b"451-"
        if ack:
            self.next_ack += 1
        text = (
            prefix
            + b'["publish",['
            + sj
            + b',"benchmsgid",0,1,0,{"_placeholder":true,"num":0}'
            + tail
        )
        return ws_frame(1, text) + ws_frame(2, PAYLOAD)

    def reply_to(self, meta: Any) -> str:
        text: bytes = meta
        event = json.loads(text[text.index(b"[") :])
        return str(event[1]["data"][5]["CN-Reply"])


class RawConn(WSConn):
    """The raw websockets + msgpack relay's framing: one binary frame per operation.
    client->server  [1, ack, subject] subscribe | [2, ack or 0, subject, payload, headers] publish
    server->client  [3, ack, count] ack | [4, subject, payload, headers] delivery"""

    def on_upgraded(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def on_text(self, payload: bytes) -> None:
        pass

    def on_binary(self, p: bytes) -> None:
        op = p[1]
        if op == 4:
            if self.on_delivery is not None:
                self.on_delivery(self, p)
        elif op == 3:
            _, ack, _count = msgpack.unpackb(p)
            fut = self.waiters.pop(ack, None)
            if fut is None:
                if self.on_pub_ack is not None:
                    self.on_pub_ack(self)
            elif not fut.done():
                fut.set_result(_count)

    async def subscribe(self, subject: str, queue: str) -> None:
        ack, fut = self._waiter()
        self.write(ws_frame(2, msgpack.packb([1, ack, subject])))
        await asyncio.wait_for(fut, 15)

    def pub_frames(self, subject: str, headers: dict[str, Any] | None, ack: bool) -> bytes:
        n = 0
        if ack:
            n = self.next_ack
            self.next_ack += 1
        return ws_frame(2, msgpack.packb([2, n, subject, PAYLOAD, headers]))

    def reply_to(self, meta: Any) -> str:
        return str(msgpack.unpackb(meta)[3]["CN-Reply"])


async def connect(dialect: str, port: int, cookie: str | None, timeout: float = 30) -> WSConn:
    cls = SioConn if dialect == "sio" else RawConn
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: cls(port, cookie), HOST, port), timeout
    )
    try:
        await asyncio.wait_for(conn.ready, timeout)
    except BaseException:
        conn.close()
        raise
    return conn


# ==== load client workers (separate processes) ==================================================


@dataclass
class Ctl:
    """What a worker process shares with the orchestrator."""

    idx: int
    reports: Any  # mp.Queue of (idx, kind, value)
    go: Any  # mp.Event
    stop: Any  # mp.Event
    counters: Any  # RawArray('q'): deliveries seen, per worker
    parent: int = field(default_factory=os.getppid)

    def put(self, kind: str, value: Any = None) -> None:
        self.reports.put((self.idx, kind, value))

    async def wait(self, event: Any, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while not event.is_set():
            if os.getppid() != self.parent or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True


class Publisher:
    """Keeps ``window`` acked publishes in flight on one connection."""

    def __init__(self, conn: WSConn, subject: str, window: int) -> None:
        self.conn, self.subject, self.window = conn, subject, window
        self.outstanding = 0
        self.running = False
        conn.on_pub_ack = self._acked
        conn.after_batch = self._pump

    def _acked(self, conn: WSConn) -> None:
        self.outstanding -= 1

    def _pump(self, conn: WSConn | None = None) -> None:
        if not self.running or self.outstanding >= self.window:
            return
        n = self.window - self.outstanding
        self.outstanding += n
        self.conn.write(b"".join(self.conn.pub_frames(self.subject, None, True) for _ in range(n)))

    def start(self) -> None:
        self.running = True
        self._pump()


async def worker_main(spec: dict[str, Any], ctl: Ctl) -> None:
    dialect, port = spec["dialect"], spec["port"]
    counters, idx = ctl.counters, ctl.idx
    conns: list[WSConn] = []

    def count(conn: WSConn, meta: Any) -> None:
        counters[idx] += 1

    try:
        kind = spec["kind"]
        if kind in ("p2p", "fanout"):
            for subject in spec["subscribe"]:
                c = await connect(dialect, port, spec["cookie"])
                conns.append(c)
                c.on_delivery = count
                await c.subscribe(subject, rand_id())
            pubs = []
            for subject in spec["publish"]:
                c = await connect(dialect, port, spec["cookie"])
                conns.append(c)
                pubs.append(Publisher(c, subject, spec["window"]))
            ctl.put("ready")
            if await ctl.wait(ctl.go, 120):
                for p in pubs:
                    p.start()
                await ctl.wait(ctl.stop, spec["max_s"])
            for p in pubs:
                p.running = False
            await asyncio.sleep(0.3)
        elif kind == "responder":
            c = await connect(dialect, port, spec["cookie"])
            conns.append(c)

            def respond(conn: WSConn, meta: Any) -> None:
                conn.write(conn.pub_frames(conn.reply_to(meta), None, True))

            c.on_delivery = respond
            await c.subscribe(spec["subject"], "0")
            ctl.put("ready")
            await ctl.wait(ctl.stop, spec["max_s"])
        elif kind == "requester":
            await requester(spec, ctl, conns)
        elif kind == "idle":
            await idle(spec, ctl, conns)
    except Exception as e:
        ctl.put("error", f"{type(e).__name__}: {e}")
    finally:
        for c in conns:
            c.close()
        await asyncio.sleep(0.05)


async def requester(spec: dict[str, Any], ctl: Ctl, conns: list[WSConn]) -> None:
    dialect = spec["dialect"]
    c = await connect(dialect, spec["port"], spec["cookie"])
    conns.append(c)
    state: dict[str, Any] = {}

    def finish(key: str) -> None:
        state[key] = True
        done = state.get("done")
        if state.get("reply") and state.get("acked") and done is not None and not done.done():
            done.set_result(None)

    def got_reply(conn: WSConn, meta: Any) -> None:
        finish("reply")

    def got_ack(conn: WSConn) -> None:
        finish("acked")

    c.on_delivery = got_reply
    c.on_pub_ack = got_ack
    inbox = spec["inbox"]
    await c.subscribe(spec["inbox_sub"], rand_id())
    ctl.put("ready")
    if not await ctl.wait(ctl.go, 120):
        return
    samples: list[int] = []
    deadline = time.monotonic() + spec["max_s"]
    total = spec["warmup"] + spec["count"]
    exact = spec["exact_inbox"]
    for i in range(total):
        if time.monotonic() > deadline or ctl.stop.is_set():
            break
        reply = inbox if exact else f"{inbox}.{i}"
        state.clear()
        state["done"] = fut = c.loop.create_future()
        t0 = time.perf_counter_ns()
        c.write(c.pub_frames(spec["subject"], {"CN-Reply": reply}, True))
        await asyncio.wait_for(fut, 10)
        if i >= spec["warmup"]:
            samples.append(time.perf_counter_ns() - t0)
    ctl.put("rr", samples)


async def idle(spec: dict[str, Any], ctl: Ctl, conns: list[WSConn]) -> None:
    cookies: list[str | None] = spec["cookies"]
    sem = asyncio.Semaphore(spec["concurrency"])
    errors: list[str] = []
    ctl.put("ready")
    if not await ctl.wait(ctl.go, 120):
        return
    deadline = time.monotonic() + spec["max_s"]

    async def one(cookie: str | None) -> None:
        async with sem:
            if time.monotonic() > deadline:
                errors.append("deadline")
                return
            try:
                conns.append(await connect(spec["dialect"], spec["port"], cookie, timeout=60))
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")

    await asyncio.gather(*(one(ck) for ck in cookies))
    ctl.put("opened", {"opened": len(conns), "failed": len(errors), "first_error": errors[:1]})
    await ctl.wait(ctl.stop, spec["max_s"])


def worker_entry(spec: dict[str, Any], ctl: Ctl) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        uvloop.run(worker_main(spec, ctl))
    except ImportError:
        asyncio.run(worker_main(spec, ctl))
    ctl.put("exit")


# ==== reference relays (run as subprocesses of this file) =======================================


def run_sio_relay(port: int) -> None:
    import socketio
    import uvicorn

    sio = socketio.AsyncServer(
        async_mode="asgi",
        transports=["websocket"],
        cors_allowed_origins="*",
        max_http_buffer_size=8_000_000,
        logger=False,
        engineio_logger=False,
    )
    subs: dict[str, set[str]] = {}
    held: dict[str, list[str]] = {}
    info = {"max_payload": 8_000_000, "id": "0", "user": {"account_id": "relay"}}

    def noop(*args: Any) -> None:
        pass

    @sio.on("connect")
    async def on_connect(sid: str, environ: Any, auth: Any = None) -> None:
        held[sid] = []
        asyncio.get_running_loop().create_task(sio.emit("info", info, to=sid, callback=noop))

    @sio.on("disconnect")
    async def on_disconnect(sid: str, *args: Any) -> None:
        for subject in held.pop(sid, []):
            subs.get(subject, set()).discard(sid)

    @sio.on("subscribe")
    async def on_subscribe(sid: str, item: Any) -> dict[str, str]:
        subject = item["subject"]
        subs.setdefault(subject, set()).add(sid)
        held.setdefault(sid, []).append(subject)
        return {"status": "added"}

    @sio.on("publish")
    async def on_publish(sid: str, data: Any) -> dict[str, int]:
        subject = data[0]
        targets = subs.get(subject)
        if not targets:
            return {"count": 0}
        message = {"subject": subject, "data": data[1:]}
        for target in tuple(targets):
            await sio.emit(subject, message, to=target)
        return {"count": len(targets)}

    uvicorn.run(
        socketio.ASGIApp(sio, socketio_path="conat"),
        host=HOST,
        port=port,
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=16 * 1024 * 1024,
    )


def run_raw_relay(port: int) -> None:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    subs: dict[str, set[Any]] = {}
    packb, unpackb = msgpack.packb, msgpack.unpackb

    async def handler(ws: Any) -> None:
        mine: list[str] = []
        try:
            async for frame in ws:
                m = unpackb(frame)
                if m[0] == 2:
                    subject = m[2]
                    targets = subs.get(subject)
                    n = 0
                    if targets:
                        out = packb([4, subject, m[3], m[4]])
                        for t in tuple(targets):
                            with contextlib.suppress(ConnectionClosed):
                                await t.send(out)
                                n += 1
                    if m[1]:
                        await ws.send(packb([3, m[1], n]))
                elif m[0] == 1:
                    subs.setdefault(m[2], set()).add(ws)
                    mine.append(m[2])
                    await ws.send(packb([3, m[1], 0]))
        except ConnectionClosed:
            pass
        finally:
            for subject in mine:
                subs.get(subject, set()).discard(ws)

    async def main() -> None:
        async with serve(handler, HOST, port, compression=None, max_size=16 * 1024 * 1024):
            await asyncio.Future()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# ==== orchestration =============================================================================


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds spent by all processes on all cores (from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / CLK_TCK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _pdeathsig() -> None:
    """Runs in the child before exec: die with the benchmark, even on SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def kill_all() -> None:
    if os.getpid() != _MAIN_PID:
        return
    for p in reversed(_PROCS):
        with contextlib.suppress(Exception):
            if isinstance(p, subprocess.Popen):
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(5)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(5)
            elif p.is_alive():
                p.terminate()
                p.join(3)
                if p.is_alive():
                    p.kill()
    _PROCS.clear()


@dataclass
class Target:
    name: str
    dialect: str  # "sio" or "raw"
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    cookie: str | None = None  # for the throughput tests (one account)
    idle_cookies: list[str] = field(default_factory=list)
    account_id: str = "x"

    def subject(self, suffix: str) -> str:
        return f"account.{self.account_id}.bench.{suffix}"

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def wait_port(proc: subprocess.Popen[bytes], port: int, url: str | None, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if url is not None:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
            else:
                with socket.create_connection((HOST, port), timeout=1):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not come up")


def spawn(
    cmd: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_pdeathsig, env=env, cwd=ROOT
        )
    _PROCS.append(proc)
    return proc


def sign_up(base: str) -> tuple[str, str]:
    body = json.dumps(
        {
            "email": f"bench-{rand_id(12).lower()}@example.com",
            "password": "benchmark password 1",
            "firstName": "Bench",
            "lastName": "Mark",
            "terms": True,
        }
    ).encode()
    req = urllib.request.Request(
        base + "/api/v2/auth/sign-up", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        account_id = json.loads(r.read())["account_id"]
        for header in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            if name.strip() == "remember_me":
                return account_id, rest.split(";", 1)[0]
    raise RuntimeError("sign-up returned no remember_me cookie")


def start_conat(workdir: Path, accounts: int) -> Target:
    data_dir = workdir / "cohub"
    data_dir.mkdir()
    port = free_port()
    log_path = workdir / "cohub.log"
    cmd = [
        sys.executable, "-m", "cohub", "serve",
        "--port", str(port), "--data-dir", str(data_dir),
        "--db-url", f"sqlite:///{data_dir / 'cohub.sqlite3'}",
        "--log-level", "warning",
        "--role", "hub-conat-router", "--role", "hub-next",
    ]  # fmt: skip
    proc = spawn(cmd, log_path)
    base = f"http://{HOST}:{port}"
    wait_port(proc, port, base + "/alive")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        users = list(pool.map(lambda _: sign_up(base), range(accounts + 1)))
    account_id, cookie = users[0]
    idle_cookies = [f"remember_me={c}" for _, c in users[1:] for _ in range(100)]
    return Target(
        "conat", "sio", port, proc, log_path, f"remember_me={cookie}", idle_cookies, account_id
    )


def start_relay(workdir: Path, kind: str) -> Target:
    port = free_port()
    log_path = workdir / f"{kind}-relay.log"
    proc = spawn(
        [sys.executable, str(Path(__file__).resolve()), "--relay", kind, "--port", str(port)],
        log_path,
    )
    wait_port(proc, port, None)
    name = "python_socketio" if kind == "sio" else "raw_websockets"
    return Target(name, "sio" if kind == "sio" else "raw", port, proc, log_path)


class Phase:
    """Worker processes for one measurement, plus their control channel."""

    def __init__(self, specs: list[dict[str, Any]]) -> None:
        ctx = mp.get_context("fork")
        self.reports = ctx.Queue()
        self.go, self.stop = ctx.Event(), ctx.Event()
        self.counters = ctx.RawArray("q", len(specs))
        self.procs = []
        for i, spec in enumerate(specs):
            ctl = Ctl(i, self.reports, self.go, self.stop, self.counters, os.getpid())
            p = ctx.Process(target=worker_entry, args=(spec, ctl), daemon=True)
            p.start()
            _PROCS.append(p)
            self.procs.append(p)

    def collect(self, kind: str, n: int, limit: float) -> list[Any]:
        got: list[Any] = []
        deadline = time.monotonic() + limit
        while len(got) < n:
            try:
                idx, k, value = self.reports.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue_mod.Empty:
                raise RuntimeError(f"timed out waiting for {n} worker '{kind}' reports") from None
            if k == "error":
                raise RuntimeError(f"worker {idx}: {value}")
            if k == kind:
                got.append(value)
        return got

    def count(self) -> int:
        return int(sum(self.counters))

    def close(self) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(2)
            with contextlib.suppress(ValueError):
                _PROCS.remove(p)


def throughput(
    target: Target, specs: list[dict[str, Any]], warmup: float, duration: float
) -> dict[str, float]:
    phase = Phase(specs)
    try:
        phase.collect("ready", len(specs), 60)
        phase.go.set()
        time.sleep(warmup)
        pids = [p.pid for p in phase.procs if p.pid]
        c0, s0, t0 = phase.count(), cpu_seconds(target.proc.pid), time.monotonic()
        w0 = sum(cpu_seconds(pid) for pid in pids)
        m0 = machine_busy_seconds()
        time.sleep(duration)
        c1, s1, t1 = phase.count(), cpu_seconds(target.proc.pid), time.monotonic()
        w1 = sum(cpu_seconds(pid) for pid in pids)
        m1 = machine_busy_seconds()
    finally:
        phase.close()
    n, dt = c1 - c0, t1 - t0
    return {
        "rate": n / dt,
        "server_cpu_us": (s1 - s0) * 1e6 / n if n else float("nan"),
        "server_cpu_pct": 100 * (s1 - s0) / dt,
        "client_cpu_pct": 100 * (w1 - w0) / dt,
        "other_cpu_pct": max(0.0, 100 * ((m1 - m0) - (s1 - s0) - (w1 - w0)) / dt),
    }


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


def one_to_one(target: Target, cfg: argparse.Namespace) -> dict[str, float]:
    subjects = [target.subject(f"p2p.{i}") for i in range(cfg.pairs)]
    specs = [
        {
            "kind": "p2p", "dialect": target.dialect, "port": target.port, "cookie": target.cookie,
            "subscribe": part, "publish": part, "window": cfg.window, "max_s": 60 + cfg.duration,
        }
        for part in split(subjects, cfg.clients)
    ]  # fmt: skip
    return throughput(target, specs, cfg.warmup, cfg.duration)


def fan_out(target: Target, cfg: argparse.Namespace) -> dict[str, float]:
    subject = target.subject("fanout")
    specs = [
        {
            "kind": "fanout", "dialect": target.dialect, "port": target.port,
            "cookie": target.cookie, "subscribe": [subject] * n,
            "publish": [subject] if i == 0 else [],
            "window": cfg.fanout_window, "max_s": 60 + cfg.duration,
        }
        for i, n in enumerate(len(p) for p in split(list(range(50)), cfg.clients))
    ]  # fmt: skip
    return throughput(target, specs, cfg.warmup, cfg.duration)


def request_reply(target: Target, cfg: argparse.Namespace) -> dict[str, float]:
    subject = target.subject("rr")
    if target.name == "conat":  # like the Conat client: an inbox pattern, a reply subject each
        inbox = f"_INBOX.account-{target.account_id}.{rand_id()}"
        inbox_sub, exact = inbox + ".*", False
    else:  # the relays route exact subjects only
        inbox = inbox_sub = f"_INBOX.bench.{rand_id()}.reply"
        exact = True
    common = {"dialect": target.dialect, "port": target.port, "cookie": target.cookie}
    specs = [
        {**common, "kind": "responder", "subject": subject, "max_s": 60 + cfg.rr_max_s},
        {
            **common, "kind": "requester", "subject": subject, "inbox": inbox,
            "inbox_sub": inbox_sub, "exact_inbox": exact, "warmup": cfg.rr_warmup,
            "count": cfg.rr_count, "max_s": cfg.rr_max_s,
        },
    ]  # fmt: skip
    phase = Phase(specs)
    try:
        phase.collect("ready", 2, 60)
        phase.go.set()
        (samples,) = phase.collect("rr", 1, cfg.rr_max_s + 30)
    finally:
        phase.close()
    samples.sort()
    if not samples:
        raise RuntimeError("no request/reply samples")

    def pct(q: float) -> float:
        return samples[min(len(samples) - 1, int(q * len(samples)))] / 1000

    return {"p50": pct(0.50), "p99": pct(0.99), "n": len(samples)}


def idle_connections(target: Target, cfg: argparse.Namespace) -> dict[str, Any]:
    n = cfg.connections
    cookies: list[str | None]
    if target.name == "conat":
        cookies = list(target.idle_cookies[:n])
    else:
        cookies = [None] * n
    time.sleep(2)  # let earlier connections finish closing
    baseline = rss_mb(target.proc.pid)
    specs = [
        {
            "kind": "idle", "dialect": target.dialect, "port": target.port, "cookies": part,
            "concurrency": cfg.open_concurrency, "max_s": cfg.idle_max_s,
        }
        for part in split(cookies, cfg.clients)
    ]  # fmt: skip
    phase = Phase(specs)
    try:
        phase.collect("ready", len(specs), 60)
        t0 = time.monotonic()
        phase.go.set()
        opened = phase.collect("opened", len(specs), cfg.idle_max_s + 30)
        open_s = time.monotonic() - t0
        time.sleep(2)
        rss = rss_mb(target.proc.pid)
    finally:
        phase.close()
    ok = sum(o["opened"] for o in opened)
    errors = [e for o in opened for e in o["first_error"]]
    return {
        "rss_mb": rss,
        "baseline_mb": baseline,
        "opened": ok,
        "failed": sum(o["failed"] for o in opened),
        "first_error": errors[0] if errors else None,
        "open_s": open_s,
    }


def measure(target: Target, cfg: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print(f"[{target.name}] one-to-one ...", file=sys.stderr, flush=True)
    p2p = one_to_one(target, cfg)
    print(f"[{target.name}] fan-out ...", file=sys.stderr, flush=True)
    fan = fan_out(target, cfg)
    print(f"[{target.name}] request/reply ...", file=sys.stderr, flush=True)
    rr = request_reply(target, cfg)
    out.update(
        one_to_one_msgs_s=round(p2p["rate"]),
        fanout_deliveries_s=round(fan["rate"]),
        rr_p50_us=round(rr["p50"]),
        rr_p99_us=round(rr["p99"]),
        server_cpu_us_per_msg=round(p2p["server_cpu_us"], 1),
        server_cpu_us_per_delivery=round(fan["server_cpu_us"], 1),
        one_to_one_server_cpu_pct=round(p2p["server_cpu_pct"]),
        one_to_one_client_cpu_pct=round(p2p["client_cpu_pct"]),
        fanout_server_cpu_pct=round(fan["server_cpu_pct"]),
        fanout_client_cpu_pct=round(fan["client_cpu_pct"]),
        one_to_one_ceiling_msgs_s=round(1e6 / p2p["server_cpu_us"]),
        fanout_ceiling_deliveries_s=round(1e6 / fan["server_cpu_us"]),
        one_to_one_other_cpu_pct=round(p2p["other_cpu_pct"]),
        fanout_other_cpu_pct=round(fan["other_cpu_pct"]),
        rr_samples=rr["n"],
    )
    if cfg.connections:
        print(
            f"[{target.name}] {cfg.connections} idle connections ...", file=sys.stderr, flush=True
        )
        idle = idle_connections(target, cfg)
        out.update(
            idle_10k_rss_mb=round(idle["rss_mb"]),
            idle_baseline_rss_mb=round(idle["baseline_mb"]),
            idle_connections=idle["opened"],
            idle_failed=idle["failed"],
            idle_open_s=round(idle["open_s"], 1),
        )
        if idle["first_error"]:
            out["idle_first_error"] = idle["first_error"]
    return out


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def report(results: dict[str, dict[str, Any]], cfg: argparse.Namespace, startup_rss: float) -> None:
    conat = results.get("conat", {})
    sio = results.get("python_socketio", {})
    raw = results.get("raw_websockets", {})
    idle_label = f"idle RSS, {cfg.connections:,} conns (MB)"
    rows = [
        ("one-to-one 1 KB (msgs/s)", "one_to_one_msgs_s"),
        ("fan-out 1:50 (deliveries/s)", "fanout_deliveries_s"),
        ("request/reply p50 (us)", "rr_p50_us"),
        ("request/reply p99 (us)", "rr_p99_us"),
        (idle_label, "idle_10k_rss_mb"),
        ("  baseline RSS before (MB)", "idle_baseline_rss_mb"),
        ("  connections opened", "idle_connections"),
        ("  time to open them (s)", "idle_open_s"),
        ("server CPU per 1:1 msg (us)", "server_cpu_us_per_msg"),
        ("server CPU per delivery (us)", "server_cpu_us_per_delivery"),
        ("1:1 ceiling at 1 server core (msgs/s)", "one_to_one_ceiling_msgs_s"),
        ("fan-out ceiling at 1 core (deliv./s)", "fanout_ceiling_deliveries_s"),
        ("server CPU, 1:1 run (%)", "one_to_one_server_cpu_pct"),
        ("clients CPU, 1:1 run (%)", "one_to_one_client_cpu_pct"),
        ("other processes' CPU, 1:1 run (%)", "one_to_one_other_cpu_pct"),
        ("server CPU, fan-out run (%)", "fanout_server_cpu_pct"),
        ("clients CPU, fan-out run (%)", "fanout_client_cpu_pct"),
        ("other processes' CPU, fan-out (%)", "fanout_other_cpu_pct"),
    ]
    head = ("figure", "conat", "target", "ok", "python-socketio", "raw websockets")
    table = [head]
    for label, key in rows:
        target = ""
        ok = ""
        if key in TARGETS and key in conat:
            op, limit = TARGETS[key]
            target = f"{op} {limit:,}"
            v = conat[key]
            good = v >= limit if op == ">=" else v <= limit if op == "<=" else v < limit
            ok = "yes" if good else "NO"
            if key == "idle_10k_rss_mb" and cfg.connections != 10_000:
                ok += " (scaled run)"
        table.append((label, fmt(conat.get(key)), target, ok, fmt(sio.get(key)), fmt(raw.get(key))))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    print()
    print(
        f"Conat router benchmark ({'quick' if cfg.quick else 'full'} run), "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, code {git_state()}"
    )
    print(
        f"machine: {nproc()} cores, {cpu_model()}, {mem_gb():.1f} GB RAM; "
        f"router RSS after start-up {startup_rss:.0f} MB; load average at start {LOADAVG}"
    )
    for i, r in enumerate(table):
        print(
            "  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r))
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(
        f"1 KB payloads; {cfg.clients} load-client processes; publishers keep {cfg.window} "
        f"(1:1, {cfg.pairs} pairs) / {cfg.fanout_window} (fan-out) acked publishes in flight; "
        f"request/reply is sequential ({cfg.rr_count} round trips, ack + reply awaited)."
    )
    print(
        f"CPU rows are % of one core ({nproc() * 100}% = all cores busy). Client and server "
        "share the cores, and other processes' load shows in its own rows; server CPU per "
        "message is the figure least affected by it."
    )


def git_state() -> str:
    """The commit measured, and whether the router's code differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "cohub"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes in cohub/' if dirty else ''}"


def nproc() -> int:
    return os.cpu_count() or 0


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def mem_gb() -> float:
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="a short smoke run (1,000 idle connections)"
    )
    ap.add_argument(
        "--only",
        choices=["conat", "python_socketio", "raw_websockets"],
        action="append",
        help="measure only this target (repeatable); default: all three",
    )
    ap.add_argument("--clients", type=int, default=2, help="load-client processes (default 2)")
    ap.add_argument(
        "--connections", type=int, help="idle connections (default 10000, quick 1000; 0 skips)"
    )
    ap.add_argument("--duration", type=float, help="seconds measured per throughput test")
    ap.add_argument("--pairs", type=int, default=8, help="one-to-one publisher/subscriber pairs")
    ap.add_argument(
        "--window", type=int, default=32, help="acked publishes in flight per 1:1 publisher"
    )
    ap.add_argument(
        "--fanout-window", type=int, default=8, help="acked publishes in flight, fan-out"
    )
    ap.add_argument("--relay", choices=["sio", "raw"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    cfg = ap.parse_args(argv)
    if cfg.connections is None:
        cfg.connections = 1_000 if cfg.quick else 10_000
    if cfg.duration is None:
        cfg.duration = 2.0 if cfg.quick else 6.0
    cfg.warmup = 0.5 if cfg.quick else 1.0
    cfg.rr_count = 500 if cfg.quick else 5_000
    cfg.rr_warmup = 50 if cfg.quick else 300
    cfg.rr_max_s = 10.0 if cfg.quick else 30.0
    cfg.idle_max_s = 120.0
    cfg.open_concurrency = 50
    cfg.clients = max(1, cfg.clients)
    return cfg  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.relay:
        raise_fd_limit(65536)
        (run_sio_relay if cfg.relay == "sio" else run_raw_relay)(cfg.port)
        return 0
    raise_fd_limit(65536)  # inherited by the servers and the load-client processes
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < cfg.connections + 1000:
        print(f"warning: fd limit {soft} is low for {cfg.connections} connections", file=sys.stderr)
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # A watchdog: whatever happens, the benchmark ends within 15 minutes.
    watchdog = threading.Timer(900, lambda: (kill_all(), os._exit(3)))
    watchdog.daemon = True
    watchdog.start()
    global LOADAVG
    with open("/proc/loadavg") as f:
        LOADAVG = " ".join(f.read().split()[:3])
    workdir = Path(tempfile.mkdtemp(prefix="conat-bench-"))
    only = cfg.only or ["conat", "python_socketio", "raw_websockets"]
    results: dict[str, dict[str, Any]] = {}
    startup_rss = 0.0
    ok = False
    try:
        for name in only:
            print(f"starting {name} ...", file=sys.stderr, flush=True)
            if name == "conat":
                accounts = (cfg.connections + 99) // 100
                target = start_conat(workdir, accounts)
                startup_rss = rss_mb(target.proc.pid)
            else:
                target = start_relay(workdir, "sio" if name == "python_socketio" else "raw")
            try:
                results[name] = measure(target, cfg)
            except Exception:
                print(f"--- {name} server log (tail) ---\n{target.log_tail()}", file=sys.stderr)
                raise
            finally:
                target.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    target.proc.wait(10)
                if target.proc.poll() is None:
                    target.proc.kill()
        ok = True
    finally:
        kill_all()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", file=sys.stderr)
    report(results, cfg, startup_rss)
    conat = results.get("conat", {})
    summary: dict[str, Any] = {
        k: conat.get(k)
        for k in ("one_to_one_msgs_s", "fanout_deliveries_s", "rr_p50_us", "rr_p99_us",
                  "idle_10k_rss_mb")
    }  # fmt: skip
    summary["reference"] = {k: v for k, v in results.items() if k != "conat"}
    summary["server_cpu_us_per_msg"] = conat.get("server_cpu_us_per_msg")
    summary["server_cpu_us_per_delivery"] = conat.get("server_cpu_us_per_delivery")
    summary["idle_connections"] = conat.get("idle_connections")
    summary["idle_baseline_rss_mb"] = conat.get("idle_baseline_rss_mb")
    summary["quick"] = cfg.quick
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
