"""What a project can do to the runner and the hub with its own files and processes: named
pipes in a copy, a link where the runner's log goes, processes left running by a deleted
project, paths the server refuses, a missing command."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cohub.conat import protocol as P
from cohub.conat.errors import ConatError
from cohub.projects import isolation
from cohub.projects import runner as project_runner
from tests.conftest import Server, sign_up
from tests.projects.conftest import ROOT, alive, gone, home, until

GENEROUS_S = 90  # far under the hub's 300 s copy timeout, which a blocked copy would reach


def _sign_in(server: Server, email: str, password: str) -> int:
    r = httpx.post(
        server.url + "/api/v2/auth/sign-in",
        json={"email": email, "password": password},
        timeout=GENEROUS_S,
    )
    return r.status_code


async def test_a_named_pipe_is_never_opened_by_a_copy(server: Server, hub_for) -> None:
    hub = await hub_for()
    src = await hub("projects.createProject", title="fifo")
    other = await hub("projects.createProject", title="other")
    await hub("projects.start", project_id=src)
    await hub("projects.start", project_id=other)
    out = await hub(
        "projects.exec",
        project_id=src,
        command="mkfifo p && mkdir d && mkfifo d/q && echo A > d/a.txt && echo T > t.txt",
        bash=True,
    )
    assert out["exit_code"] == 0, out

    async def copy_fifo(i: int) -> ConatError:
        return await hub.error(
            "projects.copyPathBetweenProjects",
            src_project_id=src,
            src_path="p",
            target_path=f"p{i}",
        )

    signer = sign_up(server)
    async with asyncio.timeout(GENEROUS_S):
        # more than the hub's default thread pool (and more than the runner's copy threads),
        # and meanwhile sign-in (argon2 in a thread) and another project's stop still work
        errors, signed_in, stopped = await asyncio.gather(
            asyncio.gather(*(copy_fifo(i) for i in range(12))),
            asyncio.to_thread(_sign_in, server, signer.email, signer.password),
            hub("projects.stop", project_id=other),
        )
    assert signed_in == 200 and stopped["state"] == "opened"
    for e in errors:
        assert e.code == 400 and "named pipe" in e.message, e.message
    # in a directory the pipe is left out, the rest copied
    async with asyncio.timeout(GENEROUS_S):
        await hub(
            "projects.copyPathBetweenProjects", src_project_id=src, src_path="d", target_path="d2"
        )
    h = home(server, src)
    assert (h / "d2" / "a.txt").read_text() == "A\n" and not (h / "d2" / "q").exists()
    # nor is a pipe at the target written to (or opened): neither by a copy nor a write
    async with asyncio.timeout(GENEROUS_S):
        e = await hub.error(
            "projects.copyPathBetweenProjects",
            src_project_id=src,
            src_path="t.txt",
            target_path="p",
        )
        assert e.code == 400 and "named pipe" in e.message, e.message
        e = await hub.error("projects.writeTextFile", project_id=src, path="p", content="x")
        assert e.code == 400 and "named pipe" in e.message, e.message
        e = await hub.error(
            "projects.exec", project_id=src, command="true", path="p", err_on_exit=False
        )
        assert e.code == 400
    await hub("projects.stop", project_id=src)


async def test_a_deleted_project_stops_and_cannot_start(server: Server, hub_for, connect) -> None:
    hub = await hub_for()
    pid = await hub("projects.createProject", title="doomed")
    state = await hub("projects.start", project_id=pid)
    out = await hub(
        "projects.exec",
        project_id=pid,
        command="setsid nohup sleep 777 </dev/null >/dev/null 2>&1 & echo $!",
        bash=True,
    )
    daemon = int(out["stdout"])
    assert alive(daemon)
    await hub("projects.deleteProject", project_id=pid)
    assert await gone(state["pid"])
    assert await gone(daemon, timeout=10)
    if ROOT:
        uid = home(server, pid).lstat().st_uid
        assert isolation.processes_of(uid) == []
    # the hub no longer lets anyone at it; the runner recorded it as stopped
    e = await hub.error("projects.start", project_id=pid)
    assert e.code in (403, 409) and "deleted" in e.message
    # the runner itself refuses too (a hub that skipped its own check)
    api = await connect(server, {"hub_password": server.hub_password})
    with pytest.raises(ConatError) as refused:
        await api.call(P.PROJECT_RUNNER_SUBJECT, "start", {"project_id": pid}, timeout=30)
    assert refused.value.code == 409


async def test_a_link_where_the_log_goes_does_not_make_a_project_unstartable(
    server: Server, hub_for
) -> None:
    hub = await hub_for()
    pid = await hub("projects.createProject", title="log link")
    await hub("projects.start", project_id=pid)
    h = home(server, pid)
    target = server.data_dir / f"planted-{pid}"
    await hub(
        "projects.exec",
        project_id=pid,
        command=f"rm .smc/server.log; ln -s {target} .smc/server.log",
        bash=True,
    )
    assert (h / ".smc" / "server.log").is_symlink()
    await hub("projects.stop", project_id=pid)
    state = await hub("projects.start", project_id=pid)
    assert state["state"] == "running"
    log = h / ".smc" / "server.log"
    assert not log.is_symlink() and log.is_file() and not target.exists()
    # a directory there, and a directory where the secret goes, are replaced too
    await hub("projects.exec", project_id=pid, command="rm -f .smc/server.log", bash=True)
    await hub("projects.stop", project_id=pid)
    (h / ".smc" / "server.log").mkdir()
    (h / ".smc" / "server.log" / "x").write_text("x")
    (h / ".smc" / "secret_token").mkdir()
    state = await hub("projects.start", project_id=pid)
    assert state["state"] == "running" and (h / ".smc" / "server.log").is_file()
    await hub("projects.stop", project_id=pid)


async def test_path_refusals_are_400_with_a_reason(server: Server, hub_for) -> None:
    hub = await hub_for()
    pid = await hub("projects.createProject", title="paths")
    await hub("projects.start", project_id=pid)
    (home(server, pid) / "out").symlink_to("/etc")
    for path in ("~/x", "/x", "../x", "out/x"):
        e = await hub.error("projects.writeTextFile", project_id=pid, path=path, content="x")
        assert e.code == 400, (path, e.code, e.message)
        assert "home" in e.message or "relative" in e.message or "inside" in e.message, e.message
    e = await hub.error("projects.exec", project_id=pid, command="ls", path="out")
    assert e.code == 400 and "outside the project's home" in e.message, e.message
    assert str(server.data_dir) not in e.message
    await hub("projects.stop", project_id=pid)


async def test_a_clean_path_and_command_not_found(server: Server, hub_for) -> None:
    hub = await hub_for()
    pid = await hub("projects.createProject", title="path")
    await hub("projects.start", project_id=pid)
    out = await hub("projects.exec", project_id=pid, command="printenv", args=["PATH"])
    assert out["stdout"].strip() == project_runner.PROJECT_PATH
    e = await hub.error("projects.exec", project_id=pid, command="no-such-command-xyz")
    assert "command not found: 'no-such-command-xyz'" in e.message, e.message
    await hub("projects.stop", project_id=pid)


async def test_a_failed_start_leaves_the_project_stopped(server: Server, hub_for) -> None:
    """A home the runner cannot prepare (here: a file where the home should be) is a failed
    start: no secret token is left, the state is "opened", and no host path is shown."""
    hub = await hub_for()
    pid = await hub("projects.createProject", title="no home")
    h = home(server, pid)
    h.write_text("not a directory")
    try:
        e = await hub.error("projects.start", project_id=pid)
        assert e.code >= 500 and str(server.data_dir) not in e.message, e.message

        async def settled() -> bool:
            return (await hub("projects.state", project_id=pid))["state"] == "opened"

        await until(settled, "the failed start to leave the project stopped")
    finally:
        h.unlink()
    assert (await hub("projects.start", project_id=pid))["state"] == "running"
    await hub("projects.stop", project_id=pid)
