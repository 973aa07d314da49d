"""Run N persist server processes and restart any that dies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger("cohub.persist.supervisor")

_STABLE_S = 30.0  # a process that ran this long restarts with the shortest delay again


class Supervisor:
    """Keeps one ``python -m cohub.persist --server-id <id>`` process per id running.

    Each process's pid is written to ``<run_dir>/persist-<id>.pid`` while it runs.
    """

    def __init__(
        self,
        ids: Sequence[str],
        env: Mapping[str, str],
        run_dir: Path,
        *,
        restart_delay: float = 0.5,
        restart_delay_max: float = 10.0,
    ) -> None:
        self.ids = list(ids)
        self.env = dict(env)
        self.run_dir = run_dir
        self.restart_delay = restart_delay
        self.restart_delay_max = restart_delay_max
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.restarts: dict[str, int] = dict.fromkeys(self.ids, 0)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._tasks = [asyncio.ensure_future(self._keep(server_id)) for server_id in self.ids]

    def pid_file(self, server_id: str) -> Path:
        return self.run_dir / f"persist-{server_id}.pid"

    async def _keep(self, server_id: str) -> None:
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cohub.persist", "--server-id", server_id, env=self.env
            )
            self.processes[server_id] = process
            self.pid_file(server_id).write_text(f"{process.pid}\n")
            log.info("persist server %s started (pid %s)", server_id, process.pid)
            code = await process.wait()
            with contextlib.suppress(FileNotFoundError):
                self.pid_file(server_id).unlink()
            if self._stopping:
                return
            failures = 0 if time.monotonic() - started > _STABLE_S else failures + 1
            delay = min(self.restart_delay_max, self.restart_delay * 2 ** max(0, failures - 1))
            log.warning(
                "persist server %s exited with %s; restarting in %.1f s", server_id, code, delay
            )
            self.restarts[server_id] += 1
            await asyncio.sleep(delay)

    async def stop(self, timeout: float = 8.0) -> None:
        self._stopping = True
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        waits = [p.wait() for p in self.processes.values() if p.returncode is None]
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits), timeout)
            except TimeoutError:
                for process in self.processes.values():
                    if process.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            process.kill()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server_id in self.ids:
            with contextlib.suppress(FileNotFoundError):
                self.pid_file(server_id).unlink()


def child_env(settings_env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child: ours plus the settings, so it reads the same config."""
    env = dict(os.environ)
    env.update(settings_env)
    return env
