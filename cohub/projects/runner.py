"""The local project runner: starts, stops and watches project servers on this machine.

It is a Conat service on ``project-runner.api`` (queue "0"). Only hubs can publish there:
the permission rules give accounts and projects nothing under a first token of
``project-runner`` (conat.md section 3), so no one but a hub can start, stop or copy. The hub
API (cohub/hub/lifecycle.py) checks the caller's rights and then asks here.

Requests are ``{name, args: [opts]}``:

- ``start {project_id}``: make ``<projects-dir>/<id>`` (mode 0700), write a fresh secret
  token to ``.smc/secret_token`` (0600) and the database, launch ``python -m
  cohub.projects.server`` and wait up to 20 s for its ready line; state "running" with ip and
  pid. Starting a running project returns its state.
- ``stop {project_id}``: SIGTERM, SIGKILL after 5 s, clear the secret token, state "opened".
- ``copy {src_project_id, src_path, target_project_id, target_path}``: on disk, between the
  two homes (both are local), confined to both (copying.py). Neither project needs to run.

A project server that exits by itself (killed, crashed) is noticed at once: its token is
cleared and its state becomes "opened" with the reason, so starting it again works. Projects
idle for ``idle_timeout`` seconds (no project API call, no ``projects.touch``) are stopped.

No orphans: each server asks Linux for SIGTERM when the runner dies (PR_SET_PDEATHSIG); the
runner stops its servers when it shuts down; and pid files under ``run_dir`` let a runner that
starts after a crash kill what is left and reset those projects' state.

Isolation (``isolate=True``, the default when the hub runs as root; isolation.py): each
project server, and so every command exec runs, is a process of the project's own uid, which
owns the home (0700) and nothing else; stop kills every process of that uid, which catches
what exec left running in the background. Leftovers of the uid are killed before a start too,
so no project process runs while the runner (root) prepares the home. Copies read and write
with the two projects' rights. Without isolation (the hub is not root) project processes are
the runner's own OS user and can read what it can: the paths checks confine the project API,
not what a command does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from ..conat import protocol as P
from ..conat.client import Client
from ..conat.codec import Message
from ..conat.errors import BadRequest, ConatError, NotFound, ServiceError
from ..db import projects as db_projects
from ..db.engine import Database
from ..db.errors import NotFound as NoSuchRow
from ..db.models import projects as projects_table
from ..ids import is_uuid
from . import copying, isolation, paths
from .server import SECRET_FILE

log = logging.getLogger("cohub.projects.runner")

STOPPED = "opened"  # the reference's name for "exists, not running"
READY_TIMEOUT_S = 20.0
STOP_GRACE_S = 5.0
DEFAULT_IDLE_TIMEOUT_S = 3600.0
LOG_FILE = ".smc/server.log"
# Copies run in threads of their own, at most this many at once, each for at most
# COPY_TIME_LIMIT_S (under the hub's 300 s wait, cohub.hub.lifecycle.COPY_TIMEOUT_S, so the
# caller hears why). Other file work (preparing homes, killing a uid's processes) has its
# own pool too: neither can use up the process's default pool, which sign-in's password
# hashing and the database need.
COPY_THREADS = 2
COPY_TIME_LIMIT_S = 240.0
FILE_THREADS = 4
_T = TypeVar("_T")
# The project's PATH: the system's directories, not ours (root's may list 0700 directories
# such as /root/.pyenv, where a project's lookups would fail with "permission denied").
PROJECT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What a project server inherits from us. Nothing else: our environment may hold the database
# URL, SMTP and admin passwords (COHUB_*), and exec hands the server's environment on.
_ENV_KEPT = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "USER", "LOGNAME", "SHELL")


@dataclass(eq=False)
class _Child:
    project_id: str
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.time)
    stopping: bool = False
    watcher: asyncio.Task[None] | None = None


def _option(opts: dict[str, Any], name: str) -> str:
    value = opts.get(name)
    if not is_uuid(value):
        raise BadRequest(f"'{name}' must be a project id (a UUID)")
    assert isinstance(value, str)
    return value


class Runner:
    """Project servers of this machine. ``start()`` serves the runner subject; ``close()``
    stops every project server it started."""

    def __init__(
        self,
        nc: Client,
        db: Database,
        *,
        projects_dir: Path,
        run_dir: Path,
        conat_url: str,
        base_path: str = "/",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
        log_level: str = "info",
        isolate: bool = False,
    ) -> None:
        self.nc = nc
        self.db = db
        self.projects_dir = projects_dir.resolve()
        self.run_dir = run_dir.resolve()
        self.conat_url = conat_url
        self.base_path = base_path
        self.idle_timeout = idle_timeout
        self.log_level = log_level
        self.uids = isolation.Uids(self.projects_dir) if isolate else None
        self.children: dict[str, _Child] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._copy_threads = ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="project-copy")
        self._file_threads = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="project-files")

    async def _in_thread(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fn`` in the runner's own file-work threads, never the default pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._file_threads, functools.partial(fn, *args, **kwargs)
        )

    # ---- lifecycle ----------------------------------------------------------------------------
    async def recover(self) -> None:
        """Before serving: make the directories, and kill and reset what a previous runner
        left running. Needs only the database and the disk, so it can run before this
        process listens (and before anyone can see a stale "running")."""
        self.projects_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.uids is not None:
            os.chmod(self.projects_dir, 0o711)  # project users reach their homes, list nothing
            await self._in_thread(self.uids.scan)
        await self._reap_orphans()

    async def start(self) -> None:
        """Serve the runner subject (the client must be connected) and watch for idlers."""
        self._tasks.append(await self.nc.service(P.PROJECT_RUNNER_SUBJECT, self.handle))
        self._tasks.append(asyncio.ensure_future(self._sweep_idle()))
        log.info(
            "project runner serving %s; homes under %s; %s",
            P.PROJECT_RUNNER_SUBJECT,
            self.projects_dir,
            "each project runs as a user of its own"
            if self.uids is not None
            else "projects run as the hub's own OS user (not isolated)",
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            *(
                self.stop_project(pid, reason="the project runner stopped")
                for pid in list(self.children)
            ),
            return_exceptions=True,
        )
        # a copy still running in a thread stops at its deadline; nothing waits for it
        self._copy_threads.shutdown(wait=False, cancel_futures=True)
        self._file_threads.shutdown(wait=False, cancel_futures=True)

    def home(self, project_id: str) -> Path:
        if not is_uuid(project_id):  # the id becomes a directory name: nothing but a UUID
            raise BadRequest(f"invalid project id {project_id[:64]!r}")
        return self.projects_dir / project_id

    def _lock(self, project_id: str) -> asyncio.Lock:
        return self._locks.setdefault(project_id, asyncio.Lock())

    def _user(self, project_id: str) -> isolation.User | None:
        """The project's user (allocated on first use), None without isolation."""
        return None if self.uids is None else self.uids.user(project_id)

    def _owner(self, project_id: str) -> isolation.User | None:
        """The user a home already has, if it is a project user: whose processes to kill."""
        if self.uids is None:
            return None
        with contextlib.suppress(OSError):
            uid = self.home(project_id).lstat().st_uid
            if isolation.in_range(uid):
                return isolation.User(uid, uid)
        return None

    async def _kill_processes(self, project_id: str) -> None:
        """Kill every process of the project's user (exec's background jobs, daemons)."""
        user = self._owner(project_id)
        if user is not None:
            killed = await self._in_thread(isolation.kill_uid, user.uid)
            if killed:
                log.info(
                    "killed %s process(es) of project %s (uid %s)", killed, project_id, user.uid
                )

    def _pid_file(self, project_id: str) -> Path:
        return self.run_dir / f"project-{project_id}.pid"

    # ---- the service --------------------------------------------------------------------------
    async def handle(self, msg: Message) -> Any:
        data = msg.data
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise BadRequest("a project runner request must be {name, args: [opts]}")
        args = data.get("args") or [{}]
        if not isinstance(args, list) or not args or not isinstance(args[0], dict):
            raise BadRequest("'args' must be a list whose first item is an object")
        opts: dict[str, Any] = args[0]
        name = data["name"]
        if name == "start":
            return await self.start_project(_option(opts, "project_id"))
        if name == "stop":
            return await self.stop_project(_option(opts, "project_id"))
        if name == "copy":
            return await self.copy(opts)
        raise NotFound(f"unknown project runner function {name[:100]!r}")

    # ---- start --------------------------------------------------------------------------------
    async def start_project(self, project_id: str) -> dict[str, Any]:
        home = self.home(project_id)
        await self._refuse_deleted(project_id)
        async with self._lock(project_id):
            # again, under the lock: a delete (which stops it under this lock) may have won
            project = await self._refuse_deleted(project_id)
            child = self.children.get(project_id)
            if child is not None and child.process.returncode is None:
                return dict(project.get("state") or {"state": "running"})
            try:
                child = await self._start_locked(project_id, home)
            except BaseException as e:
                # whatever failed (the home, the log, the launch, a cancel), the project is
                # not running: no token that works, and a state that lets it start again
                message = self._public(e, home)
                with contextlib.suppress(Exception):
                    await db_projects.set_secret_token(self.db, project_id, None)
                    await db_projects.set_state(
                        self.db, project_id, {"state": STOPPED, "error": message}
                    )
                if isinstance(e, ConatError) or not isinstance(e, Exception):
                    raise
                log.exception("starting project %s failed", project_id)
                raise ServiceError(f"the project could not start: {message}", 500) from None
            self.children[project_id] = child
            child.watcher = asyncio.ensure_future(self._watch(child))
            pid = child.process.pid
            started = datetime.fromtimestamp(child.started, UTC).isoformat()
            await _set_status(self.db, project_id, {"pid": pid, "started": started})
            return await db_projects.set_state(
                self.db, project_id, {"state": "running", "ip": "127.0.0.1", "pid": pid}
            )

    async def _refuse_deleted(self, project_id: str) -> dict[str, Any]:
        project = await db_projects.get_project(self.db, project_id)
        if project is None:
            raise NotFound(f"no project with id {project_id}")
        if project["deleted"]:
            raise ConatError(f"project {project_id} is deleted; it cannot be started", 409)
        return project

    async def _start_locked(self, project_id: str, home: Path) -> _Child:
        token = secrets.token_urlsafe(32)
        user = self._user(project_id)
        # nothing of the project runs while we (root) work in its home
        await self._kill_processes(project_id)
        log_fd = await self._in_thread(self._prepare_home, home, token, user)
        try:
            await db_projects.set_secret_token(self.db, project_id, token)
            await db_projects.set_state(self.db, project_id, {"state": "starting"})
            return await self._launch(project_id, home, user, log_fd)
        finally:
            os.close(log_fd)  # the server has its own copy (its stderr)

    def _public(self, error: BaseException, home: Path) -> str:
        """What to tell users about a failure: never a path of this host."""
        if isinstance(error, ConatError):
            text = error.message
        elif isinstance(error, OSError) and error.strerror:
            text = error.strerror
            if error.filename:
                text += f": {self._scrub(str(error.filename), home)}"
        elif isinstance(error, Exception):
            text = str(error) or type(error).__name__
        else:
            text = "the start was interrupted"
        return self._scrub(text, home)

    def _scrub(self, text: str, home: Path) -> str:
        """``text`` with the host's paths replaced: the home by ``~``, the rest by a name."""
        for path, name in (
            (str(home), "~"),
            (str(self.projects_dir), "<projects>"),
            (str(self.run_dir), "<run>"),
            (str(Path(__file__).resolve().parent.parent), "<cohub>"),
            (sys.prefix, "<python>"),
            (sys.base_prefix, "<python>"),
        ):
            text = text.replace(path, name)
        return text

    def _prepare_home(self, home: Path, token: str, user: isolation.User | None) -> int:
        """Make the home and its ``.smc`` (the runner's files: whatever the project put at
        their names is replaced, never followed), write the secret token; the server log,
        opened for the server to write (a descriptor: the caller closes it)."""
        if user is None:
            home.mkdir(mode=0o700, exist_ok=True)
        else:
            isolation.own_home(home, user)
        private = home / paths.PRIVATE
        if private.is_symlink() or (private.exists() and not private.is_dir()):
            private.unlink()  # the project may have put a link or a file here
        private.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(private, user.uid, user.gid, follow_symlinks=False)
        secret = home / SECRET_FILE
        _remove(secret)  # a directory there would stop the replace below
        tmp = private / f".secret_token.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            if user is not None:
                os.fchown(f.fileno(), user.uid, user.gid)
            f.write(token)
        tmp.replace(secret)  # replaces a link at that name, never follows it
        # A new log each start, made by us: the project owns .smc and may have put a link,
        # a pipe or a directory at this name. Not following, not opening what was there.
        log_path = home / LOG_FILE
        _remove(log_path)
        log_fd = os.open(
            log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_APPEND, 0o600
        )
        try:
            if user is not None:
                os.fchown(log_fd, user.uid, user.gid)
        except BaseException:
            os.close(log_fd)
            raise
        return log_fd

    async def _launch(
        self, project_id: str, home: Path, user: isolation.User | None, log_fd: int
    ) -> _Child:
        env = {k: os.environ[k] for k in _ENV_KEPT if k in os.environ}
        env["PATH"] = PROJECT_PATH
        env["HOME"] = str(home)
        as_user: list[str] = []
        if user is not None:
            as_user = ["--uid", str(user.uid), "--gid", str(user.gid)]
            env["USER"] = env["LOGNAME"] = "user"  # not root's name
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # isolated: neither the home nor PYTHON* variables reach sys.path
            "-m",
            "cohub.projects.server",
            "--project-id",
            project_id,
            "--home",
            str(home),
            "--conat-url",
            self.conat_url,
            "--base-path",
            self.base_path,
            "--parent-pid",
            str(os.getpid()),
            "--log-level",
            self.log_level,
            *as_user,
            # not the home: the server starts as root and changes to it once it is the user
            cwd="/" if user is not None else home,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_fd,
            start_new_session=True,  # its own group: a signal to us does not reach it
        )
        self._pid_file(project_id).write_text(f"{process.pid}\n")
        child = _Child(project_id, process)
        assert process.stdout is not None
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                line = await process.stdout.readline()
            ready = json.loads(line) if line else None
        except (TimeoutError, ValueError):
            ready = None
        if isinstance(ready, dict) and ready.get("ready"):
            child.started = time.time()  # idle time counts from ready, not from launch
            log.info("project %s started (pid %s)", project_id, process.pid)
            return child
        await self._terminate(child, grace=0)
        self._pid_file(project_id).unlink(missing_ok=True)
        why = (
            f"exited with code {process.returncode}"
            if line == b""
            else f"did not report ready within {READY_TIMEOUT_S:g} s"
        )
        tail = self._scrub(_tail(home / LOG_FILE), home)
        raise ServiceError(f"the project server {why}; its log ends: {tail}", 500)

    # ---- stop and watch -----------------------------------------------------------------------
    async def _terminate(self, child: _Child, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM, then SIGKILL to its whole group after ``grace`` seconds."""
        child.stopping = True
        process = child.process
        if process.returncode is None and grace > 0:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), grace)
        if process.returncode is None:
            log.warning("project %s did not stop in %g s; killing it", child.project_id, grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # also whatever it left in its group
        await process.wait()

    async def stop_project(self, project_id: str, reason: str | None = None) -> dict[str, Any]:
        """Stop the project's server if it runs here; in any case clear its secret token and
        record it as stopped (so a state left "running" by a lost runner is corrected)."""
        self.home(project_id)
        async with self._lock(project_id):
            child = self.children.pop(project_id, None)
            if child is not None:
                await self._terminate(child)
                self._pid_file(project_id).unlink(missing_ok=True)
                log.info("project %s stopped%s", project_id, f" ({reason})" if reason else "")
            await self._kill_processes(project_id)
            await db_projects.set_secret_token(self.db, project_id, None)
            # the database no longer accepts it; the file goes too, so no one mistakes it
            with contextlib.suppress(OSError):
                (self.home(project_id) / SECRET_FILE).unlink(missing_ok=True)
            await _set_status(self.db, project_id, {})
            state: dict[str, Any] = {"state": STOPPED}
            if reason:
                state["reason"] = reason
            return await db_projects.set_state(self.db, project_id, state)

    async def _watch(self, child: _Child) -> None:
        """Drain the server's stdout and notice when it exits by itself."""
        process = child.process
        assert process.stdout is not None
        while await process.stdout.read(65536):
            pass
        code = await process.wait()
        if child.stopping:
            return
        async with self._lock(child.project_id):
            if self.children.get(child.project_id) is not child:
                return  # stopped or started again meanwhile: that owns the state now
            del self.children[child.project_id]
            self._pid_file(child.project_id).unlink(missing_ok=True)
            await self._kill_processes(child.project_id)
            log.warning("project %s server exited by itself (code %s)", child.project_id, code)
            await db_projects.set_secret_token(self.db, child.project_id, None)
            await _set_status(self.db, child.project_id, {})
            await db_projects.set_state(
                self.db,
                child.project_id,
                {
                    "state": STOPPED,
                    "error": f"the project server exited unexpectedly (code {code}); start "
                    "the project again",
                },
            )

    def _kill_orphans(self) -> list[str]:
        """Kill project servers a previous runner left behind (it was killed before it could
        stop them, and PR_SET_PDEATHSIG did not fire); the ids of their projects."""
        found = []
        for pid_file in sorted(self.run_dir.glob("project-*.pid")):
            project_id = pid_file.stem.removeprefix("project-")
            with contextlib.suppress(ValueError, OSError):
                pid = int(pid_file.read_text())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                # the pid may have been reused: kill only a project server of this project
                if b"cohub.projects.server" in cmdline and project_id.encode() in cmdline:
                    log.warning("killing orphaned project server %s (pid %s)", project_id, pid)
                    os.killpg(pid, signal.SIGKILL)
            user = self._owner(project_id) if is_uuid(project_id) else None
            if user is not None:
                isolation.kill_uid(user.uid)
            pid_file.unlink(missing_ok=True)
            found.append(project_id)
        return found

    async def _reap_orphans(self) -> None:
        """Reset the projects a previous runner left running: their servers are gone."""
        for project_id in await self._in_thread(self._kill_orphans):
            if is_uuid(project_id):
                with contextlib.suppress(ConatError, NoSuchRow):
                    await self.stop_project(project_id, reason="the project runner restarted")

    # ---- idle ---------------------------------------------------------------------------------
    async def _sweep_idle(self) -> None:
        interval = min(30.0, max(0.25, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            for project_id, child in list(self.children.items()):
                try:
                    if await self._idle(child):
                        await self.stop_project(
                            project_id, reason=f"idle for more than {self.idle_timeout:g} s"
                        )
                except asyncio.CancelledError:
                    raise
                except Exception:  # one project's failure must not end the sweep
                    log.exception("idle check of project %s failed", project_id)

    async def _idle(self, child: _Child) -> bool:
        last = child.started
        project = await db_projects.get_project(self.db, child.project_id)
        if project is not None and project.get("last_edited") is not None:
            last = max(last, project["last_edited"].timestamp())
        try:
            reply = await self.nc.call(
                P.project_api_subject(child.project_id), "system.activity", timeout=5
            )
            if reply.get("running"):
                return False  # a command still runs: that is activity
            last = max(last, float(reply["last_active"]))
        except (ConatError, AttributeError, KeyError, TypeError, ValueError):
            pass  # not answering is no sign of activity
        return time.time() - last > self.idle_timeout

    # ---- copy ---------------------------------------------------------------------------------
    async def copy(self, opts: dict[str, Any]) -> dict[str, Any]:
        src_id = _option(opts, "src_project_id")
        target_id = _option(opts, "target_project_id")
        src_path = opts.get("src_path")
        target_path = opts.get("target_path") or src_path
        src_home = self.home(src_id)
        if not src_home.is_dir():
            raise NotFound(f"project {src_id} has no files yet (it was never started)")
        target_home = self.home(target_id)
        reader, writer = self._user(src_id), self._user(target_id)
        try:
            async with self._lock(target_id):  # not while the runner prepares the home
                if writer is None:
                    target_home.mkdir(mode=0o700, exist_ok=True)
                elif self.children.get(target_id) is None:
                    await self._in_thread(isolation.own_home, target_home, writer)
                if reader is not None and self.children.get(src_id) is None:
                    await self._in_thread(isolation.own_home, src_home, reader)
            # the deadline counts from the request: waiting for a free copy thread is in it
            deadline = time.monotonic() + COPY_TIME_LIMIT_S
            copied = await asyncio.get_running_loop().run_in_executor(
                self._copy_threads,
                functools.partial(
                    copying.copy_path,
                    src_home,
                    src_path,
                    target_home,
                    target_path,
                    reader=reader,
                    writer=writer,
                    deadline=deadline,
                ),
            )
        except copying.CopyTimedOut as e:
            raise ServiceError(str(e), 504) from None
        except paths.PathRefused as e:
            raise BadRequest(str(e)) from None
        except FileNotFoundError as e:
            raise NotFound(f"{e.strerror}: {src_path!r}") from None
        except OSError as e:
            raise ServiceError(f"copying failed: {e.strerror or e}") from None
        return {"bytes": copied}


async def _set_status(db: Database, project_id: str, status: dict[str, Any]) -> None:
    """Record the running server's facts in ``projects.status``. cohub.db.projects has no
    function for this column yet, so the update is here, on the table definition."""
    async with db.begin() as conn:
        await conn.execute(
            sa.update(projects_table)
            .where(projects_table.c.project_id == project_id)
            .values(status=status or None)
        )


def _remove(path: Path) -> None:
    """Whatever is at ``path`` gone (a file, a link, a pipe, a directory tree), never
    following a link."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)  # does not follow links inside either
    else:
        path.unlink(missing_ok=True)


def _tail(path: Path, limit: int = 800) -> str:
    try:  # as the project may have left it: no link followed, no pipe waited on
        with os.fdopen(paths.open_regular(path, os.O_RDONLY), "rb") as f:
            text = f.read().decode(errors="replace")
    except (OSError, paths.PathRefused):
        return "(no log)"
    return text[-limit:].strip() or "(empty)"
