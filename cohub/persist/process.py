"""One persist server process: ``python -m cohub.persist --server-id ID``.

It reads its settings like every cohub process (defaults, file, ``COHUB_*`` env, flags),
connects to the router as a hub and serves until SIGTERM, SIGINT, or its parent going away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys

from .. import config, eventloop, logs
from ..conat.client import Client
from ..cookies import HUB_PASSWORD, cookie_name
from .server import PersistServer
from .storage import Mode

log = logging.getLogger("cohub.persist.process")


def check_mode(mode: str) -> Mode:
    if mode not in ("disk", "nfs"):
        raise SystemExit(f"--persist-mode must be 'disk' or 'nfs', not {mode!r}")
    return mode  # type: ignore[return-value]


async def run(settings: config.Settings, server_id: str) -> None:
    password = settings.password_file.read_text().strip()
    nc = Client(
        settings.router_url + settings.prefix.rstrip("/"),
        cookies={cookie_name(settings.prefix, HUB_PASSWORD): password},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    _die_with_parent()
    # connecting may retry for as long as the router is down: stay stoppable meanwhile
    while True:
        connecting = asyncio.ensure_future(nc.connect(timeout=30))
        while not connecting.done():
            if stop.is_set() or os.getppid() != parent:
                log.warning("persist %s: stopping before the router answered", server_id)
                connecting.cancel()
                await asyncio.gather(connecting, return_exceptions=True)
                await nc.close()
                return
            await asyncio.wait({connecting}, timeout=1.0)
        error = connecting.exception()
        if error is None:
            break
        log.info("persist %s: router not reachable yet (%s)", server_id, error)
        await asyncio.sleep(1)
    server = PersistServer(
        nc,
        server_id,
        settings.sync_dir,
        mode=check_mode(settings.persist_mode),
        archive_dir=settings.persist_archive_dir,
        archive_interval=settings.persist_archive_interval_s,
    )
    await server.start()
    try:
        while not stop.is_set():
            if os.getppid() != parent:
                log.warning("persist %s: the supervisor is gone; stopping", server_id)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await server.stop()
        await nc.close()


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the supervisor dies, so no orphan outlives it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cohub.persist", description=__doc__)
    config.add_arguments(parser)
    parser.add_argument("--server-id", required=True, help="this server's id (unique)")
    args = parser.parse_args(argv)
    settings = config.load(args)
    logs.setup(settings.log_level)
    eventloop.run(run(settings, args.server_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
