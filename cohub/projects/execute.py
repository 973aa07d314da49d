"""Run one command for the project API's ``system.exec``: a timeout and an output cap.

The command runs in a new session, so it and everything it starts share one process group;
a timeout kills that whole group (``bash -c 'sleep 100 & sleep 100'`` leaves nothing
behind). Output beyond ``max_output`` bytes (stdout and stderr together) is not kept, and the
group is killed then too: the caller asked for no more, and a runaway ``yes`` should not run
on until the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_READ_CHUNK = 65536
_LINGER_S = 2.0  # after the command exits, how long a background child may hold its pipes


class ExecFailed(Exception):
    """The command could not run to completion; the message says why."""


@dataclass
class _Output:
    limit: int
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, buffer: bytearray, chunk: bytes) -> bool:
        """Keep what fits under the cap; False once the cap is reached."""
        room = self.limit - len(self.stdout) - len(self.stderr)
        buffer += chunk[: max(room, 0)]
        if len(chunk) > room:
            self.truncated = True
            return False
        return True


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the project server dies, even by SIGKILL,
    so a command never outlives the server that was to time it out."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _nowhere_on(command: str, env: Mapping[str, str]) -> bool:
    """True when no directory of the PATH we can search has an entry named ``command``."""
    if "/" in command:
        return False
    dirs = env.get("PATH", os.defpath).split(os.pathsep)
    return not any(os.path.lexists(os.path.join(d or ".", command)) for d in dirs)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def run(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    max_output: int,
    groups: set[int] | None = None,
) -> dict[str, Any]:
    """Run ``argv`` in ``cwd``; ``{stdout, stderr, exit_code, truncated}``.

    Raises ExecFailed when the command cannot start or runs past ``timeout`` seconds. The
    process group's id is in ``groups`` while it runs, so a stopping server can kill it."""
    loop = asyncio.get_running_loop()
    # Our own pipes, not asyncio's: a background child may hold them open after the command
    # exits, and then we must be able to close our ends (asyncio's stay open until EOF).
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as e:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        # a PATH directory we may not search also gives "permission denied": a command that
        # is nowhere on the PATH is not found, whatever the lookup met on the way
        missing = isinstance(e, PermissionError) and _nowhere_on(argv[0], env)
        if isinstance(e, FileNotFoundError) or missing:
            raise ExecFailed(f"command not found: {argv[0][:200]!r}") from None
        if isinstance(e, PermissionError):
            raise ExecFailed(f"command is not executable: {argv[0][:200]!r}") from None
        raise ExecFailed(f"cannot run {argv[0][:200]!r}: {e.strerror or e}") from None
    os.close(out_w)
    os.close(err_w)
    pgid = process.pid  # a new session: the group id is the leader's pid
    if groups is not None:
        groups.add(pgid)
    output = _Output(max_output)
    transports: list[asyncio.BaseTransport] = []
    streams: list[asyncio.StreamReader] = []
    for fd in (out_r, err_r):
        stream = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda s=stream: asyncio.StreamReaderProtocol(s),  # type: ignore[misc]
            os.fdopen(fd, "rb", buffering=0),
        )
        transports.append(transport)
        streams.append(stream)

    async def read(stream: asyncio.StreamReader, buffer: bytearray) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            if not output.add(buffer, chunk):
                kill_group(pgid)
                return

    readers = [
        asyncio.ensure_future(read(streams[0], output.stdout)),
        asyncio.ensure_future(read(streams[1], output.stderr)),
    ]
    try:
        try:
            async with asyncio.timeout(timeout):
                await process.wait()
        except TimeoutError:
            kill_group(pgid)
            raise ExecFailed(
                f"the command ran longer than its timeout of {timeout:g} s and was killed "
                "(with every process it started)"
            ) from None
        # A background child may still hold the pipes; it keeps running, we stop reading.
        await asyncio.wait(readers, timeout=_LINGER_S)
    finally:
        if process.returncode is None:  # cancelled (the server is stopping)
            kill_group(pgid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for transport in transports:
            transport.close()
        if groups is not None:
            groups.discard(pgid)
    return {
        "stdout": output.stdout.decode(errors="replace"),
        "stderr": output.stderr.decode(errors="replace"),
        "exit_code": process.returncode,
        "truncated": output.truncated,
    }
