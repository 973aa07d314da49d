"""The job protocol shared by the singleton services, and the loop that runs them."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("cohub.services")


@dataclass(frozen=True)
class Job:
    name: str
    interval_s: float
    run_once: Callable[[], Awaitable[object]]
    jitter: float = 0.1  # fraction of the interval, so replicas do not run in lockstep


async def run_forever(job: Job) -> None:
    """Run the job now and then every interval; a failed run is logged and retried next time."""
    while True:
        try:
            await job.run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s failed; it runs again in %.0f s", job.name, job.interval_s)
        delay = job.interval_s * (1 + random.uniform(-job.jitter, job.jitter))
        await asyncio.sleep(max(delay, 0.1))


class JobRunner:
    """Starts and stops one job's loop."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(run_forever(self.job))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
