"""The local project runner on a real `cohub serve`: start/stop through the hub API, the
secret token, access checks, the project API's own checks, a killed project server, copies.
Idle stop and runner restarts are in test_runner_lifetime.py (servers of their own)."""

from __future__ import annotations

import stat

import pytest

from cohub.conat import protocol as P
from cohub.conat.client import Client
from cohub.conat.errors import ConatError, PermissionDenied
from tests.conftest import Server, sign_up
from tests.projects.conftest import alive, gone, home, kill, secret, until


async def test_start_exec_stop(server: Server, hub_for) -> None:
    hub = await hub_for()
    pid = await hub("projects.createProject", title="run me")
    state = await hub("projects.start", project_id=pid)
    assert state["state"] == "running" and state["ip"] == "127.0.0.1" and alive(state["pid"])
    assert (await hub("projects.state", project_id=pid))["state"] == "running"
    assert (await hub("projects.status", project_id=pid))["pid"] == state["pid"]
    # starting a running project changes nothing
    assert (await hub("projects.start", project_id=pid))["pid"] == state["pid"]
    h = home(server, pid)
    assert stat.S_IMODE(h.stat().st_mode) == 0o700
    assert stat.S_IMODE((h / ".smc" / "secret_token").stat().st_mode) == 0o600
    out = await hub("projects.exec", project_id=pid, command="pwd")
    assert out["stdout"] == f"{h.resolve()}\n" and out["exit_code"] == 0
    # the project server's environment holds none of the hub's settings (database URL, ...)
    env = await hub("projects.exec", project_id=pid, command="env")
    assert "COHUB_" not in env["stdout"] and f"HOME={h.resolve()}" in env["stdout"]
    await hub("projects.writeTextFile", project_id=pid, path="d/a.txt", content="héllo\n")
    assert (h / "d" / "a.txt").read_text() == "héllo\n"
    stopped = await hub("projects.stop", project_id=pid)
    assert stopped["state"] == "opened"
    assert await gone(state["pid"])
    assert not (h / ".smc" / "secret_token").exists()
    assert await hub("projects.status", project_id=pid) == {}
    e = await hub.error("projects.exec", project_id=pid, command="pwd")
    assert e.code == 503 and "not running" in e.message and "projects.start" in e.message
    assert (h / "d" / "a.txt").read_text() == "héllo\n"  # the home outlives the process


async def test_a_project_secret_is_for_that_project_only_and_dies_with_stop(
    server: Server, hub_for, connect
) -> None:
    hub = await hub_for()
    a = await hub("projects.createProject", title="a")
    b = await hub("projects.createProject", title="b")
    await hub("projects.start", project_id=a)
    await hub("projects.start", project_id=b)
    token = secret(server, a)
    as_a = await connect(server, {"project_id": a, "project_secret": token})
    assert as_a.info["user"] == {"project_id": a}
    with pytest.raises(PermissionDenied):
        await as_a.subscribe(f"project.{b}.>")
    with pytest.raises(PermissionDenied):
        await as_a.publish(f"project.{b}.-.api.-", {"name": "system.ping"})
    # a project may not ask the runner for anything (only hubs may publish there)
    with pytest.raises(PermissionDenied):
        await as_a.publish(P.PROJECT_RUNNER_SUBJECT, {"name": "stop", "args": [{"project_id": b}]})
    for cookies in (
        {"project_id": b, "project_secret": token},  # a's secret names only a
        {"project_id": a, "project_secret": secret(server, b)},
    ):
        refused = Client(server.url, cookies=cookies, reconnect=False)
        try:
            with pytest.raises(ConatError, match="invalid secret token"):
                await refused.connect(timeout=10)
        finally:
            await refused.close()
    await hub("projects.stop", project_id=a)
    refused = Client(
        server.url, cookies={"project_id": a, "project_secret": token}, reconnect=False
    )
    try:
        with pytest.raises(ConatError, match="invalid secret token"):
            await refused.connect(timeout=10)
    finally:
        await refused.close()
    await hub("projects.stop", project_id=b)


async def test_viewers_and_strangers_cannot_start_exec_or_reach_the_runner(
    server: Server, hub_for
) -> None:
    owner = await hub_for()
    pid = await owner("projects.createProject", title="mine")
    viewer = await hub_for()
    stranger = await hub_for()
    await owner("projects.addCollaborator", project_id=pid, account_id=viewer.user.account_id)
    await owner(
        "projects.changeUserType",
        project_id=pid,
        target_account_id=viewer.user.account_id,
        new_group="viewer",
    )
    for who in (viewer, stranger):
        for name, opts in (
            ("projects.start", {}),
            ("projects.stop", {}),
            ("projects.exec", {"command": "id"}),
            ("projects.writeTextFile", {"path": "x", "content": "x"}),
        ):
            e = await who.error(name, project_id=pid, **opts)
            assert e.code == 403, (name, e.message)
        # nor around the hub: the runner's subject is for hubs only
        with pytest.raises(PermissionDenied):
            await who.client.publish(
                P.PROJECT_RUNNER_SUBJECT, {"name": "start", "args": [{"project_id": pid}]}
            )
    assert (await owner("projects.state", project_id=pid))["state"] == "opened"
    assert not home(server, pid).exists()


async def test_paths_are_confined_by_the_project_server_itself(
    server: Server, hub_for, connect
) -> None:
    """Straight to the project API (a hub may, and so may any collaborator's connection):
    the server's own checks, not only the hub's, keep every path in the home."""
    hub = await hub_for()
    pid = await hub("projects.createProject", title="jail")
    await hub("projects.start", project_id=pid)
    h = home(server, pid)
    outside = server.data_dir / f"outside-{pid}"
    outside.mkdir()
    (outside / "secret").write_text("outside")
    (h / "out").symlink_to(outside)
    (h / "etc").symlink_to("/etc")
    api = await connect(server, {"hub_password": server.hub_password})
    subject = P.project_api_subject(pid)
    refusals = [
        ("system.exec", {"command": "ls", "path": "../"}),
        ("system.exec", {"command": "ls", "path": "/etc"}),
        ("system.exec", {"command": "ls", "path": "out"}),
        ("system.writeTextFileToProject", {"path": "../escaped", "content": "x"}),
        ("system.writeTextFileToProject", {"path": "/tmp/escaped", "content": "x"}),
        ("system.writeTextFileToProject", {"path": "out/secret", "content": "x"}),
        ("system.writeTextFileToProject", {"path": "out/new", "content": "x"}),
        ("system.readTextFileFromProject", {"path": "out/secret"}),
        ("system.readTextFileFromProject", {"path": "etc/hostname"}),
        ("system.readTextFileFromProject", {"path": "../../secrets/conat-password"}),
        ("system.listing", {"path": ".."}),
        ("system.listing", {"path": "out"}),
    ]
    for name, opts in refusals:
        with pytest.raises(ConatError) as e:
            await api.call(subject, name, opts, timeout=20)
        assert e.value.code == 400, (name, opts, e.value)
        assert "home" in e.value.message or "relative" in e.value.message, e.value.message
    assert (outside / "secret").read_text() == "outside"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert not (h.parent / "escaped").exists()
    # through the hub too: a symlink is caught by the server, and said so
    e = await hub.error("projects.writeTextFile", project_id=pid, path="out/x", content="x")
    assert e.code == 400 and "outside the project's home" in e.message
    # what is inside works
    await api.call(subject, "system.writeTextFileToProject", {"path": "in/f", "content": "ok"})
    assert await api.call(subject, "system.readTextFileFromProject", {"path": "in/f"}) == "ok"
    listing = await api.call(subject, "system.listing", {"path": "in"})
    assert [(e["name"], e["isdir"], e["size"]) for e in listing] == [("f", False, 2)]
    await hub("projects.stop", project_id=pid)


async def test_exec_timeout_kills_the_command_and_output_is_capped(server: Server, hub_for) -> None:
    hub = await hub_for()
    pid = await hub("projects.createProject", title="t")
    await hub("projects.start", project_id=pid)
    e = await hub.error(
        "projects.exec",
        project_id=pid,
        command="echo $$ > pid; sleep 300 & echo $! >> pid; wait",
        bash=True,
        timeout=1,
    )
    assert "timeout of 1 s" in e.message and "killed" in e.message
    pids = [int(p) for p in (home(server, pid) / "pid").read_text().split()]
    assert len(pids) == 2
    for p in pids:
        assert await gone(p)
    out = await hub("projects.exec", project_id=pid, command="yes", max_output=1000)
    assert out["truncated"] is True and len(out["stdout"]) == 1000
    e = await hub.error("projects.exec", project_id=pid, command="bash", args=["-c", "exit 4"])
    assert "exited with code 4" in e.message
    out = await hub(
        "projects.exec", project_id=pid, command="bash", args=["-c", "exit 4"], err_on_exit=False
    )
    assert out["exit_code"] == 4
    await hub("projects.stop", project_id=pid)


async def test_bad_input_gets_errors_and_the_server_keeps_serving(
    server: Server, hub_for, connect
) -> None:
    hub = await hub_for()
    pid = await hub("projects.createProject", title="fuzz")
    state = await hub("projects.start", project_id=pid)
    api = await connect(server, {"hub_password": server.hub_password})
    subject = P.project_api_subject(pid)
    for data in (
        "x",
        None,
        [1, 2, 3],
        {"name": 5},
        {"name": "no.such"},
        {"name": "system.exec", "args": "no"},
        {"name": "system.exec", "args": [5]},
        {"name": "system.exec", "args": [{"command": 5}]},
        {"name": "system.exec", "args": [{"command": "ls", "timeout": "1"}]},
        {"name": "system.exec", "args": [{"command": "ls", "timeout": 10**12}]},
        {"name": "system.exec", "args": [{"command": "ls", "max_output": -1}]},
        {"name": "system.exec", "args": [{"command": "ls", "args": [1]}]},
        {"name": "system.exec", "args": [{"command": "no-such-program-xyz"}]},
        {"name": "system.exec", "args": [{"command": "ls", "path": "no/such/dir"}]},
        {"name": "system.writeTextFileToProject", "args": [{"path": "a"}]},
        {"name": "system.writeTextFileToProject", "args": [{"path": "a", "content": 1}]},
        {"name": "system.writeTextFileToProject", "args": [{"path": "", "content": "x"}]},
        {"name": "system.writeTextFileToProject", "args": [{"path": ".", "content": "x"}]},
        {"name": "system.readTextFileFromProject", "args": [{"path": "missing"}]},
        {"name": "system.readTextFileFromProject", "args": [{"path": None}]},
        {"name": "system.listing", "args": [{"path": "missing"}]},
    ):
        reply = await api.request(subject, data, timeout=20)
        assert isinstance(reply.data, dict) and reply.data.get("error"), (data, reply.data)
        assert "Traceback" not in reply.data["error"]
    assert alive(state["pid"])
    assert (await api.call(subject, "system.ping"))["now"] > 0
    out = await hub("projects.exec", project_id=pid, command="echo", args=["still here"])
    assert out["stdout"] == "still here\n"
    await hub("projects.stop", project_id=pid)


async def test_a_killed_project_server_is_noticed_and_can_start_again(
    server: Server, hub_for
) -> None:
    hub = await hub_for()
    pid = await hub("projects.createProject", title="k")
    first = await hub("projects.start", project_id=pid)
    token = secret(server, pid)
    kill(first["pid"])

    async def stopped() -> dict | None:
        state = await hub("projects.state", project_id=pid)
        return state if state["state"] == "opened" else None

    state = await until(stopped, "the runner to notice the killed project server")
    assert "exited unexpectedly" in state["error"]
    refused = Client(
        server.url, cookies={"project_id": pid, "project_secret": token}, reconnect=False
    )
    try:
        with pytest.raises(ConatError, match="invalid secret token"):
            await refused.connect(timeout=10)
    finally:
        await refused.close()
    second = await hub("projects.start", project_id=pid)
    assert second["state"] == "running" and second["pid"] != first["pid"]
    assert (await hub("projects.exec", project_id=pid, command="echo", args=["ok"]))[
        "stdout"
    ] == "ok\n"
    await hub("projects.stop", project_id=pid)


async def test_copy_between_projects(server: Server, hub_for) -> None:
    owner = await hub_for()
    viewer_user = sign_up(server)
    viewer = await hub_for(viewer_user)
    src = await owner("projects.createProject", title="src")
    dst = await owner("projects.createProject", title="dst")
    await owner("projects.start", project_id=src)
    await owner("projects.writeTextFile", project_id=src, path="dir/a.txt", content="A")
    await owner("projects.writeTextFile", project_id=src, path="dir/sub/b.txt", content="B")
    # neither project needs to run: the copy is between the homes
    await owner("projects.stop", project_id=src)
    await owner(
        "projects.copyPathBetweenProjects",
        src_project_id=src,
        src_path="dir",
        target_project_id=dst,
        target_path="copied",
    )
    assert (home(server, dst) / "copied" / "sub" / "b.txt").read_text() == "B"
    # within one project
    await owner(
        "projects.copyPathBetweenProjects",
        src_project_id=src,
        src_path="dir/a.txt",
        target_path="a2.txt",
    )
    assert (home(server, src) / "a2.txt").read_text() == "A"
    # a link out of the target's home does not carry the copy out
    outside = server.data_dir / f"outside-{dst}"
    outside.mkdir()
    (home(server, dst) / "out").symlink_to(outside)
    e = await owner.error(
        "projects.copyPathBetweenProjects",
        src_project_id=src,
        src_path="dir/a.txt",
        target_project_id=dst,
        target_path="out/a.txt",
    )
    assert e.code == 400 and "outside the project's home" in e.message
    assert list(outside.iterdir()) == []
    e = await owner.error(
        "projects.copyPathBetweenProjects",
        src_project_id=src,
        src_path="../../secrets/conat-password",
        target_project_id=dst,
    )
    assert e.code == 400
    # the secret token never travels
    await owner("projects.start", project_id=src)
    e = await owner.error(
        "projects.copyPathBetweenProjects",
        src_project_id=src,
        src_path=".smc/secret_token",
        target_project_id=dst,
        target_path="stolen",
    )
    assert e.code == 400 and "private" in e.message
    await owner("projects.stop", project_id=src)
    # a viewer may copy out of a project it can read, into its own, never into the project
    mine = await viewer("projects.createProject", title="mine")
    await owner("projects.addCollaborator", project_id=src, account_id=viewer_user.account_id)
    await owner(
        "projects.changeUserType",
        project_id=src,
        target_account_id=viewer_user.account_id,
        new_group="viewer",
    )
    await viewer(
        "projects.copyPathBetweenProjects",
        src_project_id=src,
        src_path="dir/a.txt",
        target_project_id=mine,
    )
    assert (home(server, mine) / "dir" / "a.txt").read_text() == "A"
    e = await viewer.error(
        "projects.copyPathBetweenProjects",
        src_project_id=mine,
        src_path="dir/a.txt",
        target_project_id=src,
        target_path="planted.txt",
    )
    assert e.code == 403
    assert not (home(server, src) / "planted.txt").exists()
    assert not (home(server, dst) / "stolen").exists()
