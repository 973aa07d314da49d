"""One unprivileged OS user per project, so a project cannot read the hub or other projects.

When the runner runs as root, each project gets a uid (and a gid of the same number) of its
own in ``[UID_BASE, UID_BASE + UID_COUNT)``: no account, no supplementary groups. Its home
is owned by that uid, mode 0700; the project server drops to it (server.py) before it reads
anything of the project's, and every command it runs inherits it. The hub's files stay with
root, 0600/0700 (``protect_data_dir``), behind a data dir of mode 0711 that a project uid
may traverse to reach its own home but not list.

Which uid: the preferred one is derived from the project id, so it is stable; the record of
the choice is the owner of the home. Two projects whose ids map to the same slot would
share every file and process, so the second one takes the next free slot (``Uids``): a uid
that belongs to no other home here and to no account or group the system knows
(pwd/grp, NSS included). The range sits above the subuid ranges (login.defs ends at
600,100,000) and systemd's container ranges (up to 0x6FFFFFFF), below 2^31.

Since the uid is only that project's, stopping a project kills every process of that uid
(``kill_uid``), which catches what exec left behind with ``setsid``/``nohup``.

Limits: two hubs on one machine with separate data dirs share the range without knowing of
each other (a collision between them is unlikely, 2^27 slots, but not detected). Root's
supplementary groups still apply while the runner copies files with a project's fsuid
(``as_user``); the hub's files are 0600/0700, so no group bit grants anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import logging
import os
import pwd
import signal
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..ids import is_uuid

log = logging.getLogger("cohub.projects.isolation")

UID_BASE = 0x7000_0000  # 1,879,048,192
UID_COUNT = 1 << 27  # up to 2,013,265,919
MODES = ("auto", "uid", "none")
KILL_PASSES = 100  # a process may fork while we kill; each pass kills what the last one missed


class CannotIsolate(RuntimeError):
    """Projects cannot run as users of their own here; the message says why and what to do."""


@dataclass(frozen=True)
class User:
    uid: int
    gid: int


def in_range(uid: int) -> bool:
    return UID_BASE <= uid < UID_BASE + UID_COUNT


def preferred_uid(project_id: str) -> int:
    return UID_BASE + uuid.UUID(project_id).int % UID_COUNT


def _is_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        pass
    try:
        grp.getgrgid(uid)
        return True
    except KeyError:
        return False


class Uids:
    """Which uid each project home has, and a free one for a project that has none yet."""

    def __init__(self, projects_dir: Path) -> None:
        self.projects_dir = projects_dir
        self._owners: dict[int, str] = {}

    def scan(self) -> None:
        """Learn the uids of the homes on disk (at start, before any project runs)."""
        self._owners.clear()
        with contextlib.suppress(FileNotFoundError), os.scandir(self.projects_dir) as it:
            for entry in sorted(it, key=lambda e: e.name):
                if not is_uuid(entry.name):
                    continue
                with contextlib.suppress(OSError):
                    owner = entry.stat(follow_symlinks=False).st_uid
                    if in_range(owner) and owner not in self._owners:
                        self._owners[owner] = entry.name
                    elif in_range(owner):  # made by hand or by a copy: it gets a new uid
                        log.warning(
                            "projects %s and %s have homes owned by the same uid %s; %s gets "
                            "a new uid when it starts",
                            self._owners[owner],
                            entry.name,
                            owner,
                            entry.name,
                        )

    def user(self, project_id: str) -> User:
        """The project's uid: its home's owner if that is its own, else a free slot."""
        with contextlib.suppress(FileNotFoundError):
            owner = (self.projects_dir / project_id).lstat().st_uid
            if in_range(owner) and self._owners.get(owner, project_id) == project_id:
                self._owners[owner] = project_id
                return User(owner, owner)
        first = preferred_uid(project_id) - UID_BASE
        for step in range(UID_COUNT):
            uid = UID_BASE + (first + step) % UID_COUNT
            if self._owners.get(uid, project_id) != project_id:
                log.info("uid %s is taken by project %s; trying the next", uid, self._owners[uid])
                continue
            if _is_account(uid):
                log.warning("uid %s is an account or group of this system; skipping it", uid)
                continue
            self._owners[uid] = project_id
            return User(uid, uid)
        raise CannotIsolate("every uid of the project range is taken")


# ---- the home --------------------------------------------------------------------------------
def chown_tree(home: Path, user: User) -> None:
    """Give the home and everything in it to ``user``, never following a symlink. Only while
    no process of the project runs (the runner kills them first), so nothing is swapped."""
    os.chown(home, user.uid, user.gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(home, followlinks=False):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(dirpath, name), user.uid, user.gid, follow_symlinks=False)


def own_home(home: Path, user: User) -> None:
    """Make ``home`` (mode 0700) belong to ``user``; a home of an older cohub (root's) or
    one that had another uid is given over entirely."""
    home.mkdir(mode=0o700, exist_ok=True)
    st = home.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise CannotIsolate(f"{home} is not a directory")
    if st.st_uid != user.uid or st.st_gid != user.gid:
        chown_tree(home, user)
    os.chmod(home, 0o700, follow_symlinks=False)


# ---- processes -------------------------------------------------------------------------------
def _uids_of(pid: str) -> tuple[int, ...]:
    """The uids of a live process; none for a zombie (it is dead, only not reaped yet: a
    container's pid 1 may never reap what it inherits)."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"State:") and line.split()[1:2] in ([b"Z"], [b"X"]):
                return ()
            if line.startswith(b"Uid:"):
                return tuple(int(x) for x in line.split()[1:])
    return ()


def processes_of(uid: int) -> list[int]:
    """Every live process with ``uid`` as its real, effective, saved or filesystem uid."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                if uid in _uids_of(name):
                    found.append(int(name))
    return found


def kill_uid(uid: int) -> int:
    """SIGKILL every process of ``uid`` until none is left; how many were killed. Only for a
    project's own uid: nothing else runs as it."""
    if not in_range(uid):
        raise ValueError(f"uid {uid} is not a project uid")
    killed = 0
    for _ in range(KILL_PASSES):
        pids = processes_of(uid)
        if not pids:
            return killed
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.01)
    log.error("processes of uid %s keep appearing after %s passes of SIGKILL", uid, KILL_PASSES)
    return killed


# ---- dropping privileges (in the project server) --------------------------------------------
def drop_to(user: User) -> None:
    """Become ``user`` for good: no supplementary groups, real/effective/saved ids changed.
    Refuses to return unless root is out of reach."""
    os.setgroups([])
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    if os.getresuid() != (user.uid,) * 3 or os.getresgid() != (user.gid,) * 3 or os.getgroups():
        raise SystemExit(f"could not become uid {user.uid}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise SystemExit(f"still able to become root after dropping to uid {user.uid}")


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _setfs(uid: int, gid: int) -> None:
    assert _libc is not None
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    # both calls return the previous id; asking to set -1 changes nothing and tells the current
    if _libc.setfsuid(-1) != uid or _libc.setfsgid(-1) != gid:
        raise PermissionError(f"could not act as uid {uid}")


@contextlib.contextmanager
def as_user(user: User | None) -> Iterator[None]:
    """In this thread only, open files with ``user``'s rights (the filesystem uid/gid);
    root's rights are back afterwards. Nothing for None (no isolation)."""
    if user is None:
        yield
        return
    try:
        _setfs(user.uid, user.gid)
        yield
    finally:
        _setfs(0, 0)


# ---- can it work here? -----------------------------------------------------------------------
def _mapped(path: str, first: int, count: int) -> bool:
    """True when ``/proc/self/{uid,gid}_map`` maps all of ``[first, first + count)``."""
    try:
        lines = Path(path).read_text().split("\n")
    except OSError:
        return True  # not Linux with user namespaces: nothing to check
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            inside, _, length = (int(p) for p in parts)
            if inside <= first and first + count <= inside + length:
                return True
    return False


def problem(projects_dir: Path) -> str | None:
    """Why project uids cannot work here, or None. Needs root, uids of the range mapped (a
    user namespace may map only 65,536), and every directory above the homes traversable by
    others (o+x): a project reaches its home by its path."""
    if os.geteuid() != 0:
        return "the hub does not run as root, so it cannot run projects as other users"
    for name in ("uid_map", "gid_map"):
        if not _mapped(f"/proc/self/{name}", UID_BASE, UID_COUNT):
            return (
                f"this user namespace does not map uids {UID_BASE}-{UID_BASE + UID_COUNT - 1} "
                f"(/proc/self/{name})"
            )
    for directory in reversed(projects_dir.resolve().parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            return (
                f"{directory} is not traversable by other users (mode "
                f"{stat.S_IMODE(directory.stat().st_mode):o}), so project users cannot reach "
                f"their homes under {projects_dir}: chmod o+x {directory}, or use a --data-dir "
                "whose parent directories are"
            )
    return None


# ---- the hub's own files -----------------------------------------------------------------------
def _private(path: Path, directory_mode: int = 0o700, file_mode: int = 0o600) -> None:
    with contextlib.suppress(FileNotFoundError):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            return
        mode = directory_mode if stat.S_ISDIR(st.st_mode) else file_mode
        if stat.S_IMODE(st.st_mode) & 0o077 or stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)


def protect_data_dir(data_dir: Path, projects_dir: Path, *others: Path) -> None:
    """Make the hub's files readable by the hub only, whatever an older cohub left: the data
    dir 0711 (project users pass through it to their homes, cannot list it), the projects
    dir 0711, and every other entry of the data dir 0700 (directories) or 0600 (files), as
    are ``others`` (a database, secrets or stream directory elsewhere, its parent dir when it
    is a secrets dir). Not recursive: a 0700 directory closes everything under it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o711)
    projects_dir.mkdir(exist_ok=True)
    os.chmod(projects_dir, 0o711)
    resolved_projects = projects_dir.resolve()
    for entry in data_dir.iterdir():
        if entry.resolve() != resolved_projects:
            _private(entry)
    for path in others:
        _private(path)
