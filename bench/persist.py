#!/usr/bin/env python3
"""Benchmark of the persist service through the real router.

    .venv/bin/python bench/persist.py           # full run, ~1-2 min
    .venv/bin/python bench/persist.py --quick   # smoke run

It starts ``cohub serve`` (all roles, a temporary SQLite data dir) with one persist process,
then again with four, and drives it as a hub with the Python client (cohub.persist.client).

Figures, one persist process, one stream, 100-byte payloads:
  appends_s       messages/s appended with setMany batches of 1,000
  set_p50_us/p99  sequential single ``set`` round trips through the router
  getall_msgs_s   messages/s read back with getAll
The same with four persist processes and 1,000 streams spread over 250 account scopes
(``*_4p``), driven concurrently over four Conat connections.

The client is one Python process on the same cores as the server, so the figures include
its cost. The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cohub.conat.client import Client  # noqa: E402
from cohub.persist.client import PersistStream, Storage  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402

TARGETS = {"appends_s": 50_000, "set_p50_us": 1_000, "getall_msgs_s": 200_000}
PAYLOAD = b"x" * 100


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def hub(server: Any) -> Client:
    return await Client(server.url, cookies={"hub_password": server.hub_password}).connect()


async def one_process(server: Any, total: int, rounds: int) -> dict[str, float]:
    nc = await hub(server)
    try:
        async with PersistStream(nc, Storage("hub/bench/one"), timeout=120) as s:
            batch = [{"raw": PAYLOAD} for _ in range(1000)]
            await s.set_many(batch)  # warm up
            started = time.perf_counter()
            for _ in range(total // 1000):
                await s.set_many(batch)
            appends = total / (time.perf_counter() - started)
            for i in range(100):
                await s.append(i)
            times = []
            for i in range(rounds):
                t = time.perf_counter()
                await s.append(i)
                times.append((time.perf_counter() - t) * 1e6)
            started = time.perf_counter()
            n = len(await s.get_all())
            getall = n / (time.perf_counter() - started)
    finally:
        await nc.close()
    return {
        "appends_s": round(appends),
        "set_p50_us": round(statistics.median(times)),
        "set_p99_us": round(percentile(times, 0.99)),
        "getall_msgs_s": round(getall),
    }


async def four_processes(
    server: Any, streams: int, per_stream: int, rounds: int
) -> dict[str, float]:
    clients = [await hub(server) for _ in range(4)]
    scopes = [f"account-{uuid.uuid4()}" for _ in range(250)]
    handles: list[PersistStream] = []
    try:
        for i in range(streams):
            scope = scopes[i % len(scopes)]
            path = f"accounts/{scope[8:]}/s{i}"
            handles.append(PersistStream(clients[i % 4], path, scope=scope, timeout=120))
        sem = asyncio.Semaphore(64)

        async def opened(h: PersistStream) -> None:
            async with sem:
                await h.open()

        await asyncio.gather(*(opened(h) for h in handles))
        batch = [{"raw": PAYLOAD} for _ in range(per_stream)]

        async def fill(h: PersistStream) -> None:
            async with sem:
                await h.set_many(batch)

        started = time.perf_counter()
        await asyncio.gather(*(fill(h) for h in handles))
        appends = streams * per_stream / (time.perf_counter() - started)

        times: list[float] = []

        async def timed_sets(worker: int) -> None:
            for i in range(rounds // 4):
                h = handles[(worker + 4 * i) % len(handles)]
                t = time.perf_counter()
                await h.append(i)
                times.append((time.perf_counter() - t) * 1e6)

        await asyncio.gather(*(timed_sets(w) for w in range(4)))

        count = 0

        async def read(h: PersistStream) -> None:
            nonlocal count
            async with sem:
                n = len(await h.get_all())
            count += n  # not `count += await ...`: that reads count before awaiting

        started = time.perf_counter()
        await asyncio.gather(*(read(h) for h in handles))
        getall = count / (time.perf_counter() - started)
        for h in handles:
            await h.close()
    finally:
        for c in clients:
            await c.close()
    return {
        "appends_s_4p": round(appends),
        "set_p50_us_4p": round(statistics.median(times)),
        "set_p99_us_4p": round(percentile(times, 0.99)),
        "getall_msgs_s_4p": round(getall),
    }


def run_server(count: int, work: Path) -> Any:
    data = work / f"p{count}"
    return start_server(
        data,
        f"sqlite:///{data / 'cohub.sqlite3'}",
        "--persist-count",
        str(count),
        "--persist-server-id-prefix",
        "bench",
        "--log-level",
        "warning",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    args = parser.parse_args()
    total, rounds, streams, per_stream = (
        (20_000, 300, 200, 50) if args.quick else (200_000, 2_000, 1_000, 200)
    )
    work = Path(tempfile.mkdtemp(prefix="cohub-bench-persist-"))
    figures: dict[str, Any] = {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    try:
        server = run_server(1, work)
        try:
            figures.update(asyncio.run(one_process(server, total, rounds)))
        finally:
            stop_server(server)
        print("one process:", json.dumps(figures), file=sys.stderr)
        server = run_server(4, work)
        try:
            figures.update(asyncio.run(four_processes(server, streams, per_stream, rounds)))
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, target in TARGETS.items():
        value = figures[name]
        ok = value <= target if name.endswith("_us") else value >= target
        print(f"{name}: {value} (target {target}: {'met' if ok else 'NOT met'})", file=sys.stderr)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
