"""exec's command runner on real processes: output, exit codes, the output cap, and a
timeout that kills the command's whole process group."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cohub.projects import execute

ENV = {"PATH": os.environ["PATH"]}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_output_and_exit_code(tmp_path: Path) -> None:
    out = await execute.run(
        ["bash", "-c", "echo out; echo err >&2; pwd; exit 3"],
        cwd=tmp_path,
        env=ENV,
        timeout=10,
        max_output=1000,
    )
    assert out == {
        "stdout": f"out\n{tmp_path}\n",
        "stderr": "err\n",
        "exit_code": 3,
        "truncated": False,
    }


async def test_output_cap_keeps_at_most_the_cap_and_stops_the_command(tmp_path: Path) -> None:
    out = await execute.run(["yes"], cwd=tmp_path, env=ENV, timeout=60, max_output=1000)
    assert out["truncated"] is True
    assert len(out["stdout"]) + len(out["stderr"]) == 1000
    assert out["exit_code"] != 0  # killed, not run to the timeout


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait"
    groups: set[int] = set()
    with pytest.raises(execute.ExecFailed, match="timeout of 1 s"):
        await execute.run(
            ["bash", "-c", script], cwd=tmp_path, env=ENV, timeout=1, max_output=100, groups=groups
        )
    assert groups == set()
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    for _ in range(50):  # SIGKILL is asynchronous: give the kernel a moment
        if not any(_alive(p) for p in children):
            break
        await asyncio.sleep(0.05)
    assert not any(_alive(p) for p in children), children


async def test_missing_command(tmp_path: Path) -> None:
    with pytest.raises(execute.ExecFailed, match="command not found"):
        await execute.run(["no-such-command-xyz"], cwd=tmp_path, env=ENV, timeout=5, max_output=100)


async def test_cancelling_kills_the_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.ensure_future(
        execute.run(
            ["bash", "-c", f"echo $$ > {pid_file}; exec sleep 300"],
            cwd=tmp_path,
            env=ENV,
            timeout=300,
            max_output=100,
        )
    )
    for _ in range(400):  # until the command has written its pid
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _alive(int(pid_file.read_text()))


async def test_a_background_child_holding_the_pipes_does_not_hold_the_reply(
    tmp_path: Path,
) -> None:
    out = await execute.run(
        ["bash", "-c", f"echo started; sleep 30 & echo $! > {tmp_path / 'bg'}"],
        cwd=tmp_path,
        env=ENV,
        timeout=20,
        max_output=100,
    )
    assert out["stdout"] == "started\n" and out["exit_code"] == 0
    background = int((tmp_path / "bg").read_text())
    assert _alive(background)  # exec does not kill what a finished command left running
    os.kill(background, 9)
