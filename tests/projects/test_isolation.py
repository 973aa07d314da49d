"""Each project a user of its own (isolation.py), on real processes: what exec runs is not
root and cannot read the hub's files or other projects; files it and the runner write are
the project's; stop kills whatever that user left running; the hub's files are private."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cohub.projects import isolation
from tests.conftest import Server, start_server, stop_server
from tests.projects.conftest import ROOT, alive, gone, home, needs_root


async def _sh(hub, pid: str, script: str) -> dict:
    return await hub("projects.exec", project_id=pid, command=script, bash=True, err_on_exit=False)


def _owner(path: Path) -> int:
    return path.lstat().st_uid


@needs_root
async def test_exec_runs_as_the_projects_own_user(server: Server, hub_for) -> None:
    hub = await hub_for()
    pid = await hub("projects.createProject", title="who")
    await hub("projects.start", project_id=pid)
    h = home(server, pid)
    uid = _owner(h)
    assert isolation.in_range(uid) and uid != 0
    assert (h.stat().st_gid, stat.S_IMODE(h.stat().st_mode)) == (uid, 0o700)
    token = h / ".smc" / "secret_token"
    assert (_owner(token), stat.S_IMODE(token.stat().st_mode)) == (uid, 0o600)
    out = await _sh(hub, pid, "id -u; id -g; id -G")
    assert out["stdout"].split() == [str(uid)] * 3  # no supplementary groups (root's 0)
    # the project server itself runs as that user too, not only what it starts
    out = await _sh(hub, pid, "grep '^Uid:' /proc/$PPID/status")
    assert out["stdout"].split()[1:] == [str(uid)] * 4
    # it may work in its home, as usual (umask 022, not the hub's 077)
    out = await _sh(hub, pid, "mkdir -p d && echo hi > d/f && cat d/f && stat -c '%u %a' d/f")
    assert out["stdout"] == f"hi\n{uid} 644\n", out
    await hub("projects.stop", project_id=pid)


@needs_root
async def test_exec_cannot_read_the_hub_or_other_projects(server: Server, hub_for) -> None:
    hub = await hub_for()
    a = await hub("projects.createProject", title="a")
    b = await hub("projects.createProject", title="b")
    await hub("projects.start", project_id=a)
    await hub("projects.start", project_id=b)
    await hub("projects.writeTextFile", project_id=b, path="private.txt", content="b's")
    data = server.data_dir.resolve()
    assert _owner(home(server, a)) != _owner(home(server, b))
    targets = [
        f"cat {data}/secrets/conat-password",
        f"ls {data}",
        f"ls {data}/projects",
        f"ls {data}/sync",
        f"ls {data}/run",
        f"cat {data}/server.log",
        f"ls {data}/projects/{b}",
        f"cat {data}/projects/{b}/private.txt",
        f"cat {data}/projects/{b}/.smc/secret_token",
    ]
    if server.db_url.startswith("sqlite"):
        targets.append(f"cat {data}/cohub.sqlite3")
    for command in targets:
        out = await _sh(hub, a, command)
        assert out["exit_code"] != 0 and "Permission denied" in out["stderr"], (command, out)
        assert out["stdout"] == ""
    # the hub's secret is not in the environment either, and root is out of reach
    out = await _sh(hub, a, "env; su -c id root </dev/null 2>&1; sudo -n id 2>&1; true")
    assert server.hub_password not in out["stdout"] and "uid=0" not in out["stdout"]
    # while b can read its own file
    out = await _sh(hub, b, "cat private.txt")
    assert out["stdout"] == "b's"
    await hub("projects.stop", project_id=a)
    await hub("projects.stop", project_id=b)


@needs_root
async def test_files_written_for_a_project_are_its_own(server: Server, hub_for) -> None:
    hub = await hub_for()
    src = await hub("projects.createProject", title="src")
    dst = await hub("projects.createProject", title="dst")
    await hub("projects.start", project_id=src)
    await hub("projects.writeTextFile", project_id=src, path="dir/sub/a.txt", content="A")
    src_uid = _owner(home(server, src))
    assert _owner(home(server, src) / "dir" / "sub" / "a.txt") == src_uid
    # into a project that never ran: its home is made, with a user of its own
    await hub(
        "projects.copyPathBetweenProjects",
        src_project_id=src,
        src_path="dir",
        target_project_id=dst,
        target_path="copied",
    )
    dst_home = home(server, dst)
    dst_uid = _owner(dst_home)
    assert isolation.in_range(dst_uid) and dst_uid != src_uid
    copied = [dst_home / "copied", dst_home / "copied" / "sub", dst_home / "copied/sub/a.txt"]
    assert [(_owner(p), p.lstat().st_gid) for p in copied] == [(dst_uid, dst_uid)] * 3
    assert (dst_home / "copied" / "sub" / "a.txt").read_text() == "A"
    # and the target project can change what it got, once it runs
    await hub("projects.start", project_id=dst)
    out = await _sh(hub, dst, "echo B >> copied/sub/a.txt && rm -r copied/sub && ls copied")
    assert out["exit_code"] == 0 and out["stdout"] == "", out
    await hub("projects.stop", project_id=src)
    await hub("projects.stop", project_id=dst)


@needs_root
async def test_stop_kills_everything_the_project_left_running(server: Server, hub_for) -> None:
    hub = await hub_for()
    pid = await hub("projects.createProject", title="daemons")
    state = await hub("projects.start", project_id=pid)
    out = await _sh(
        hub,
        pid,
        "setsid bash -c 'echo $$ > a.pid; exec sleep 1000' </dev/null >/dev/null 2>&1 & "
        "nohup bash -c 'echo $$ > b.pid; exec sleep 1000' </dev/null >/dev/null 2>&1 & "
        "sleep 0.5",
    )
    assert out["exit_code"] == 0, out
    h = home(server, pid)
    daemons = [int((h / name).read_text()) for name in ("a.pid", "b.pid")]
    uid = _owner(h)
    assert all(alive(p) for p in daemons)
    assert set(daemons) | {state["pid"]} <= set(isolation.processes_of(uid))
    await hub("projects.stop", project_id=pid)
    for p in daemons:
        assert await gone(p, timeout=5)
    assert isolation.processes_of(uid) == []
    # starting again gives the same user
    await hub("projects.start", project_id=pid)
    assert (await _sh(hub, pid, "id -u"))["stdout"] == f"{uid}\n"
    await hub("projects.stop", project_id=pid)


# ---- start-up --------------------------------------------------------------------------------
@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory under /tmp that others may traverse (pytest's own tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="cohub-iso-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_hubs_files_are_private_even_those_an_older_cohub_left(
    open_dir: Path, db_url: str
) -> None:
    data = open_dir / "data"
    (data / "secrets").mkdir(parents=True, mode=0o755)
    (data / "sync").mkdir(mode=0o755)
    (data / "projects").mkdir(mode=0o755)
    old = data / "secrets" / "conat-password"
    old.write_text("an old hub password")
    old.chmod(0o644)
    (data / "old.log").write_text("x")
    (data / "old.log").chmod(0o644)
    sqlite = db_url.startswith("sqlite")
    db = f"sqlite:///{data / 'cohub.sqlite3'}" if sqlite else db_url
    server = start_server(data, db)
    try:
        modes = {
            str(p.relative_to(data)): stat.S_IMODE(p.stat().st_mode)
            for p in [data, *data.iterdir(), old]
        }
    finally:
        stop_server(server)
    assert modes.pop(".") == 0o711 and modes.pop("projects") == 0o711
    assert modes.pop("secrets") == 0o700 and modes.pop("sync") == 0o700
    assert modes.pop("secrets/conat-password") == 0o600
    assert modes.pop("old.log") == 0o600 and modes.pop("server.log") == 0o600
    if sqlite:
        assert modes.pop("cohub.sqlite3") == 0o600
    # everything else is new, made under umask 077
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes
    assert server.hub_password == "an old hub password"


def _serve(data_dir: Path, db_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``cohub serve`` expected to refuse to start; port 1 is never reached."""
    cmd = [sys.executable, "-m", "cohub", "serve", "--port", "1", "--data-dir", str(data_dir)]
    return subprocess.run(
        [*cmd, "--db-url", db_url, *extra], capture_output=True, text=True, timeout=60
    )


def test_project_isolation_uid_refuses_to_start_where_it_cannot_work(
    tmp_path: Path, db_url: str
) -> None:
    # pytest's tmp dir is 0700: a project user could not reach its home below it
    result = _serve(tmp_path / "data", db_url, "--project-isolation", "uid")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "cannot start: --project-isolation uid" in result.stderr
    if ROOT:
        assert "not traversable by other users" in result.stderr
        assert "chmod o+x" in result.stderr and "--project-isolation none" in result.stderr
    else:
        assert "does not run as root" in result.stderr
    result = _serve(tmp_path / "data", db_url, "--project-isolation", "users")
    assert result.returncode != 0 and "'auto', 'uid' or 'none'" in result.stderr


# ---- uids ----------------------------------------------------------------------------------
def test_a_uid_is_stable_and_two_projects_never_share_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = str(uuid.UUID(int=(7 << 64) | 12345, version=4))
    b = str(uuid.UUID(int=uuid.UUID(a).int + 5 * isolation.UID_COUNT, version=4))
    assert isolation.preferred_uid(a) == isolation.preferred_uid(b)  # the same slot
    uids = isolation.Uids(tmp_path)
    first = uids.user(a)
    assert first.uid == first.gid == isolation.preferred_uid(a)
    assert uids.user(a) == first
    assert uids.user(b).uid == first.uid + 1  # the next free one
    # a uid the system knows (an account or a group) is never used
    c = str(uuid.UUID(int=uuid.UUID(a).int + 9 * isolation.UID_COUNT, version=4))
    taken = {first.uid, first.uid + 1, first.uid + 2}
    monkeypatch.setattr(isolation, "_is_account", lambda uid: uid in taken)
    assert uids.user(c).uid == first.uid + 3
    for uid in (0, 1000, 65534):
        with pytest.raises(ValueError):
            isolation.kill_uid(uid)


@needs_root
def test_the_home_owner_is_the_record_of_the_uid(tmp_path: Path) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    other = isolation.UID_BASE + 77
    (tmp_path / a).mkdir()
    (tmp_path / a / "f").write_text("x")
    (tmp_path / a / "link").symlink_to("/etc/passwd")
    isolation.own_home(tmp_path / a, isolation.User(other, other))
    assert {_owner(p) for p in [tmp_path / a, *(tmp_path / a).iterdir()]} == {other}
    assert _owner(Path("/etc/passwd")) == 0  # the link was not followed
    uids = isolation.Uids(tmp_path)
    uids.scan()
    assert uids.user(a).uid == other  # what the disk says, not the derived slot
    # b's derived slot may be anything but other
    assert uids.user(b).uid != other
