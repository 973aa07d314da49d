"""projects.* and db.touch: collaborator checks on every call, owner and self-removal rules,
and the lifecycle functions when no project runner answers (the in-memory Conat here has
none; tests/projects runs the real runner)."""

from __future__ import annotations

import pytest

from cohub.conat.protocol import PERMISSIONS_CHANGED
from cohub.db import accounts, projects
from cohub.hub.lifecycle import NO_RUNNER

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def team(hub, make_account):  # type: ignore[no-untyped-def]
    owner = await make_account("owner")
    collab = await make_account("collab")
    viewer = await make_account("viewer")
    stranger = await make_account("stranger")
    admin = await make_account("admin", groups=["admin"])
    pid = await hub.call(owner, "projects.createProject", {"title": "T"})
    await hub.call(owner, "projects.addCollaborator", {"project_id": pid, "account_id": collab})
    await projects.add_collaborator(hub.db, pid, viewer, group="viewer")
    return {
        "owner": owner,
        "collab": collab,
        "viewer": viewer,
        "stranger": stranger,
        "admin": admin,
        "pid": pid,
    }


async def test_read_functions_need_a_place_on_the_project(hub, team) -> None:
    pid = team["pid"]
    for who in ("owner", "collab", "viewer", "admin"):
        assert (await hub.call(team[who], "projects.state", {"project_id": pid}))["state"]
        listed = await hub.call(team[who], "projects.listCollaborators", {"project_id": pid})
        assert {c["account_id"] for c in listed} >= {team["owner"], team["collab"]}
    for fn in ("projects.state", "projects.status", "projects.get", "projects.listCollaborators"):
        e = await hub.error(team["stranger"], fn, {"project_id": pid})
        assert e.code == 403 and "not a collaborator" in e.message


async def test_write_functions_refuse_viewers_and_strangers(hub, team) -> None:
    pid = team["pid"]
    for who in ("viewer", "stranger"):
        for fn, extra in [
            ("projects.addCollaborator", {"account_id": team["admin"]}),
            ("projects.touch", {}),
            ("projects.stop", {}),
            ("projects.start", {}),
            ("projects.exec", {"command": "ls"}),
            ("projects.writeTextFile", {"path": "a.txt", "content": "x"}),
        ]:
            e = await hub.error(team[who], fn, {"project_id": pid, **extra})
            assert e.code == 403, (who, fn, e.message)


async def test_owners_cannot_be_removed_and_anyone_may_leave(hub, team) -> None:
    pid, owner = team["pid"], team["owner"]
    e = await hub.error(
        team["collab"], "projects.removeCollaborator", {"project_id": pid, "account_id": owner}
    )
    assert e.code == 403 and "owner" in e.message
    e = await hub.error(
        owner, "projects.removeCollaborator", {"project_id": pid, "account_id": owner}
    )
    assert "owner" in e.message
    # a viewer cannot remove others, but may remove themself
    e = await hub.error(
        team["viewer"],
        "projects.removeCollaborator",
        {"project_id": pid, "account_id": team["collab"]},
    )
    assert e.code == 403
    await hub.call(
        team["viewer"],
        "projects.removeCollaborator",
        {"project_id": pid, "account_id": team["viewer"]},
    )
    assert await projects.get_group(hub.db, pid, team["viewer"]) is None
    # the reference's nested form {account_id, opts: {...}} works too
    await hub.call(
        owner,
        "projects.removeCollaborator",
        {"account_id": owner, "opts": {"project_id": pid, "account_id": team["collab"]}},
    )
    assert await projects.get_group(hub.db, pid, team["collab"]) is None
    assert hub.notified[-1][1] == {"project_id": pid}


async def test_change_user_type(hub, team) -> None:
    pid = team["pid"]
    opts = {"project_id": pid, "target_account_id": team["viewer"], "new_group": "collaborator"}
    e = await hub.error(team["collab"], "projects.changeUserType", opts)
    assert e.code == 403 and "owner" in e.message
    hub.notified.clear()
    await hub.call(team["owner"], "projects.changeUserType", opts)
    assert await projects.get_group(hub.db, pid, team["viewer"]) == "collaborator"
    assert hub.notified == [(PERMISSIONS_CHANGED, {"project_id": pid})]
    demote = {"project_id": pid, "target_account_id": team["owner"], "new_group": "viewer"}
    assert "demoted" in (await hub.error(team["owner"], "projects.changeUserType", demote)).message
    transfer = {"project_id": pid, "target_account_id": team["collab"], "new_group": "owner"}
    await hub.call(team["owner"], "projects.changeUserType", transfer)
    assert await projects.get_group(hub.db, pid, team["collab"]) == "owner"
    assert await projects.get_group(hub.db, pid, team["owner"]) == "collaborator"
    bad = {"project_id": pid, "target_account_id": team["owner"], "new_group": "god"}
    assert "new_group" in (await hub.error(team["collab"], "projects.changeUserType", bad)).message


async def test_start_records_the_attempt_and_says_no_runner(hub, team) -> None:
    pid = team["pid"]
    e = await hub.error(team["collab"], "projects.start", {"project_id": pid})
    assert e.code == 503 and NO_RUNNER in e.message
    state = await hub.call(team["viewer"], "projects.state", {"project_id": pid})
    assert state["state"] == "opened" and NO_RUNNER in state["error"] and state["time"]
    assert await hub.call(team["viewer"], "projects.status", {"project_id": pid}) == {}
    stopped = await hub.call(team["collab"], "projects.stop", {"project_id": pid})
    assert stopped["state"] == "opened" and "error" not in stopped
    # a project recorded as running cannot be stopped without a runner
    await projects.set_state(hub.db, pid, {"state": "running"})
    e = await hub.error(team["owner"], "projects.stop", {"project_id": pid})
    assert e.code == 503 and NO_RUNNER in e.message


async def test_exec_and_write_need_a_project_server(hub, team) -> None:
    pid = team["pid"]
    e = await hub.error(team["collab"], "projects.exec", {"project_id": pid, "command": "ls"})
    assert e.code == 503 and "not running" in e.message and "Nothing was done" in e.message
    assert hub.requests[-1][0] == f"project.{pid}.-.api.-"

    async def project_api(subject, data):  # type: ignore[no-untyped-def]
        return {"stdout": "hi\n", "stderr": "", "exit_code": 0, "got": data}

    hub.project_api = project_api
    out = await hub.call(
        team["owner"], "projects.exec", {"project_id": pid, "command": "echo", "args": ["hi"]}
    )
    assert out["stdout"] == "hi\n"
    assert out["got"]["name"] == "system.exec" and out["got"]["args"][0]["timeout"] == 10
    for bad in (
        {"command": ""},
        {"command": "ls", "timeout": 0},
        {"command": "ls", "timeout": 10**9},
        {"command": "ls", "max_output": -1},
        {"command": "ls", "args": "not a list"},
        {"command": "ls", "path": "../../etc"},
        {"command": ["ls"]},
    ):
        e = await hub.error(team["owner"], "projects.exec", {"project_id": pid, **bad})
        assert e.code == 400, bad
    for bad_path in ("/etc/passwd", "../x", "a/../../b", ""):
        e = await hub.error(
            team["owner"],
            "projects.writeTextFile",
            {"project_id": pid, "path": bad_path, "content": "x"},
        )
        assert e.code == 400


async def test_copy_path_checks_both_projects_then_says_no_runner(hub, team) -> None:
    other = await hub.call(team["stranger"], "projects.createProject", {"title": "S"})
    opts = {
        "src_project_id": team["pid"],
        "src_path": "a.txt",
        "target_project_id": other,
        "target_path": "b.txt",
    }
    e = await hub.error(team["owner"], "projects.copyPathBetweenProjects", opts)
    assert e.code == 403  # not on the target
    e = await hub.error(team["stranger"], "projects.copyPathBetweenProjects", opts)
    assert e.code == 403  # not on the source
    await hub.call(
        team["stranger"],
        "projects.addCollaborator",
        {"project_id": other, "account_id": team["owner"]},
    )
    e = await hub.error(team["owner"], "projects.copyPathBetweenProjects", opts)
    assert e.code == 503 and "Nothing was copied" in e.message


async def test_delete_project_is_for_the_owner_and_admins(hub, team) -> None:
    pid = team["pid"]
    e = await hub.error(team["collab"], "projects.deleteProject", {"project_id": pid})
    assert e.code == 403
    hub.notified.clear()
    # no project runner answers here: the project is deleted all the same (stopping it is
    # best effort; tests/projects/test_runner_hardening.py has the real runner stop it)
    await hub.call(team["admin"], "projects.deleteProject", {"project_id": pid})
    assert hub.notified == [(PERMISSIONS_CHANGED, {"project_id": pid})]
    assert (await projects.get_project(hub.db, pid))["deleted"]
    assert await hub.call(team["owner"], "projects.list") == []
    e = await hub.error(team["collab"], "projects.state", {"project_id": pid})
    assert e.code == 403 and "deleted" in e.message


async def test_project_caller_acts_only_on_itself(hub, team) -> None:
    pid = team["pid"]
    assert (await hub.call(pid, "projects.state", {"project_id": pid}, kind="project"))["state"]
    other = await hub.call(team["stranger"], "projects.createProject", {"title": "S"})
    e = await hub.error(pid, "projects.state", {"project_id": other}, kind="project")
    assert e.code == 403
    e = await hub.error(pid, "projects.createProject", {"title": "x"}, kind="project")
    assert e.code == 403 and "account" in e.message


async def test_banned_account_is_signed_out_of_the_api(hub, team) -> None:
    await accounts.set_banned(hub.db, team["collab"], True)
    e = await hub.error(team["collab"], "projects.state", {"project_id": team["pid"]})
    assert e.code == 401 and e.message == "must be signed in"
    assert "now" in await hub.call(team["collab"], "system.ping")


async def test_db_touch(hub, team) -> None:
    before = (await accounts.get_account(hub.db, team["viewer"]))["last_active"]
    await hub.call(team["viewer"], "db.touch", {"project_id": team["pid"], "path": "a.txt"})
    after = (await accounts.get_account(hub.db, team["viewer"]))["last_active"]
    assert after is not None and after != before
    e = await hub.error(team["stranger"], "db.touch", {"project_id": team["pid"]})
    assert e.code == 403


@pytest.mark.parametrize(
    "args",
    [
        [None],
        ["string"],
        [{"project_id": "not-a-uuid"}],
        [{"project_id": "*"}],
        [{"project_id": 5}],
        [{"project_id": None}],
        [{"opts": {"project_id": []}}],
    ],
)
async def test_bad_arguments_are_clear_errors(hub, team, args) -> None:
    e = await hub.error(team["owner"], "projects.state", *args)
    assert e.code == 400 and e.message


@pytest.mark.parametrize("path", ["~/x", "~", "/x", "../x", "a/../../x"])
async def test_paths_outside_the_home_are_refused_by_the_hub(hub, team, path) -> None:
    e = await hub.error(
        team["owner"],
        "projects.writeTextFile",
        {"project_id": team["pid"], "path": path, "content": "x"},
    )
    assert e.code == 400 and "inside the project's home" in e.message, e.message
